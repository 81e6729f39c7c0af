package dev.shrink.eval;

import dev.shrink.core.forward.CausalLM;
import dev.shrink.core.forward.KvCacheType;
import dev.shrink.core.forward.KvCache;
import dev.shrink.core.forward.Taps;
import dev.shrink.core.ops.Ops;
import dev.shrink.kernels.cuda.CudaOps;
import java.nio.file.Path;
import java.util.Arrays;

/**
 * Prefill and decode throughput of a model at batch 1 on its backend: prefill = prompt tokens / the
 * time of one forward of the whole prompt into an empty KV cache (with the last position's logits);
 * decode = generated tokens / the time of the greedy steps that follow (one token per forward, KV
 * cache, logits and argmax included). One untimed warm-up run first (JIT), then {@code repeats}
 * timed runs; the median and the spread are reported.
 *
 * <p>On the cuda backend ({@link #measure(Path, Ops, CausalLM, int[], int, int)}) the model folder is
 * loaded a second time into a {@link DeviceModel} (weights, KV cache and every per-token op on the GPU;
 * packed 4-bit linears kept 4-bit for the W4A16 GEMV) and that runs the measurement; there the prompt
 * is fed one token at a time through the same decoder (so "prefill" is the decoder's per-token rate
 * over the prompt, not a batched prefill), the logits of each step are copied back and the argmax is
 * taken on the host. The result's {@link SpeedResult#path()} says which path ran.
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

    /**
     * The speed of the model folder {@code model}: on the cuda backend through a {@link DeviceModel}
     * when the folder allows one (else on {@code lm}, the path saying why), elsewhere on {@code lm},
     * which is asked for only then (a host model of a 7B folder takes minutes to read).
     */
    public static SpeedResult measure(Path model, Ops ops, java.util.function.Supplier<CausalLM> lm, KvCacheType kvCache,
                                      int[] prompt, int decodeTokens, int repeats) {
        if (ops instanceof CudaOps && kvCache.quantized()) {
            // the device decoder keeps an fp16 cache: quantized codes on the device are a follow-up (docs/KV_CACHE.md)
            SpeedResult r = measure(lm.get().withKvCache(kvCache), prompt, decodeTokens, repeats);
            return withPath(r, SpeedResult.HOST + " (device decoder refused: it has no " + kvCache.id()
                    + " KV cache yet)");
        }
        if (ops instanceof CudaOps cuda) {
            String why;
            try (DeviceModel dm = DeviceModel.load(model, cuda.device(), prompt.length + decodeTokens)) {
                return measure(dm, prompt, decodeTokens, repeats, ops.name());
            } catch (DeviceModel.Unsupported e) {
                why = e.getMessage();
            }
            SpeedResult r = measure(lm.get().withKvCache(kvCache), prompt, decodeTokens, repeats);
            return withPath(r, SpeedResult.HOST + " (device decoder refused: " + why + ")");
        }
        return measure(lm.get().withKvCache(kvCache), prompt, decodeTokens, repeats);
    }

    private static SpeedResult withPath(SpeedResult r, String path) {
        return new SpeedResult(r.promptTokens(), r.decodeTokens(), r.repeats(), r.prefillTokensPerSecond(),
                r.prefillMin(), r.prefillMax(), r.decodeTokensPerSecond(), r.decodeMin(), r.decodeMax(), r.backend(), path);
    }

    /**
     * The speed of a device-resident model: the prompt fed token by token, then {@code decodeTokens}
     * greedy steps (logits copied back, argmax on the host), one warm-up run first.
     */
    public static SpeedResult measure(DeviceModel m, int[] prompt, int decodeTokens, int repeats, String backend) {
        if (prompt.length == 0 || decodeTokens < 1 || repeats < 1) {
            throw new IllegalArgumentException("need a prompt, decode tokens ≥ 1 and repeats ≥ 1");
        }
        double[] prefill = new double[repeats], decode = new double[repeats];
        double[] t = new double[2];
        long w0 = System.nanoTime();
        once(m, prompt, decodeTokens, t); // warm-up (and the CUDA graph's capture)
        double warmup = (System.nanoTime() - w0) / 1e9;
        for (int r = 0; r < repeats; r++) {
            once(m, prompt, decodeTokens, t);
            prefill[r] = prompt.length / t[0];
            decode[r] = decodeTokens / t[1];
        }
        return new SpeedResult(prompt.length, decodeTokens, repeats, median(prefill), min(prefill), max(prefill),
                median(decode), min(decode), max(decode), backend,
                m.path() + String.format(java.util.Locale.ROOT, "; warm-up run %.1f s", warmup));
    }

    /** Greedy tokens after {@code prompt} on a device-resident model (for checks). */
    public static int[] greedy(DeviceModel m, int[] prompt, int steps) {
        m.reset();
        float[] logits = null;
        for (int tok : prompt) {
            logits = m.step(tok);
        }
        int[] out = new int[steps];
        for (int s = 0; s < steps; s++) {
            out[s] = Generator.argmax(logits, m.vocab());
            if (s + 1 < steps) {
                logits = m.step(out[s]);
            }
        }
        return out;
    }

    private static void once(DeviceModel m, int[] prompt, int decodeTokens, double[] seconds) {
        int V = m.vocab();
        m.reset();
        long t0 = System.nanoTime();
        float[] logits = null;
        for (int tok : prompt) {
            logits = m.step(tok);
        }
        long t1 = System.nanoTime();
        for (int step = 0; step < decodeTokens; step++) {
            logits = m.step(Generator.argmax(logits, V));
        }
        long t2 = System.nanoTime();
        seconds[0] = (t1 - t0) / 1e9;
        seconds[1] = (t2 - t1) / 1e9;
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
