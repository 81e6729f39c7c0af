package dev.shrink.distill;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import java.util.Random;
import java.util.function.Supplier;
import org.junit.jupiter.api.Test;

/**
 * Every op's backward against central finite differences in float64, on random inputs: with a
 * fixed random projection r of the outputs, L = Σ r·y; the backward run with dy = r must give
 * ∂L/∂x, and (L(x + h·e_i) − L(x − h·e_i)) / 2h must match it for every input element i. In double
 * with h = 1e-5 the difference is accurate to ~1e-9 relative, so a wrong term, sign, index or
 * factor shows as an error of order 1 against the tolerance of 1e-6.
 */
class OpGradientTest {
    private static final F64TrainOps OPS = new F64TrainOps();
    private static final double H = 1e-5;
    private static final double TOL = 1e-6;

    static double[] random(Random rnd, int n, double scale) {
        double[] a = new double[n];
        for (int i = 0; i < n; i++) {
            a[i] = rnd.nextGaussian() * scale;
        }
        return a;
    }

    static double dot(double[] a, double[] b) {
        double s = 0;
        for (int i = 0; i < a.length; i++) {
            s += a[i] * b[i];
        }
        return s;
    }

    /**
     * Checks the analytic gradient {@code grad} of {@code loss} w.r.t. every element of {@code x}
     * (perturbed in place), relative to the largest gradient element.
     */
    static void check(String what, double[] x, double[] grad, Supplier<Double> loss) {
        double scale = 1e-12;
        for (double g : grad) {
            scale = Math.max(scale, Math.abs(g));
        }
        double worst = 0;
        for (int i = 0; i < x.length; i++) {
            double old = x[i];
            x[i] = old + H;
            double lp = loss.get();
            x[i] = old - H;
            double lm = loss.get();
            x[i] = old;
            double fd = (lp - lm) / (2 * H);
            double err = Math.abs(fd - grad[i]) / scale;
            worst = Math.max(worst, err);
            assertTrue(err < TOL, what + "[" + i + "]: finite difference " + fd + ", backward " + grad[i]
                    + " (relative error " + err + ")");
        }
        assertTrue(scale > 1e-6, what + ": the gradient is all zeros, the check would prove nothing");
        assertTrue(worst < TOL, what);
    }

    static RopeTable rope(int P, int D, double theta) {
        int half = D / 2;
        float[] c = new float[P * half], s = new float[P * half];
        for (int p = 0; p < P; p++) {
            for (int i = 0; i < half; i++) {
                double angle = p / Math.pow(theta, 2.0 * i / D);
                c[p * half + i] = (float) Math.cos(angle);
                s[p * half + i] = (float) Math.sin(angle);
            }
        }
        return new RopeTable(P, half, c, s);
    }

    @Test
    void embedding() {
        Random rnd = new Random(1);
        int V = 7, C = 5;
        int[] tokens = {3, 1, 3, 6, 0, 3};
        double[] E = random(rnd, V * C, 1), r = random(rnd, tokens.length * C, 1);
        Supplier<Double> loss = () -> {
            double[] x = new double[tokens.length * C];
            OPS.embedForward(E, tokens, C, x);
            return dot(r, x);
        };
        double[] dE = new double[V * C];
        OPS.embedBackward(r, tokens, C, dE);
        check("dE", E, dE, loss);
    }

    @Test
    void rmsNorm() {
        Random rnd = new Random(2);
        int M = 3, C = 8;
        double[] x = random(rnd, M * C, 1.5), w = random(rnd, C, 1), r = random(rnd, M * C, 1);
        Supplier<Double> loss = () -> {
            double[] y = new double[M * C];
            OPS.rmsNormForward(x, w, 1e-5, M, C, y, new double[M]);
            return dot(r, y);
        };
        double[] y = new double[M * C], rstd = new double[M], dx = new double[M * C], dw = new double[C];
        OPS.rmsNormForward(x, w, 1e-5, M, C, y, rstd);
        OPS.rmsNormBackward(r, x, w, rstd, M, C, dx, dw);
        check("dx", x, dx, loss);
        check("dw", w, dw, loss);
    }

