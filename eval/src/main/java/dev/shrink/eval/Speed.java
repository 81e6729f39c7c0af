package dev.shrink.eval;

import dev.shrink.core.forward.CausalLM;
import dev.shrink.core.forward.KvCache;
import dev.shrink.core.forward.Taps;
import java.util.Arrays;

/**
 * Prefill and decode throughput of a model at batch 1 on its backend: prefill = prompt tokens / the
 * time of one forward of the whole prompt into an empty KV cache (with the last position's logits);
 * decode = generated tokens / the time of the greedy steps that follow (one token per forward, KV
 * cache, logits and argmax included). One untimed warm-up run first (JIT), then {@code repeats}
 * timed runs; the median and the spread are reported.
 */
public final class Speed {
    private Speed() {
    }

    /**
     * @param prompt       token ids (BOS included), at least one
     * @param decodeTokens tokens to generate after the prompt, at least one
     * @param repeats      timed runs, at least one
     */
    public static SpeedResult measure(CausalLM lm, int[] prompt, int decodeTokens, int repeats) {
        if (prompt.length == 0 || decodeTokens < 1 || repeats < 1) {
            throw new IllegalArgumentException("need a prompt, decode tokens ≥ 1 and repeats ≥ 1");
        }
        double[] prefill = new double[repeats], decode = new double[repeats];
        once(lm, prompt, decodeTokens, new double[2]); // warm-up
        double[] t = new double[2];
        for (int r = 0; r < repeats; r++) {
            once(lm, prompt, decodeTokens, t);
            prefill[r] = prompt.length / t[0];
            decode[r] = decodeTokens / t[1];
        }
        return new SpeedResult(prompt.length, decodeTokens, repeats, median(prefill), min(prefill), max(prefill),
                median(decode), min(decode), max(decode), lm.decoder().ops().name());
    }

    /** One run: seconds[0] the prefill, seconds[1] the decode steps. */
    private static void once(CausalLM lm, int[] prompt, int decodeTokens, double[] seconds) {
        int V = lm.config().vocab();
        KvCache[] caches = {lm.newCache(prompt.length + decodeTokens)};
        long t0 = System.nanoTime();
        float[] hidden = lm.hidden(prompt, 1, prompt.length, caches, Taps.NONE);
        float[] logits = lm.logits(hidden, prompt.length - 1, 1);
        long t1 = System.nanoTime();
        for (int step = 0; step < decodeTokens; step++) {
            int next = Generator.argmax(logits, V);
            hidden = lm.hidden(new int[] {next}, 1, 1, caches, Taps.NONE);
            logits = lm.logits(hidden, 0, 1);
        }
        long t2 = System.nanoTime();
        seconds[0] = (t1 - t0) / 1e9;
        seconds[1] = (t2 - t1) / 1e9;
    }

    static double median(double[] x) {
        double[] s = x.clone();
        Arrays.sort(s);
        int n = s.length;
        return n % 2 == 1 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
    }

    private static double min(double[] x) {
        return Arrays.stream(x).min().orElseThrow();
    }

    private static double max(double[] x) {
        return Arrays.stream(x).max().orElseThrow();
    }
}
