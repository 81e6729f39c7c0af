package dev.shrink.kernels.cpu;

import dev.shrink.core.ops.Ops;

/**
 * The specification of {@link Ops} as plain loops: one thread, no blocking, no vectors. Sums are
 * accumulated in double, so this is also a more accurate answer than the float32 fast paths,
 * which the conformance tests compare against it. Slow by design; use it to check, not to run.
 */
public final class ReferenceOps implements Ops {

    @Override
    public String name() {
        return "cpu-reference";
    }

    /**
     * C = alpha · op(A) · op(B) + beta · C. op(A): [M, K], op(B): [K, N], C: [M, N].
     * With beta == 0 the old C is never read.
     */
    @Override
    public void gemm(boolean transA, boolean transB, int M, int N, int K, float alpha,
                     float[] A, int aOff, int lda, float[] B, int bOff, int ldb,
                     float beta, float[] C, int cOff, int ldc) {
        OpsChecks.gemm(transA, transB, M, N, K, A, aOff, lda, B, bOff, ldb, C, cOff, ldc);
        for (int i = 0; i < M; i++) {
            for (int j = 0; j < N; j++) {
                double sum = 0;
                for (int p = 0; p < K; p++) {
                    // op(A)[i, p]: A stored [M, K] → A[i, p]; stored [K, M] → A[p, i]
                    float a = transA ? A[aOff + p * lda + i] : A[aOff + i * lda + p];
                    // op(B)[p, j]: B stored [K, N] → B[p, j]; stored [N, K] → B[j, p]
                    float b = transB ? B[bOff + j * ldb + p] : B[bOff + p * ldb + j];
                    sum += (double) a * b;
                }
                int c = cOff + i * ldc + j;
                double old = beta == 0f ? 0 : (double) beta * C[c];
                C[c] = (float) (alpha * sum + old);
            }
        }
    }

    /** y[m, :] = x[m, :] / sqrt(mean(x[m, :]²) + eps) · weight; x, y: [M, C], weight: [C]. */
    @Override
    public void rmsNorm(float[] x, float[] weight, float eps, int M, int C, float[] y) {
        OpsChecks.rmsNorm(x, weight, M, C, y);
        for (int m = 0; m < M; m++) {
            int row = m * C;
            double sumSq = 0;
            for (int c = 0; c < C; c++) {
                sumSq += (double) x[row + c] * x[row + c];
            }
            double inv = 1.0 / Math.sqrt(sumSq / C + eps);
            for (int c = 0; c < C; c++) {
                y[row + c] = (float) (x[row + c] * inv * weight[c]);
            }
        }
    }

    /**
     * Rotate-half RoPE in place. x: [T, heads, D]; cos, sin: [maxPos, D/2]. For i &lt; D/2, with
     * x1 = x[i], x2 = x[i + D/2]: x[i] = x1·cos − x2·sin and x[i + D/2] = x2·cos + x1·sin.
     */
    @Override
    public void rope(float[] x, int T, int heads, int D, int[] positions, float[] cos, float[] sin) {
        OpsChecks.rope(x, T, heads, D, positions, cos, sin);
        int half = D / 2;
        for (int t = 0; t < T; t++) {
            int table = positions[t] * half;
            for (int h = 0; h < heads; h++) {
                int base = (t * heads + h) * D;
                for (int i = 0; i < half; i++) {
                    double c = cos[table + i], s = sin[table + i];
                    double x1 = x[base + i], x2 = x[base + half + i];
                    x[base + i] = (float) (x1 * c - x2 * s);
                    x[base + half + i] = (float) (x2 * c + x1 * s);
                }
            }
        }
    }

    /**
     * Causal attention. q, out: [Tq, H, D]; k, v: [Tk, Hkv, D]. Query head h reads key/value head
     * h / (H / Hkv); query i sits at position Tk − Tq + i and sees keys 0..that position.
     */
    @Override
    public void attention(float[] q, float[] k, float[] v, int Tq, int Tk, int H, int Hkv, int D, float[] out) {
        attention(q, k, v, Tq, Tk, H, Hkv, D, 0, out);
    }

