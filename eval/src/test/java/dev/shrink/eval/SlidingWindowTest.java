package dev.shrink.eval;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.shrink.calib.EvalText;
import dev.shrink.core.forward.CausalLM;
import dev.shrink.core.forward.KvCache;
import dev.shrink.core.forward.Taps;
import dev.shrink.core.ops.Backends;
import dev.shrink.core.ops.Ops;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Mistral's sliding window (transformers' masking_utils: query q sees key k iff k ≤ q and
 * k &gt; q − window). stories260K under MistralForCausalLM with a window of 4, against a reference
 * attention written here from that definition alone.
 */
class SlidingWindowTest {
    static final int W = 4, T = 32;

    @TempDir
    Path tmp;

    /** Attention of one sequence by the definition: for each query, softmax over its window's keys, in double. */
    static void windowed(float[] q, float[] k, float[] v, int Tq, int Tk, int H, int Hkv, int D, int window, float[] out) {
        for (int i = 0; i < Tq; i++) {
            int qi = Tk - Tq + i;
            for (int h = 0; h < H; h++) {
                int kh = h / (H / Hkv);
                double[] s = new double[Tk];
                double max = Double.NEGATIVE_INFINITY;
                for (int j = 0; j < Tk; j++) {
                    boolean visible = j <= qi && (window <= 0 || j > qi - window);
                    s[j] = Double.NEGATIVE_INFINITY;
                    if (visible) {
                        double dot = 0;
                        for (int d = 0; d < D; d++) {
                            dot += q[(i * H + h) * D + d] * (double) k[(j * Hkv + kh) * D + d];
                        }
                        s[j] = dot / Math.sqrt(D);
                        max = Math.max(max, s[j]);
                    }
                }
                double sum = 0;
                double[] o = new double[D];
                for (int j = 0; j < Tk; j++) {
                    double e = Math.exp(s[j] - max); // 0 for masked keys
                    sum += e;
                    for (int d = 0; d < D; d++) {
                        o[d] += e * v[(j * Hkv + kh) * D + d];
                    }
                }
                for (int d = 0; d < D; d++) {
                    out[(i * H + h) * D + d] = (float) (o[d] / sum);
                }
            }
        }
    }

    /**
     * Ops that compute every attention with the window {@code W}, whatever window (if any) the
     * decoder passes, and everything else as the reference backend: what a correct decoder of a
     * window-4 Mistral must compute.
     */
    static Ops referenceWithWindow(int window) {
        Ops ref = Backends.select("cpu-reference", 1);
        return new Ops() {
            public String name() {
                return "test-window";
            }

            public void gemm(boolean ta, boolean tb, int M, int N, int K, float alpha, float[] A, int aOff, int lda,
                             float[] B, int bOff, int ldb, float beta, float[] C, int cOff, int ldc) {
                ref.gemm(ta, tb, M, N, K, alpha, A, aOff, lda, B, bOff, ldb, beta, C, cOff, ldc);
            }

            public void rmsNorm(float[] x, float[] w, float eps, int M, int C, float[] y) {
                ref.rmsNorm(x, w, eps, M, C, y);
            }

            public void rope(float[] x, int T, int heads, int D, int[] positions, float[] cos, float[] sin) {
                ref.rope(x, T, heads, D, positions, cos, sin);
            }

            public void attention(float[] q, float[] k, float[] v, int Tq, int Tk, int H, int Hkv, int D, float[] out) {
                windowed(q, k, v, Tq, Tk, H, Hkv, D, window, out);
            }

            @Override
            public void attention(float[] q, float[] k, float[] v, int Tq, int Tk, int H, int Hkv, int D, int ignored,
                                  float[] out) {
                windowed(q, k, v, Tq, Tk, H, Hkv, D, window, out);
            }

            public void swiglu(float[] g, float[] u, int n, float[] out) {
                ref.swiglu(g, u, n, out);
            }

            public void crossEntropy(float[] logits, int M, int V, int[] targets, double[] nll) {
                ref.crossEntropy(logits, M, V, targets, nll);
            }
        };
    }

    /** stories260K as MistralForCausalLM with {@code sliding_window} = window (a copy). */
    Path mistral(int window) throws Exception {
        Path src = Golden.model("stories260K-hf");
        Path dst = Files.createDirectories(tmp.resolve("mistral-" + window));
        ObjectNode cfg = (ObjectNode) new ObjectMapper().readTree(src.resolve("config.json").toFile());
        cfg.putArray("architectures").add("MistralForCausalLM");
        cfg.put("model_type", "mistral");
        cfg.put("sliding_window", window);
        Files.writeString(dst.resolve("config.json"), cfg.toString());
        for (String f : new String[] {"tokenizer.json", "model.safetensors"}) {
            Files.copy(src.resolve(f), dst.resolve(f));
        }
        return dst;
    }

    static int[] tokens(LoadedModel m) {
        return Arrays.copyOf(m.tokenStream(EvalText.load("tinystories").text()), T);
    }

    static float[] logits(CausalLM lm, int[] ids) {
        return lm.logits(lm.hidden(ids, 1, ids.length, null, Taps.NONE), 0, ids.length);
    }

    static float maxDiff(float[] a, float[] b) {
        assertEquals(a.length, b.length);
        float m = 0;
        for (int i = 0; i < a.length; i++) {
            m = Math.max(m, Math.abs(a[i] - b[i]));
        }
        return m;
    }