    @Test
    void linear() {
        Random rnd = new Random(3);
        int M = 4, K = 5, N = 3;
        double[] x = random(rnd, M * K, 1), W = random(rnd, N * K, 1), b = random(rnd, N, 1), r = random(rnd, M * N, 1);
        Supplier<Double> loss = () -> {
            double[] y = new double[M * N];
            OPS.linearForward(x, W, b, M, K, N, y);
            return dot(r, y);
        };
        double[] dx = new double[M * K], dW = new double[N * K], db = new double[N];
        OPS.linearBackward(r, x, W, M, K, N, dx, dW, db);
        check("dx", x, dx, loss);
        check("dW", W, dW, loss);
        check("db", b, db, loss);
    }

    @Test
    void rope() {
        Random rnd = new Random(4);
        int B = 2, T = 3, heads = 2, D = 6;
        RopeTable table = rope(T, D, 10000);
        double[] x = random(rnd, B * T * heads * D, 1), r = random(rnd, x.length, 1);
        Supplier<Double> loss = () -> {
            double[] y = x.clone();
            OPS.ropeForward(y, B, T, heads, D, table);
            return dot(r, y);
        };
        double[] dx = r.clone();
        OPS.ropeBackward(dx, B, T, heads, D, table);
        check("dx", x, dx, loss);
    }

    @Test
    void attentionWithGroupedHeads() {
        Random rnd = new Random(5);
        int B = 2, T = 5, H = 4, Hkv = 2, D = 4;
        double[] q = random(rnd, B * T * H * D, 1), k = random(rnd, B * T * Hkv * D, 1), v = random(rnd, B * T * Hkv * D, 1);
        double[] r = random(rnd, B * T * H * D, 1);
        Supplier<Double> loss = () -> {
            double[] out = new double[B * T * H * D];
            OPS.attentionForward(q, k, v, B, T, H, Hkv, D, out, new double[B * H * T]);
            return dot(r, out);
        };
        double[] out = new double[B * T * H * D], lse = new double[B * H * T];
        OPS.attentionForward(q, k, v, B, T, H, Hkv, D, out, lse);
        double[] dq = new double[q.length], dk = new double[k.length], dv = new double[v.length];
        OPS.attentionBackward(r, q, k, v, out, lse, B, T, H, Hkv, D, dq, dk, dv);
        check("dq", q, dq, loss);
        check("dk", k, dk, loss);
        check("dv", v, dv, loss);
    }

    @Test
    void attentionForwardIsCausalSoftmax() {
        // the first query sees only the first key: its output is v_0 exactly, and its lse is its one score
        Random rnd = new Random(6);
        int B = 1, T = 3, H = 2, Hkv = 1, D = 4;
        double[] q = random(rnd, T * H * D, 1), k = random(rnd, T * Hkv * D, 1), v = random(rnd, T * Hkv * D, 1);
        double[] out = new double[T * H * D], lse = new double[H * T];
        OPS.attentionForward(q, k, v, B, T, H, Hkv, D, out, lse);
        for (int h = 0; h < H; h++) {
            for (int d = 0; d < D; d++) {
                assertEquals(v[d], out[h * D + d], 1e-15);
            }
            assertEquals(dot(slice(q, h * D, D), slice(k, 0, D)) / 2, lse[h * T], 1e-14);
        }
    }

