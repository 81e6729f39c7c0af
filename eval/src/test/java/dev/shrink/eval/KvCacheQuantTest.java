package dev.shrink.eval;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shrink.calib.EvalText;
import dev.shrink.core.forward.CausalLM;
import dev.shrink.core.forward.KvCache;
import dev.shrink.core.forward.KvCacheType;
import dev.shrink.core.forward.Taps;
import dev.shrink.core.ops.Backends;
import java.util.Arrays;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;

/**
 * The simulated int8 / int4 KV cache in the CPU decoder (docs/KV_CACHE.md) on stories260K: its
 * perplexity cost, and cached decoding against the cache-less forward through the same quantizer.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class KvCacheQuantTest {
    private LoadedModel model;
    private int[] stream;

    @BeforeAll
    void load() {
        model = LoadedModel.open(Golden.model("stories260K-hf"), Backends.select("cpu", 0));
        stream = model.tokenStream(EvalText.load("tinystories").text());
    }

    @AfterAll
    void close() {
        if (model != null) {
            model.close();
        }
    }

    @Test
    void int8CostsLessThanHalfAPercentOfPerplexityAndInt4More() {
        int seqlen = 256, windows = 6;
        PplResult fp16 = Perplexity.evaluate(model.lm(), "tinystories", stream, seqlen, windows, true);
        PplResult int8 = Perplexity.evaluate(model.lm().withKvCache(KvCacheType.INT8), "tinystories", stream, seqlen, windows, true);
        PplResult int4 = Perplexity.evaluate(model.lm().withKvCache(KvCacheType.INT4), "tinystories", stream, seqlen, windows, true);
        assertNotEquals(fp16.nllSum(), int8.nllSum(), "the int8 cache changes the forward");
        double rel8 = Math.abs(int8.ppl() / fp16.ppl() - 1);
        assertTrue(rel8 < 0.005, "int8 KV: ppl " + int8.ppl() + " vs fp16 " + fp16.ppl());
        assertTrue(int4.ppl() / fp16.ppl() - 1 > rel8, "int4 (" + int4.ppl() + ") costs more than int8 (" + int8.ppl() + ")");
        assertSame(model.lm(), model.lm().withKvCache(KvCacheType.FP16), "fp16 is the model as loaded");
    }

    /** Logits of every position: one forward of all tokens without a cache. */
    private static float[] fullForward(CausalLM lm, int[] tokens) {
        float[] h = lm.hidden(tokens, 1, tokens.length, null, Taps.NONE);
        return lm.logits(h, 0, tokens.length);
    }

    /** Logits of every position: a prefill of {@code prefill} tokens into a cache, then one token at a time. */
    private static float[] cachedDecode(CausalLM lm, int[] tokens, int prefill) {
        int V = lm.config().vocab();
        float[] out = new float[tokens.length * V];
        KvCache[] caches = {lm.newCache(tokens.length)};
        float[] h = lm.hidden(Arrays.copyOf(tokens, prefill), 1, prefill, caches, Taps.NONE);
        System.arraycopy(lm.logits(h, 0, prefill), 0, out, 0, prefill * V);
        for (int t = prefill; t < tokens.length; t++) {
            h = lm.hidden(new int[] {tokens[t]}, 1, 1, caches, Taps.NONE);
            System.arraycopy(lm.logits(h, 0, 1), 0, out, t * V, V);
        }
        return out;
    }

    private static double maxAbsDiff(float[] a, float[] b) {
        double m = 0;
        for (int i = 0; i < a.length; i++) {
            m = Math.max(m, Math.abs(a[i] - b[i]));
        }
        return m;
    }

    @Test
    void cachedDecodingWithInt8EqualsTheFullForwardWithTheSameQuantization() {
        int[] tokens = Arrays.copyOfRange(stream, 0, 48);
        for (KvCacheType kv : new KvCacheType[] {KvCacheType.INT8, KvCacheType.INT4}) {
            CausalLM lm = model.lm().withKvCache(kv);
            float[] full = fullForward(lm, tokens);
            float[] cached = cachedDecode(lm, tokens, 16);
            double cacheVsFull = maxAbsDiff(full, cached);
            // the same K/V bits on both paths: what is left is float32 summation order (GEMM rows, softmax)
            assertTrue(cacheVsFull < 2e-4, kv.id() + ": cached vs full forward, max |Δlogit| " + cacheVsFull);
            double vsFp16 = maxAbsDiff(full, fullForward(model.lm(), tokens));
            assertTrue(vsFp16 > 50 * Math.max(cacheVsFull, 1e-6), kv.id() + " vs fp16 |Δlogit| " + vsFp16
                    + " should dwarf the paths' difference " + cacheVsFull);
        }
        assertEquals(KvCacheType.INT8, model.lm().withKvCache(KvCacheType.INT8).decoder().kvCache());
    }
}