    /** With a sliding window (≤ 0: none): query i sees keys max(0, position − window + 1)..position. */
    @Override
    public void attention(float[] q, float[] k, float[] v, int Tq, int Tk, int H, int Hkv, int D, int window,
                          float[] out) {
        attention(q, k, v, Tq, Tk, H, Hkv, D, window, 1.0 / Math.sqrt(D), 0f, out);
    }

    /** Scores s = (q·k)·scale (in float32), then c·tanh(s/c) with a soft-cap c &gt; 0, then the window, the causal mask and the softmax. */
    @Override
    public void attention(float[] q, float[] k, float[] v, int Tq, int Tk, int H, int Hkv, int D, int window,
                          double scale, float softcap, float[] out) {
        OpsChecks.attention(q, k, v, Tq, Tk, H, Hkv, D, out);
        int group = H / Hkv;
        float[] scores = new float[Tk];
        double[] acc = new double[D];
        for (int i = 0; i < Tq; i++) {
            int visible = Tk - Tq + i + 1; // keys 0..position
            int first = window > 0 ? Math.max(0, visible - window) : 0;
            for (int h = 0; h < H; h++) {
                int qRow = (i * H + h) * D;
                int kvHead = h / group;
                // scores[j] = q·k_j / sqrt(D), in float32 as the spec asks
                float max = Float.NEGATIVE_INFINITY;
                for (int j = first; j < visible; j++) {
                    int kRow = (j * Hkv + kvHead) * D;
                    double dot = 0;
                    for (int d = 0; d < D; d++) {
                        dot += (double) q[qRow + d] * k[kRow + d];
                    }
                    scores[j] = (float) (dot * scale);
                    if (softcap > 0) {
                        scores[j] = (float) (softcap * Math.tanh(scores[j] / (double) softcap));
                    }
                    max = Math.max(max, scores[j]);
                }
                // softmax weights e_j = exp(s_j − max), normalized at the end
                double sum = 0;
                java.util.Arrays.fill(acc, 0);
                for (int j = first; j < visible; j++) {
                    double e = Math.exp(scores[j] - max);
                    sum += e;
                    int vRow = (j * Hkv + kvHead) * D;
                    for (int d = 0; d < D; d++) {
                        acc[d] += e * v[vRow + d];
                    }
                }
                for (int d = 0; d < D; d++) {
                    out[qRow + d] = (float) (acc[d] / sum);
                }
            }
        }
    }

    /** out[i] = silu(gate[i]) · up[i], silu(g) = g / (1 + exp(−g)). */
    @Override
    public void swiglu(float[] gate, float[] up, int n, float[] out) {
        OpsChecks.swiglu(gate, up, n, out);
        for (int i = 0; i < n; i++) {
            double g = gate[i];
            out[i] = (float) (g / (1 + Math.exp(-g)) * up[i]);
        }
    }

    /** out[i] = gelu_tanh(gate[i]) · up[i], gelu_tanh(g) = g/2 · (1 + tanh(√(2/π)·(g + 0.044715·g³))), in double. */
    @Override
    public void geglu(float[] gate, float[] up, int n, float[] out) {
        OpsChecks.geglu(gate, up, n, out);
        double c = Math.sqrt(2 / Math.PI);
        for (int i = 0; i < n; i++) {
            double g = gate[i];
            out[i] = (float) (0.5 * g * (1 + Math.tanh(c * (g + 0.044715 * g * g * g))) * up[i]);
        }
    }

    /** nll[m] = log(Σ_v exp(logits[m, v] − max_m)) + max_m − logits[m, target[m]]; logits: [M, V]. */
    @Override
    public void crossEntropy(float[] logits, int M, int V, int[] targets, double[] nll) {
        OpsChecks.crossEntropy(logits, M, V, targets, nll);
        for (int m = 0; m < M; m++) {
            int row = m * V;
            float max = Float.NEGATIVE_INFINITY;
            for (int c = 0; c < V; c++) {
                max = Math.max(max, logits[row + c]);
            }
            double sum = 0;
            for (int c = 0; c < V; c++) {
                sum += Math.exp(logits[row + c] - max);
            }
            nll[m] = max + Math.log(sum) - logits[row + targets[m]];
        }
    }
}