    /**
     * Gemma 2's attention: a scale that is not 1/√D and scores soft-capped to c·tanh(s/c), with scores out to
     * about ±c where the cap bends them; dropping the (1 − tanh²) factor or the scale from dq/dk fails it.
     */
    @Test
    void attentionWithScaleAndSoftcap() {
        Random rnd = new Random(15);
        int B = 2, T = 5, H = 4, Hkv = 2, D = 4;
        double scale = 0.3;
        float cap = 2f;
        double[] q = random(rnd, B * T * H * D, 1.5), k = random(rnd, B * T * Hkv * D, 1.5), v = random(rnd, B * T * Hkv * D, 1);
        double[] r = random(rnd, B * T * H * D, 1);
        Supplier<Double> loss = () -> {
            double[] out = new double[B * T * H * D];
            OPS.attentionForward(q, k, v, B, T, H, Hkv, D, scale, cap, out, new double[B * H * T]);
            return dot(r, out);
        };
        double[] out = new double[B * T * H * D], lse = new double[B * H * T];
        OPS.attentionForward(q, k, v, B, T, H, Hkv, D, scale, cap, out, lse);
        double[] dq = new double[q.length], dk = new double[k.length], dv = new double[v.length];
        OPS.attentionBackward(r, q, k, v, out, lse, B, T, H, Hkv, D, scale, cap, dq, dk, dv);
        check("dq", q, dq, loss);
        check("dk", k, dk, loss);
        check("dv", v, dv, loss);
        // the first query of each head sees one key: its lse is that key's capped score, which the cap bent
        double bent = 0;
        for (int h = 0; h < H; h++) {
            double s = dot(slice(q, h * D, D), slice(k, (h / (H / Hkv)) * D, D)) * scale;
            assertEquals(cap * Math.tanh(s / cap), lse[h * T], 1e-14);
            bent = Math.max(bent, Math.abs(s - lse[h * T]));
        }
        assertTrue(bent > 0.05, "the scores are within the cap's linear range: " + bent);
        // 1/√D and no cap is the plain op
        double[] plain = new double[out.length], plainLse = new double[lse.length], general = new double[out.length];
        OPS.attentionForward(q, k, v, B, T, H, Hkv, D, plain, plainLse);
        OPS.attentionForward(q, k, v, B, T, H, Hkv, D, 1 / Math.sqrt(D), 0f, general, new double[lse.length]);
        assertEquals(java.util.Arrays.toString(plain), java.util.Arrays.toString(general));
    }

    /** Soft-capping (Gemma 2's logits) with values out to ±3c: dy·(1 − tanh²(x/c)). */
    @Test
    void softcap() {
        Random rnd = new Random(16);
        int n = 30;
        float cap = 1.5f;
        double[] x = random(rnd, n, 3), r = random(rnd, n, 1);
        Supplier<Double> loss = () -> {
            double[] y = x.clone();
            OPS.softcapForward(y, cap, n);
            return dot(r, y);
        };
        double[] dx = r.clone();
        OPS.softcapBackward(dx, x, cap, n);
        check("dx", x, dx, loss);
        double[] y = x.clone();
        OPS.softcapForward(y, cap, n);
        for (int i = 0; i < n; i++) {
            assertTrue(Math.abs(y[i]) < cap && Math.signum(y[i]) == Math.signum(x[i]), "capped " + x[i] + " to " + y[i]);
        }
    }

    static double[] slice(double[] a, int off, int n) {
        return java.util.Arrays.copyOfRange(a, off, off + n);
    }

    @Test
    void swiglu() {
        Random rnd = new Random(7);
        int n = 20;
        double[] g = random(rnd, n, 2), u = random(rnd, n, 1), r = random(rnd, n, 1);
        Supplier<Double> loss = () -> {
            double[] out = new double[n];
            OPS.swigluForward(g, u, n, out);
            return dot(r, out);
        };
        double[] dg = new double[n], du = new double[n];
        OPS.swigluBackward(r, g, u, n, dg, du);
        check("dg", g, dg, loss);
        check("du", u, du, loss);
    }