    @Test
    void everyBackendMatchesTheDefinition() {
        Random r = new Random(7);
        int H = 4, Hkv = 2, D = 8;
        for (String backend : new String[] {"cpu-reference", "cpu"}) {
            Ops ops = Backends.select(backend, 2);
            for (int[] tq : new int[][] {{9, 9}, {3, 11}, {1, 20}, {70, 70}, {130, 150}}) {
                for (int window : new int[] {1, 2, 5, 64, 1000}) {
                    int Tq = tq[0], Tk = tq[1];
                    float[] q = rand(r, Tq * H * D), k = rand(r, Tk * Hkv * D), v = rand(r, Tk * Hkv * D);
                    float[] want = new float[Tq * H * D], got = new float[Tq * H * D], dflt = new float[Tq * H * D];
                    windowed(q, k, v, Tq, Tk, H, Hkv, D, window, want);
                    ops.attention(q, k, v, Tq, Tk, H, Hkv, D, window, got);
                    assertTrue(maxDiff(want, got) < 1e-5, backend + " Tq=" + Tq + " Tk=" + Tk + " window " + window);
                    // the interface's default (what a backend without its own windowed loop runs)
                    defaultPath(ops).attention(q, k, v, Tq, Tk, H, Hkv, D, window, dflt);
                    assertTrue(maxDiff(want, dflt) < 1e-5, "Ops default, Tq=" + Tq + " Tk=" + Tk + " window " + window);
                }
            }
        }
    }

    /** {@code ops} with only the causal attention of its own: the windowed call takes the interface's default. */
    static Ops defaultPath(Ops ops) {
        return new Ops() {
            public String name() {
                return ops.name();
            }

            public void gemm(boolean ta, boolean tb, int M, int N, int K, float alpha, float[] A, int aOff, int lda,
                             float[] B, int bOff, int ldb, float beta, float[] C, int cOff, int ldc) {
                ops.gemm(ta, tb, M, N, K, alpha, A, aOff, lda, B, bOff, ldb, beta, C, cOff, ldc);
            }

            public void rmsNorm(float[] x, float[] w, float eps, int M, int C, float[] y) {
                ops.rmsNorm(x, w, eps, M, C, y);
            }

            public void rope(float[] x, int T, int heads, int D, int[] positions, float[] cos, float[] sin) {
                ops.rope(x, T, heads, D, positions, cos, sin);
            }

            public void attention(float[] q, float[] k, float[] v, int Tq, int Tk, int H, int Hkv, int D, float[] out) {
                ops.attention(q, k, v, Tq, Tk, H, Hkv, D, out);
            }

            public void swiglu(float[] g, float[] u, int n, float[] out) {
                ops.swiglu(g, u, n, out);
            }

            public void crossEntropy(float[] logits, int M, int V, int[] targets, double[] nll) {
                ops.crossEntropy(logits, M, V, targets, nll);
            }
        };
    }

    static float[] rand(Random r, int n) {
        float[] x = new float[n];
        for (int i = 0; i < n; i++) {
            x[i] = (float) (r.nextGaussian() * 2);
        }
        return x;
    }

    @Test
    void mistralWindowMatchesTheReferenceAttention() throws Exception {
        Path m4 = mistral(W);
        float[] want, got, full;
        int[] ids;
        try (LoadedModel m = LoadedModel.open(m4, referenceWithWindow(W))) {
            ids = tokens(m);
            want = logits(m.lm(), ids);
        }
        try (LoadedModel m = LoadedModel.open(m4, Backends.select("cpu", 2))) {
            got = logits(m.lm(), ids);
        }
        try (LoadedModel m = LoadedModel.open(Golden.model("stories260K-hf"), Backends.select("cpu", 2))) {
            full = logits(m.lm(), ids);
        }
        assertTrue(maxDiff(want, got) < 1e-3, "window 4 vs the reference: " + maxDiff(want, got));
        assertTrue(maxDiff(full, got) > 0.1, "a window of 4 over 32 tokens changes the logits: " + maxDiff(full, got));
        // the first W positions see the same keys with or without the window
        float[] head = Arrays.copyOf(got, W * 512), fullHead = Arrays.copyOf(full, W * 512);
        assertTrue(maxDiff(head, fullHead) < 1e-4, "positions < window are unaffected");
    }

    @Test
    void kvCacheDecodingEqualsTheFullForward() throws Exception {
        try (LoadedModel m = LoadedModel.open(mistral(W), Backends.select("cpu", 2))) {
            CausalLM lm = m.lm();
            int[] ids = tokens(m);
            float[] full = logits(lm, ids);
            int V = lm.config().vocab();
            KvCache[] cache = {lm.newCache(T)};
            // a prompt of 6 (longer than the window), then one token at a time, then a chunk of 3
            int pos = 0;
            float[] step = new float[T * V];
            for (int n : new int[] {6, 1, 1, 1, 3, 1}) {
                int[] chunk = Arrays.copyOfRange(ids, pos, pos + n);
                float[] h = lm.hidden(chunk, 1, n, cache, Taps.NONE);
                System.arraycopy(lm.logits(h, 0, n), 0, step, pos * V, n * V);
                pos += n;
            }
            float[] fullHead = Arrays.copyOf(full, pos * V), stepHead = Arrays.copyOf(step, pos * V);
            assertTrue(maxDiff(fullHead, stepHead) < 1e-4, "cached decoding vs full forward: " + maxDiff(fullHead, stepHead));
        }
    }

    @Test
    void aWindowAtLeastTheSequenceIsFullAttention() throws Exception {
        float[] full, wide;
        int[] ids;
        try (LoadedModel m = LoadedModel.open(Golden.model("stories260K-hf"), Backends.select("cpu", 2))) {
            ids = tokens(m);
            full = logits(m.lm(), ids);
        }
        try (LoadedModel m = LoadedModel.open(mistral(T), Backends.select("cpu", 2))) {
            wide = logits(m.lm(), ids);
        }
        assertEquals(0f, maxDiff(full, wide), "window = seqlen");
    }
}
