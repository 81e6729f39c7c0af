package dev.shrink.distill;

import java.util.Arrays;

/**
 * The specification of {@link TrainOps}: double[] arrays, plain loops, one thread. The
 * finite-difference tests check every backward here in float64, where a central difference is
 * accurate to ~1e-8, and {@link F32TrainOps} is tested against it. Slow by design.
 */
public final class F64TrainOps implements TrainOps<double[]> {

    @Override
    public String name() {
        return "cpu-f64";
    }

    @Override
    public double[] zeros(int n) {
        return new double[n];
    }

    @Override
    public double[] adopt(float[] values) {
        double[] a = new double[values.length];
        for (int i = 0; i < a.length; i++) {
            a[i] = values[i];
        }
        return a;
    }

    @Override
    public float[] toFloats(double[] a) {
        float[] f = new float[a.length];
        for (int i = 0; i < a.length; i++) {
            f[i] = (float) a[i];
        }
        return f;
    }

    @Override
    public int size(double[] a) {
        return a.length;
    }

    @Override
    public void copy(double[] src, double[] dst) {
        System.arraycopy(src, 0, dst, 0, src.length);
    }

    @Override
    public void zero(double[] a) {
        Arrays.fill(a, 0);
    }

    @Override
    public void add(double[] x, double[] d) {
        for (int i = 0; i < x.length; i++) {
            x[i] += d[i];
        }
    }

    @Override
    public void embedForward(double[] E, int[] tokens, int C, double[] x) {
        for (int t = 0; t < tokens.length; t++) {
            System.arraycopy(E, tokens[t] * C, x, t * C, C);
        }
    }

    @Override
    public void embedBackward(double[] dx, int[] tokens, int C, double[] dE) {
        for (int t = 0; t < tokens.length; t++) {
            for (int c = 0; c < C; c++) {
                dE[tokens[t] * C + c] += dx[t * C + c];
            }
        }
    }

    @Override
    public void rmsNormForward(double[] x, double[] w, double eps, int M, int C, double[] y, double[] rstd) {
        for (int m = 0; m < M; m++) {
            double ss = 0;
            for (int c = 0; c < C; c++) {
                ss += x[m * C + c] * x[m * C + c];
            }
            double r = 1 / Math.sqrt(ss / C + eps);
            rstd[m] = r;
            for (int c = 0; c < C; c++) {
                y[m * C + c] = x[m * C + c] * r * w[c];
            }
        }
    }

    @Override
    public void rmsNormBackward(double[] dy, double[] x, double[] w, double[] rstd, int M, int C, double[] dx,
                                double[] dw) {
        for (int m = 0; m < M; m++) {
            double r = rstd[m];
            double dot = 0; // Σ_c dy·w·x
            for (int c = 0; c < C; c++) {
                int i = m * C + c;
                dot += dy[i] * w[c] * x[i];
                dw[c] += dy[i] * x[i] * r;
            }
            for (int c = 0; c < C; c++) {
                int i = m * C + c;
                dx[i] += r * dy[i] * w[c] - r * r * r * x[i] * dot / C;
            }
        }
    }

    @Override
    public void linearForward(double[] x, double[] W, double[] b, int M, int K, int N, double[] y) {
        for (int m = 0; m < M; m++) {
            for (int n = 0; n < N; n++) {
                double s = b == null ? 0 : b[n];
                for (int k = 0; k < K; k++) {
                    s += x[m * K + k] * W[n * K + k];
                }
                y[m * N + n] = s;
            }
        }
    }

    @Override
    public void linearBackward(double[] dy, double[] x, double[] W, int M, int K, int N, double[] dx, double[] dW,
                               double[] db) {
        for (int m = 0; m < M; m++) {
            for (int n = 0; n < N; n++) {
                double g = dy[m * N + n];
                if (db != null) {
                    db[n] += g;
                }
                for (int k = 0; k < K; k++) {
                    dx[m * K + k] += g * W[n * K + k];
                    dW[n * K + k] += g * x[m * K + k];
                }
            }
        }
    }

    @Override
    public void ropeForward(double[] x, int B, int T, int heads, int D, RopeTable rope) {
        rotate(x, B, T, heads, D, rope, 1);
    }

    @Override
    public void ropeBackward(double[] dx, int B, int T, int heads, int D, RopeTable rope) {
        rotate(dx, B, T, heads, D, rope, -1);
    }

    /** Rotates each (x1, x2) pair by +angle (sign 1) or −angle (sign −1). */
    private static void rotate(double[] x, int B, int T, int heads, int D, RopeTable rope, int sign) {
        int half = D / 2;
        for (int b = 0; b < B; b++) {
            for (int t = 0; t < T; t++) {
                for (int h = 0; h < heads; h++) {
                    int base = ((b * T + t) * heads + h) * D;
                    for (int i = 0; i < half; i++) {
                        double c = rope.cos()[t * half + i], s = sign * (double) rope.sin()[t * half + i];
                        double x1 = x[base + i], x2 = x[base + half + i];
                        x[base + i] = x1 * c - x2 * s;
                        x[base + half + i] = x2 * c + x1 * s;
                    }
                }
            }
        }
    }

