package dev.shrink.eval;

import dev.shrink.core.forward.CausalLM;
import dev.shrink.core.forward.KvCache;
import dev.shrink.core.forward.NonFinite;
import dev.shrink.core.forward.Taps;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.function.IntConsumer;

/**
 * Autoregressive generation with a KV cache: the prompt is run once (prefill), then one token per
 * step. Temperature 0 is greedy (ties to the lowest id, as torch.argmax); otherwise sampling from
 * softmax(logits / T) with a seeded generator.
 */
public final class Generator {
    private Generator() {
    }

    /**
     * @param prompt  token ids, BOS included
     * @param stopIds generation ends after emitting one of these (e.g. EOS); may be empty
     * @param onToken called with each new token as it is produced
     * @return prompt followed by the generated ids
     */
    public static int[] generate(CausalLM lm, int[] prompt, int maxNewTokens, double temperature, long seed,
                                 List<Integer> stopIds, IntConsumer onToken) {
        if (prompt.length == 0) {
            throw new IllegalArgumentException("empty prompt");
        }
        int V = lm.config().vocab();
        KvCache cache = lm.newCache(prompt.length + maxNewTokens);
        KvCache[] caches = {cache};
        Random rng = new Random(seed);
        int[] out = Arrays.copyOf(prompt, prompt.length + maxNewTokens);
        int n = prompt.length;
        float[] hidden = lm.hidden(prompt, 1, prompt.length, caches, Taps.NONE);
        float[] logits = lm.logits(hidden, prompt.length - 1, 1);
        for (int step = 0; step < maxNewTokens; step++) {
            if (!NonFinite.all(logits)) {
                // run the whole sequence so far again without the cache, every op checked
                throw lm.nonFinite(Arrays.copyOf(out, n), 1, n, "generation step " + step);
            }
            int next = temperature <= 0 ? argmax(logits, V) : sample(logits, V, temperature, rng);
            out[n++] = next;
            onToken.accept(next);
            if (stopIds.contains(next) || step == maxNewTokens - 1) {
                break;
            }
            hidden = lm.hidden(new int[] {next}, 1, 1, caches, Taps.NONE);
            logits = lm.logits(hidden, 0, 1);
        }
        return Arrays.copyOf(out, n);
    }

    public static int argmax(float[] logits, int V) {
        int best = 0;
        for (int i = 1; i < V; i++) {
            if (logits[i] > logits[best]) {
                best = i;
            }
        }
        return best;
    }

    static int sample(float[] logits, int V, double temperature, Random rng) {
        double max = Double.NEGATIVE_INFINITY;
        for (int i = 0; i < V; i++) {
            max = Math.max(max, logits[i]);
        }
        double[] p = new double[V];
        double sum = 0;
        for (int i = 0; i < V; i++) {
            p[i] = Math.exp((logits[i] - max) / temperature);
            sum += p[i];
        }
        double r = rng.nextDouble() * sum;
        for (int i = 0; i < V; i++) {
            r -= p[i];
            if (r <= 0) {
                return i;
            }
        }
        return V - 1;
    }
}
