package dev.shrink.distill;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shrink.core.ops.Ops;
import dev.shrink.kernels.cpu.ReferenceOps;
import dev.shrink.kernels.cpu.VectorOps;
import java.util.Random;
import java.util.stream.Stream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The float32 training ops against the float64 specification ({@link F64TrainOps}, itself checked
 * by finite differences), on the same random inputs: every output and gradient within
 * {@code atol + rtol·|ref|}, with rtol 1e-4 (float32 keeps ~7 digits; the longest sums here run
 * over a few hundred terms). Attention runs T = 150 so that several query blocks of
 * {@value F32TrainOps#QUERY_BLOCK}, a partial one and GQA are covered. Both GEMM backends, and a
 * thread count that must not change a single bit.
 */
class F32ConformanceTest {
    private static final F64TrainOps REF = new F64TrainOps();

    static Stream<Ops> backends() {
        return Stream.of(new VectorOps(2), new ReferenceOps());
    }

    static float[] random(Random rnd, int n, double scale) {
        float[] a = new float[n];
        for (int i = 0; i < n; i++) {
            a[i] = (float) (rnd.nextGaussian() * scale);
        }
        return a;
    }

    static double[] wide(float[] a) {
        return REF.adopt(a);
    }

    static void close(String what, double[] ref, float[] got, double rtol) {
        assertEquals(ref.length, got.length, what + " length");
        double max = 0;
        for (double r : ref) {
            max = Math.max(max, Math.abs(r));
        }
        double atol = rtol * max;
        for (int i = 0; i < ref.length; i++) {
            double err = Math.abs(ref[i] - got[i]);
            assertTrue(err <= atol + rtol * Math.abs(ref[i]), what + "[" + i + "]: f64 " + ref[i] + ", f32 " + got[i]);
        }
        assertTrue(max > 0, what + " is all zeros");
    }

    @ParameterizedTest
    @MethodSource("backends")
    void everyOpMatchesTheSpecification(Ops backend) {
        F32TrainOps f = new F32TrainOps(backend, 2);
        Random rnd = new Random(11);
        double rtol = 1e-4;

        // embedding with repeated tokens
        int V = 9, C = 20;
        int[] tokens = {4, 1, 4, 8, 0, 4, 2};
        float[] E = random(rnd, V * C, 1), dxE = random(rnd, tokens.length * C, 1);
        float[] x32 = new float[tokens.length * C];
        double[] x64 = new double[tokens.length * C];
        f.embedForward(E, tokens, C, x32);
        REF.embedForward(wide(E), tokens, C, x64);
        close("embed", x64, x32, 0);
        float[] dE32 = new float[V * C];
        double[] dE64 = new double[V * C];
        f.embedBackward(dxE, tokens, C, dE32);
        REF.embedBackward(wide(dxE), tokens, C, dE64);
        close("dE", dE64, dE32, 1e-6);

        // RMSNorm over more rows than one reduction chunk
        int M = 150;
        float[] x = random(rnd, M * C, 2), w = random(rnd, C, 1), dy = random(rnd, M * C, 1);
        float[] y32 = new float[M * C], r32 = new float[M], dx32 = new float[M * C], dw32 = new float[C];
        double[] y64 = new double[M * C], r64 = new double[M], dx64 = new double[M * C], dw64 = new double[C];
        f.rmsNormForward(x, w, 1e-5, M, C, y32, r32);
        REF.rmsNormForward(wide(x), wide(w), 1e-5, M, C, y64, r64);
        close("rmsnorm y", y64, y32, rtol);
        f.rmsNormBackward(dy, x, w, r32, M, C, dx32, dw32);
        REF.rmsNormBackward(wide(dy), wide(x), wide(w), r64, M, C, dx64, dw64);
        close("rmsnorm dx", dx64, dx32, rtol);
        close("rmsnorm dw", dw64, dw32, rtol);

        // linear with bias
        int K = 33, N = 17;
        float[] xl = random(rnd, M * K, 1), W = random(rnd, N * K, 1), b = random(rnd, N, 1), dyl = random(rnd, M * N, 1);
        float[] yl32 = new float[M * N], dxl32 = new float[M * K], dW32 = new float[N * K], db32 = new float[N];
        double[] yl64 = new double[M * N], dxl64 = new double[M * K], dW64 = new double[N * K], db64 = new double[N];
        f.linearForward(xl, W, b, M, K, N, yl32);
        REF.linearForward(wide(xl), wide(W), wide(b), M, K, N, yl64);
        close("linear y", yl64, yl32, rtol);
        f.linearBackward(dyl, xl, W, M, K, N, dxl32, dW32, db32);
        REF.linearBackward(wide(dyl), wide(xl), wide(W), M, K, N, dxl64, dW64, db64);
        close("linear dx", dxl64, dxl32, rtol);
        close("linear dW", dW64, dW32, rtol);
        close("linear db", db64, db32, rtol);

        // RoPE forward and backward
        int B = 2, T = 75, heads = 3, D = 8;
        RopeTable table = OpGradientTest.rope(T, D, 10000);
        float[] xr = random(rnd, B * T * heads * D, 1);
        float[] xr32 = xr.clone();
        double[] xr64 = wide(xr);
        f.ropeForward(xr32, B, T, heads, D, table);
        REF.ropeForward(xr64, B, T, heads, D, table);
        close("rope", xr64, xr32, 1e-6);
        f.ropeBackward(xr32, B, T, heads, D, table);
        REF.ropeBackward(xr64, B, T, heads, D, table);
        close("rope back", wide(xr), xr32, 1e-5); // the inverse rotation gives the input back

        // attention: several query blocks, a partial last block, GQA
        T = 150;
        int H = 4, Hkv = 2;
        D = 16;
        float[] q = random(rnd, B * T * H * D, 1), k = random(rnd, B * T * Hkv * D, 1), v = random(rnd, B * T * Hkv * D, 1);
        float[] dOut = random(rnd, B * T * H * D, 1);
        float[] o32 = new float[q.length], lse32 = new float[B * H * T];
        double[] o64 = new double[q.length], lse64 = new double[B * H * T];
        f.attentionForward(q, k, v, B, T, H, Hkv, D, o32, lse32);
        REF.attentionForward(wide(q), wide(k), wide(v), B, T, H, Hkv, D, o64, lse64);
        close("attention out", o64, o32, rtol);
        close("attention lse", lse64, lse32, rtol);
        float[] dq32 = new float[q.length], dk32 = new float[k.length], dv32 = new float[v.length];
        double[] dq64 = new double[q.length], dk64 = new double[k.length], dv64 = new double[v.length];
        f.attentionBackward(dOut, q, k, v, o32, lse32, B, T, H, Hkv, D, dq32, dk32, dv32);
        REF.attentionBackward(wide(dOut), wide(q), wide(k), wide(v), o64, lse64, B, T, H, Hkv, D, dq64, dk64, dv64);
        close("attention dq", dq64, dq32, rtol);
        close("attention dk", dk64, dk32, rtol);
        close("attention dv", dv64, dv32, rtol);
        // Gemma 2's: query_pre_attn_scalar's scale and soft-capped scores (cap 2: scores well into its bend)
        double gScale = 0.6;
        float cap = 2f;
        o32 = new float[q.length];
        lse32 = new float[B * H * T];
        o64 = new double[q.length];
        lse64 = new double[B * H * T];
        f.attentionForward(q, k, v, B, T, H, Hkv, D, gScale, cap, o32, lse32);
        REF.attentionForward(wide(q), wide(k), wide(v), B, T, H, Hkv, D, gScale, cap, o64, lse64);
        close("capped attention out", o64, o32, rtol);
        close("capped attention lse", lse64, lse32, rtol);
        dq32 = new float[q.length];
        dk32 = new float[k.length];
        dv32 = new float[v.length];
        dq64 = new double[q.length];
        dk64 = new double[k.length];
        dv64 = new double[v.length];
        f.attentionBackward(dOut, q, k, v, o32, lse32, B, T, H, Hkv, D, gScale, cap, dq32, dk32, dv32);
        REF.attentionBackward(wide(dOut), wide(q), wide(k), wide(v), o64, lse64, B, T, H, Hkv, D, gScale, cap, dq64, dk64, dv64);
        close("capped attention dq", dq64, dq32, rtol);
        close("capped attention dk", dk64, dk32, rtol);
        close("capped attention dv", dv64, dv32, rtol);

        // soft-capped logits (Gemma 2)
        float[] zc = random(rnd, 1000, 3), dz = random(rnd, 1000, 1), c32 = zc.clone();
        double[] c64 = wide(zc), dz64 = wide(dz);
        f.softcapForward(c32, 1.5f, zc.length);
        REF.softcapForward(c64, 1.5f, zc.length);
        close("softcap", c64, c32, 1e-6);
        f.softcapBackward(dz, zc, 1.5f, zc.length);
        REF.softcapBackward(dz64, wide(zc), 1.5f, zc.length);
        close("softcap back", dz64, dz, 1e-6);

        // SwiGLU
        int n = 1000;
        float[] g = random(rnd, n, 3), u = random(rnd, n, 1), dA = random(rnd, n, 1);
        float[] a32 = new float[n], dg32 = new float[n], du32 = new float[n];
        double[] a64 = new double[n], dg64 = new double[n], du64 = new double[n];
        f.swigluForward(g, u, n, a32);
        REF.swigluForward(wide(g), wide(u), n, a64);
        close("swiglu", a64, a32, rtol);
        f.swigluBackward(dA, g, u, n, dg32, du32);
        REF.swigluBackward(wide(dA), wide(g), wide(u), n, dg64, du64);
        close("swiglu dg", dg64, dg32, rtol);
        close("swiglu du", du64, du32, rtol);

        // GeGLU (Gemma): the same inputs
        float[] e32 = new float[n], eg32 = new float[n], eu32 = new float[n];
        double[] e64 = new double[n], eg64 = new double[n], eu64 = new double[n];
        f.gegluForward(g, u, n, e32);
        REF.gegluForward(wide(g), wide(u), n, e64);
        close("geglu", e64, e32, rtol);
        f.gegluBackward(dA, g, u, n, eg32, eu32);
        REF.gegluBackward(wide(dA), wide(g), wide(u), n, eg64, eu64);
        close("geglu dg", eg64, eg32, rtol);
        close("geglu du", eu64, eu32, rtol);

        // losses, gradient written over the student's logits as training does
        int rows = 40, vocab = 300;
        int[] targets = new int[rows];
        for (int i = 0; i < rows; i++) {
            targets[i] = i % 7 == 6 ? -1 : rnd.nextInt(vocab);
        }
        for (Losses.Kind kind : Losses.Kind.values()) {
            float[] zs = random(rnd, rows * vocab, 3), zt = random(rnd, rows * vocab, 3);
            double[] d64 = new double[rows * vocab];
            Losses.Sums s64 = REF.distillLoss(wide(zs), wide(zt), targets, kind, 2.0, rows, vocab, 0.7 / rows, 0.3 / rows, d64);
            float[] z = zs.clone();
            Losses.Sums s32 = f.distillLoss(z, zt, targets, kind, 2.0, rows, vocab, 0.7 / rows, 0.3 / rows, z);
            assertEquals(s64.kl(), s32.kl(), 1e-6 * Math.abs(s64.kl()), kind + " kl");
            assertEquals(s64.ce(), s32.ce(), 1e-6 * Math.abs(s64.ce()), kind + " ce");
            assertEquals(s64.ceRows(), s32.ceRows());
            close(kind + " dz", d64, z, rtol);
        }

        // AdamW, two steps from zero moments
        float[] p = random(rnd, n, 1), m = new float[n], vv = new float[n];
        double[] p64 = wide(p), m64 = new double[n], v64 = new double[n];
        for (int t = 1; t <= 2; t++) {
            float[] grad = random(rnd, n, 0.1);
            AdamW.Step step = new AdamW.Step(AdamW.Hyper.TORCH, 1e-3, t);
            f.adamw(p, grad, m, vv, step);
            REF.adamw(p64, wide(grad), m64, v64, step);
        }
        close("adamw p", p64, p, 1e-6);
        close("adamw m", m64, m, 1e-6);
        close("adamw v", v64, vv, 1e-6);
        assertEquals(REF.sumSquares(p64), f.sumSquares(p), 1e-6 * REF.sumSquares(p64));
    }

    @ParameterizedTest
    @MethodSource("backends")
    void resultsDoNotDependOnTheThreadCount(Ops backend) {
        Random rnd = new Random(12);
        int B = 3, T = 130, H = 4, Hkv = 2, D = 16, C = 64;
        float[] q = random(rnd, B * T * H * D, 1), k = random(rnd, B * T * Hkv * D, 1), v = random(rnd, B * T * Hkv * D, 1);
        float[] dOut = random(rnd, q.length, 1), x = random(rnd, B * T * C, 1), w = random(rnd, C, 1);
        float[][] first = null;
        for (int threads : new int[] {1, 2, 3}) {
            F32TrainOps f = new F32TrainOps(backend, threads);
            float[] o = new float[q.length], lse = new float[B * H * T];
            f.attentionForward(q, k, v, B, T, H, Hkv, D, o, lse);
            float[] dq = new float[q.length], dk = new float[k.length], dv = new float[v.length];
            f.attentionBackward(dOut, q, k, v, o, lse, B, T, H, Hkv, D, dq, dk, dv);
            float[] oc = new float[q.length], lsec = new float[B * H * T];
            f.attentionForward(q, k, v, B, T, H, Hkv, D, 0.2, 1.5f, oc, lsec);
            float[] dqc = new float[q.length], dkc = new float[k.length], dvc = new float[v.length];
            f.attentionBackward(dOut, q, k, v, oc, lsec, B, T, H, Hkv, D, 0.2, 1.5f, dqc, dkc, dvc);
            float[] y = new float[x.length], r = new float[B * T], dx = new float[x.length], dw = new float[C];
            f.rmsNormForward(x, w, 1e-5, B * T, C, y, r);
            f.rmsNormBackward(y, x, w, r, B * T, C, dx, dw);
            float[][] all = {o, lse, dq, dk, dv, dx, dw, {(float) f.sumSquares(dq)}, oc, lsec, dqc, dkc, dvc};
            if (first == null) {
                first = all;
            } else {
                for (int i = 0; i < all.length; i++) {
                    assertArrayEquals(first[i], all[i], "output " + i + " with " + threads + " threads");
                }
            }
        }
    }
}