    /** GeGLU with gates out to ±4, where tanh-GELU's curvature and its negative dip both matter. */
    @Test
    void geglu() {
        Random rnd = new Random(17);
        int n = 20;
        double[] g = random(rnd, n, 2), u = random(rnd, n, 1), r = random(rnd, n, 1);
        Supplier<Double> loss = () -> {
            double[] out = new double[n];
            OPS.gegluForward(g, u, n, out);
            return dot(r, out);
        };
        double[] dg = new double[n], du = new double[n];
        OPS.gegluBackward(r, g, u, n, dg, du);
        check("dg", g, dg, loss);
        check("du", u, du, loss);
        // gelu_tanh itself against transformers' formula, g/2 · (1 + tanh(√(2/π)·(g + 0.044715·g³)))
        double[] out = new double[n], ones = new double[n];
        java.util.Arrays.fill(ones, 1);
        OPS.gegluForward(g, ones, n, out);
        for (int i = 0; i < n; i++) {
            double x = g[i];
            assertEquals(0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x))), out[i], 1e-14);
        }
    }

    @Test
    void distillationLosses() {
        Random rnd = new Random(8);
        int M = 4, V = 7;
        int[] targets = {2, -1, 6, 0};
        for (Losses.Kind kind : Losses.Kind.values()) {
            for (double temperature : List.of(1.0, 2.5)) {
                for (double alpha : List.of(1.0, 0.3, 0.0)) {
                    double[] zs = random(rnd, M * V, 2), zt = random(rnd, M * V, 2);
                    double klScale = alpha / M, ceScale = (1 - alpha) / 3;
                    Supplier<Double> loss = () -> {
                        Losses.Sums s = OPS.distillLoss(zs, zt, targets, kind, temperature, M, V, klScale, ceScale,
                                new double[M * V]);
                        return klScale * s.kl() + ceScale * s.ce();
                    };
                    double[] dz = new double[M * V];
                    Losses.Sums s = OPS.distillLoss(zs, zt, targets, kind, temperature, M, V, klScale, ceScale, dz);
                    if (alpha > 0) {
                        assertEquals(M, s.klRows());
                    }
                    if (alpha < 1) {
                        assertEquals(3, s.ceRows());
                    }
                    check(kind + " T=" + temperature + " alpha=" + alpha, zs, dz, loss);
                }
            }
        }
    }

    @Test
    void lossValuesAgainstTheirDefinitions() {
        // KL(p‖q) and CE computed directly from the softmax definitions, independently of Losses
        double[] zs = {1.0, -0.5, 2.0}, zt = {0.2, 0.1, -1.0};
        double T = 2;
        double[] q = softmax(zs, T), p = softmax(zt, T);
        double kl = 0, rkl = 0;
        for (int j = 0; j < 3; j++) {
            kl += p[j] * Math.log(p[j] / q[j]);
            rkl += q[j] * Math.log(q[j] / p[j]);
        }
        Losses.Sums f = OPS.distillLoss(zs, zt, new int[] {1}, Losses.Kind.KL, T, 1, 3, 1, 1, new double[3]);
        Losses.Sums r = OPS.distillLoss(zs, zt, new int[] {1}, Losses.Kind.REVERSE_KL, T, 1, 3, 1, 1, new double[3]);
        assertEquals(T * T * kl, f.kl(), 1e-14);
        assertEquals(T * T * rkl, r.kl(), 1e-14);
        assertEquals(-Math.log(softmax(zs, 1)[1]), f.ce(), 1e-14);
        // KL of identical distributions is 0, with a zero gradient
        double[] dz = new double[3];
        Losses.Sums same = OPS.distillLoss(zs, zs.clone(), null, Losses.Kind.KL, 1, 1, 3, 1, 0, dz);
        assertEquals(0, same.kl(), 1e-15);
        for (double d : dz) {
            assertEquals(0, d, 1e-15);
        }
    }

    static double[] softmax(double[] z, double T) {
        double[] e = new double[z.length];
        double s = 0;
        for (int j = 0; j < z.length; j++) {
            e[j] = Math.exp(z[j] / T);
            s += e[j];
        }
        for (int j = 0; j < z.length; j++) {
            e[j] /= s;
        }
        return e;
    }

    @Test
    void squaredError() {
        Random rnd = new Random(9);
        int n = 12;
        double[] a = random(rnd, n, 1), b = random(rnd, n, 1);
        double scale = 0.37;
        Supplier<Double> loss = () -> scale * OPS.squaredError(a, b, n, 0, null);
        double[] da = new double[n];
        OPS.squaredError(a, b, n, scale, da);
        check("da", a, da, loss);
    }
}
