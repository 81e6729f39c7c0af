package dev.shrink.kernels.cpu;

import static dev.shrink.kernels.cpu.Close.assertClose;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shrink.core.ops.Ops;
import java.util.Arrays;
import java.util.Random;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * Gemma's ops on both CPU backends against plain formulas written here: GeGLU with transformers'
 * gelu_pytorch_tanh, and attention with query_pre_attn_scalar's scale and Gemma 2's soft-capped
 * scores (c·tanh(s/c) before the mask and the softmax), with and without a sliding window and with
 * queries that continue a cache (Tq &lt; Tk). The default scale with no cap must stay the plain op
 * bit for bit (LLaMA's forward unchanged).
 */
class GemmaOpsTest {
    private static final ReferenceOps REF = new ReferenceOps();
    private static VectorOps vec;

    @BeforeAll
    static void open() {
        vec = new VectorOps(2);
    }

    @AfterAll
    static void release() {
        vec = null;
    }

    private Ops backend(String name) {
        return name.equals("cpu-reference") ? REF : vec;
    }

    static float[] random(Random r, int n, double std) {
        float[] a = new float[n];
        for (int i = 0; i < n; i++) {
            a[i] = (float) (r.nextGaussian() * std);
        }
        return a;
    }

    @ParameterizedTest
    @CsvSource({"cpu-reference, 1", "cpu-reference, 37", "cpu, 1", "cpu, 37", "cpu, 70001"})
    void gegluIsGeluTanhTimesUp(String backend, int n) {
        Random r = new Random(n);
        float[] g = random(r, n, 3), u = random(r, n, 1);
        g[0] = n > 1 ? 12f : g[0]; // saturated: gelu(g) ≈ g
        if (n > 2) {
            g[1] = -12f;           // ≈ 0
            g[2] = 0f;
        }
        float[] expected = new float[n];
        for (int i = 0; i < n; i++) {
            double x = g[i];
            expected[i] = (float) (0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x))) * u[i]);
        }
        float[] out = new float[n];
        Arrays.fill(out, Float.NaN);
        backend(backend).geglu(g, u, n, out);
        assertClose(backend + " geglu", expected, out, 1e-6, 1e-5);
        float[] inPlace = g.clone();
        backend(backend).geglu(inPlace, u, n, inPlace);
        assertArrayEquals(out, inPlace, "out may be gate");
    }

    /** The attention of one sequence by its definition: q [Tq, H, D], k/v [Tk, Hkv, D], query i at position Tk − Tq + i. */
    static float[] naive(float[] q, float[] k, float[] v, int Tq, int Tk, int H, int Hkv, int D, int window, double scale,
                         double cap) {
        float[] out = new float[Tq * H * D];
        for (int i = 0; i < Tq; i++) {
            int pos = Tk - Tq + i;
            for (int h = 0; h < H; h++) {
                int kv = h / (H / Hkv);
                double[] s = new double[Tk];
                double max = Double.NEGATIVE_INFINITY;
                for (int j = 0; j < Tk; j++) {
                    double dot = 0;
                    for (int d = 0; d < D; d++) {
                        dot += (double) q[(i * H + h) * D + d] * k[(j * Hkv + kv) * D + d];
                    }
                    double sc = dot * scale;
                    if (cap > 0) {
                        sc = cap * Math.tanh(sc / cap);
                    }
                    boolean visible = j <= pos && (window <= 0 || j > pos - window);
                    s[j] = visible ? sc : Double.NEGATIVE_INFINITY;
                    max = Math.max(max, s[j]);
                }
                double sum = 0;
                for (int j = 0; j < Tk; j++) {
                    s[j] = Math.exp(s[j] - max);
                    sum += s[j];
                }
                for (int d = 0; d < D; d++) {
                    double o = 0;
                    for (int j = 0; j < Tk; j++) {
                        o += s[j] / sum * v[(j * Hkv + kv) * D + d];
                    }
                    out[(i * H + h) * D + d] = (float) o;
                }
            }
        }
        return out;
    }

    @ParameterizedTest
    @CsvSource({
            // backend, Tq, Tk, window, cap
            "cpu-reference, 19, 19, 0, 0", "cpu-reference, 19, 19, 0, 2.5", "cpu-reference, 19, 19, 6, 2.5",
            "cpu-reference, 3, 70, 8, 2.5",
            "cpu, 19, 19, 0, 0", "cpu, 19, 19, 0, 2.5", "cpu, 19, 19, 6, 2.5", "cpu, 3, 70, 8, 2.5",
            "cpu, 130, 130, 0, 50", "cpu, 130, 130, 33, 1"})
    void scaledAndSoftCappedAttention(String backend, int Tq, int Tk, int window, float cap) {
        int H = 4, Hkv = 2, D = 16;
        Random r = new Random(Tq * 31 + Tk + window);
        float[] q = random(r, Tq * H * D, 1.5), k = random(r, Tk * Hkv * D, 1.5), v = random(r, Tk * Hkv * D, 1);
        double scale = Math.pow(24, -0.5); // query_pre_attn_scalar 24, not 1/√16
        float[] out = new float[Tq * H * D];
        Arrays.fill(out, Float.NaN);
        backend(backend).attention(q, k, v, Tq, Tk, H, Hkv, D, window, scale, cap, out);
        float[] expected = naive(q, k, v, Tq, Tk, H, Hkv, D, window, scale, cap);
        assertClose(backend + " attention", expected, out, 2e-5, 1e-4);
        if (cap > 0 && cap < 10) {
            float[] uncapped = naive(q, k, v, Tq, Tk, H, Hkv, D, window, scale, 0);
            double moved = 0;
            for (int i = 0; i < out.length; i++) {
                moved = Math.max(moved, Math.abs(uncapped[i] - expected[i]));
            }
            assertTrue(moved > 1e-2, "the cap changes the result here (" + moved + ")");
        }
    }

    @ParameterizedTest
    @CsvSource({"cpu-reference, 0", "cpu-reference, 5", "cpu, 0", "cpu, 5"})
    void defaultScaleWithoutCapIsThePlainOpBitForBit(String backend, int window) {
        int T = 23, H = 4, Hkv = 1, D = 12;
        Random r = new Random(window);
        float[] q = random(r, T * H * D, 1), k = random(r, T * Hkv * D, 1), v = random(r, T * Hkv * D, 1);
        float[] plain = new float[T * H * D], general = new float[T * H * D];
        backend(backend).attention(q, k, v, T, T, H, Hkv, D, window, plain);
        backend(backend).attention(q, k, v, T, T, H, Hkv, D, window, 1.0 / Math.sqrt(D), 0f, general);
        assertArrayEquals(plain, general);
    }

    @Test
    void opsWithoutTheGeneralAttentionRefuseAnotherScale() {
        Ops plainOnly = new SlidingOnly(REF);
        float[] q = new float[4 * 8], kv = new float[4 * 8], out = new float[4 * 8];
        assertThrows(UnsupportedOperationException.class,
                () -> plainOnly.attention(q, kv, kv, 4, 4, 1, 1, 8, 0, 0.3, 0f, out));
        assertThrows(UnsupportedOperationException.class,
                () -> plainOnly.attention(q, kv, kv, 4, 4, 1, 1, 8, 0, 1.0 / Math.sqrt(8), 5f, out));
        plainOnly.attention(q, kv, kv, 4, 4, 1, 1, 8, 0, 1.0 / Math.sqrt(8), 0f, out); // the plain op: fine
        assertThrows(UnsupportedOperationException.class, () -> plainOnly.geglu(q, q, 1, out));
    }

    /** An Ops that implements only the abstract methods (as a third-party backend would). */
    private record SlidingOnly(Ops ops) implements Ops {
        public String name() {
            return "plain-only";
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
    }
}