    @Override
    public void attentionForward(double[] q, double[] k, double[] v, int B, int T, int H, int Hkv, int D,
                                 double[] out, double[] lse) {
        attentionForward(q, k, v, B, T, H, Hkv, D, 1 / Math.sqrt(D), 0f, out, lse);
    }

    /** The score of a scaled dot product {@code raw} = (q·k)·scale: c·tanh(raw/c) with a cap c &gt; 0, else raw. */
    private static double capped(double raw, float softcap) {
        return softcap > 0 ? softcap * Math.tanh(raw / softcap) : raw;
    }

    @Override
    public void attentionForward(double[] q, double[] k, double[] v, int B, int T, int H, int Hkv, int D,
                                 double scale, float softcap, double[] out, double[] lse) {
        int group = H / Hkv;
        double[] s = new double[T];
        for (int b = 0; b < B; b++) {
            for (int h = 0; h < H; h++) {
                int kh = h / group;
                for (int i = 0; i < T; i++) {
                    int qi = ((b * T + i) * H + h) * D;
                    double max = Double.NEGATIVE_INFINITY;
                    for (int j = 0; j <= i; j++) {
                        int kj = ((b * T + j) * Hkv + kh) * D;
                        double dot = 0;
                        for (int d = 0; d < D; d++) {
                            dot += q[qi + d] * k[kj + d];
                        }
                        s[j] = capped(dot * scale, softcap);
                        max = Math.max(max, s[j]);
                    }
                    double sum = 0;
                    for (int j = 0; j <= i; j++) {
                        sum += Math.exp(s[j] - max);
                    }
                    double l = max + Math.log(sum);
                    lse[(b * H + h) * T + i] = l;
                    for (int d = 0; d < D; d++) {
                        out[qi + d] = 0;
                    }
                    for (int j = 0; j <= i; j++) {
                        double p = Math.exp(s[j] - l);
                        int vj = ((b * T + j) * Hkv + kh) * D;
                        for (int d = 0; d < D; d++) {
                            out[qi + d] += p * v[vj + d];
                        }
                    }
                }
            }
        }
    }

    @Override
    public void attentionBackward(double[] dOut, double[] q, double[] k, double[] v, double[] out, double[] lse,
                                  int B, int T, int H, int Hkv, int D, double[] dq, double[] dk, double[] dv) {
        attentionBackward(dOut, q, k, v, out, lse, B, T, H, Hkv, D, 1 / Math.sqrt(D), 0f, dq, dk, dv);
    }

    @Override
    public void attentionBackward(double[] dOut, double[] q, double[] k, double[] v, double[] out, double[] lse,
                                  int B, int T, int H, int Hkv, int D, double scale, float softcap,
                                  double[] dq, double[] dk, double[] dv) {
        int group = H / Hkv;
        double[] dcap = new double[T]; // ∂(capped score)/∂(raw score): 1 − tanh²(raw/c), or 1
        double[] p = new double[T];
        double[] dp = new double[T];
        for (int b = 0; b < B; b++) {
            for (int h = 0; h < H; h++) {
                int kh = h / group;
                for (int i = 0; i < T; i++) {
                    int qi = ((b * T + i) * H + h) * D;
                    double l = lse[(b * H + h) * T + i];
                    double di = 0; // rowsum(dO ⊙ O)
                    for (int d = 0; d < D; d++) {
                        di += dOut[qi + d] * out[qi + d];
                    }
                    for (int j = 0; j <= i; j++) {
                        int kj = ((b * T + j) * Hkv + kh) * D;
                        double dot = 0, dpj = 0;
                        for (int d = 0; d < D; d++) {
                            dot += q[qi + d] * k[kj + d];
                            dpj += dOut[qi + d] * v[kj + d];
                        }
                        double raw = dot * scale, t = softcap > 0 ? Math.tanh(raw / softcap) : 0;
                        p[j] = Math.exp(capped(raw, softcap) - l);
                        dp[j] = dpj;
                        dcap[j] = 1 - t * t;
                    }
                    for (int j = 0; j <= i; j++) {
                        int kj = ((b * T + j) * Hkv + kh) * D;
                        double ds = p[j] * (dp[j] - di) * dcap[j];
                        for (int d = 0; d < D; d++) {
                            dv[kj + d] += p[j] * dOut[qi + d];
                            dq[qi + d] += ds * k[kj + d] * scale;
                            dk[kj + d] += ds * q[qi + d] * scale;
                        }
                    }
                }
            }
        }
    }

    @Override
    public void softcapForward(double[] x, float cap, int n) {
        for (int i = 0; i < n; i++) {
            x[i] = cap * Math.tanh(x[i] / cap);
        }
    }

    @Override
    public void softcapBackward(double[] dy, double[] x, float cap, int n) {
        for (int i = 0; i < n; i++) {
            double t = Math.tanh(x[i] / cap);
            dy[i] *= 1 - t * t;
        }
    }

    @Override
    public void swigluForward(double[] g, double[] u, int n, double[] out) {
        for (int i = 0; i < n; i++) {
            double sig = 1 / (1 + Math.exp(-g[i]));
            out[i] = g[i] * sig * u[i];
        }
    }

    @Override
    public void swigluBackward(double[] dOut, double[] g, double[] u, int n, double[] dg, double[] du) {
        for (int i = 0; i < n; i++) {
            double sig = 1 / (1 + Math.exp(-g[i]));
            dg[i] += dOut[i] * u[i] * sig * (1 + g[i] * (1 - sig));
            du[i] += dOut[i] * g[i] * sig;
        }
    }

    private static final double GELU_C2 = 2 * Math.sqrt(2 / Math.PI), GELU_K = 0.044715;

    @Override
    public void gegluForward(double[] g, double[] u, int n, double[] out) {
        for (int i = 0; i < n; i++) {
            double x = g[i], s = 1 / (1 + Math.exp(-GELU_C2 * (x + GELU_K * x * x * x)));
            out[i] = x * s * u[i];
        }
    }

    @Override
    public void gegluBackward(double[] dOut, double[] g, double[] u, int n, double[] dg, double[] du) {
        for (int i = 0; i < n; i++) {
            double x = g[i], s = 1 / (1 + Math.exp(-GELU_C2 * (x + GELU_K * x * x * x)));
            double dgelu = s + x * s * (1 - s) * GELU_C2 * (1 + 3 * GELU_K * x * x);
            dg[i] += dOut[i] * u[i] * dgelu;
            du[i] += dOut[i] * x * s;
        }
    }

    @Override
    public Losses.Sums distillLoss(double[] zs, double[] zt, int[] targets, Losses.Kind kind, double temperature,
                                   int M, int V, double klScale, double ceScale, double[] dzs) {
        Losses.Scratch sc = new Losses.Scratch(V);
        double[] rs = new double[V], rt = zt == null ? null : new double[V], out = new double[2];
        double kl = 0, ce = 0;
        long klRows = 0, ceRows = 0;
        for (int m = 0; m < M; m++) {
            System.arraycopy(zs, m * V, rs, 0, V);
            if (rt != null) {
                System.arraycopy(zt, m * V, rt, 0, V);
            }
            int target = targets == null ? -1 : targets[m];
            Losses.row(rs, rt, target, kind, temperature, klScale, ceScale, sc, out);
            for (int j = 0; j < V; j++) {
                dzs[m * V + j] = (dzs == zs ? 0 : dzs[m * V + j]) + sc.grad[j];
            }
            if (klScale != 0) {
                kl += out[0];
                klRows++;
            }
            if (ceScale != 0 && target >= 0) {
                ce += out[1];
                ceRows++;
            }
        }
        return new Losses.Sums(kl, klRows, ce, ceRows);
    }

    @Override
    public double squaredError(double[] a, double[] b, int n, double scale, double[] da) {
        double s = 0;
        for (int i = 0; i < n; i++) {
            double d = a[i] - b[i];
            s += d * d;
            if (da != null) {
                da[i] += scale * 2 * d;
            }
        }
        return s;
    }

    @Override
    public double sumSquares(double[] a) {
        double s = 0;
        for (double v : a) {
            s += v * v;
        }
        return s;
    }

    @Override
    public void scale(double[] a, double s) {
        for (int i = 0; i < a.length; i++) {
            a[i] *= s;
        }
    }

    @Override
    public void adamw(double[] p, double[] g, double[] m, double[] v, AdamW.Step step) {
        double decay = step.decay(), b1 = step.h().beta1(), b2 = step.h().beta2();
        double stepSize = step.stepSize(), bc2 = step.bias2Sqrt(), eps = step.h().eps();
        for (int i = 0; i < p.length; i++) {
            p[i] *= decay;
            m[i] += (g[i] - m[i]) * (1 - b1);
            v[i] = v[i] * b2 + (1 - b2) * g[i] * g[i];
            p[i] -= stepSize * m[i] / (Math.sqrt(v[i]) / bc2 + eps);
        }
    }

    @Override
    public void zeroAt(double[] a, int[] idx) {
        for (int i : idx) {
            a[i] = 0;
        }
    }
}
