package dev.shrink.kernels.cpu;

import dev.shrink.core.ops.Ops;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * The fast CPU backend: every op vectorized with the Vector API (the preferred species of this
 * CPU) and spread over a fixed number of threads of its own. {@link ReferenceOps} is the spec it
 * is tested against; results agree to float32 rounding, not bit for bit. For a given input, the
 * results do not depend on the thread count.
 */
public final class VectorOps implements Ops {
    private static final VectorSpecies<Float> S = FloatVector.SPECIES_PREFERRED;
    private static final int L = S.length();
    /** Elements per task below which an element-wise op is not worth splitting. */
    private static final int GRAIN = 1 << 14;
    /** Query rows per attention task. */
    private static final int QUERY_BLOCK = 16;

    private final WorkerPool workers;
    private final Sgemm sgemm;

    /** A backend using {@code threads} threads (≥ 1); with 1, everything runs on the caller. */
    public VectorOps(int threads) {
        this.workers = new WorkerPool(threads);
        this.sgemm = new Sgemm(workers);
    }

    @Override
    public String name() {
        return "cpu";
    }

    public int threads() {
        return workers.threads();
    }

    /** C = alpha · op(A) · op(B) + beta · C; op(A): [M, K], op(B): [K, N], C: [M, N]. See {@link Sgemm}. */
    @Override
    public void gemm(boolean transA, boolean transB, int M, int N, int K, float alpha,
                     float[] A, int aOff, int lda, float[] B, int bOff, int ldb,
                     float beta, float[] C, int cOff, int ldc) {
        OpsChecks.gemm(transA, transB, M, N, K, A, aOff, lda, B, bOff, ldb, C, cOff, ldc);
        sgemm.gemm(transA, transB, M, N, K, alpha, A, aOff, lda, B, bOff, ldb, beta, C, cOff, ldc);
    }

    /** y[m, :] = x[m, :] / sqrt(mean(x[m, :]²) + eps) · weight; x, y: [M, C], weight: [C]; y may be x. */
    @Override
    public void rmsNorm(float[] x, float[] weight, float eps, int M, int C, float[] y) {
        OpsChecks.rmsNorm(x, weight, M, C, y);
        int bound = S.loopBound(C);
        workers.forRange(M, Math.max(1, GRAIN / Math.max(1, C)), (m0, m1) -> {
            for (int m = m0; m < m1; m++) {
                int row = m * C;
                FloatVector acc = FloatVector.zero(S);
                int c = 0;
                for (; c < bound; c += L) {
                    FloatVector xv = FloatVector.fromArray(S, x, row + c);
                    acc = xv.fma(xv, acc);
                }
                double sumSq = acc.reduceLanes(VectorOperators.ADD);
                for (; c < C; c++) {
                    sumSq += x[row + c] * x[row + c];
                }
                float inv = (float) (1.0 / Math.sqrt(sumSq / C + eps));
                c = 0;
                for (; c < bound; c += L) {
                    FloatVector.fromArray(S, x, row + c).mul(inv)
                            .mul(FloatVector.fromArray(S, weight, c))
                            .intoArray(y, row + c);
                }
                for (; c < C; c++) {
                    y[row + c] = x[row + c] * inv * weight[c];
                }
            }
        });
    }

    /**
     * Rotate-half RoPE in place; x: [T, heads, D], cos, sin: [maxPos, D/2]. With x1 = x[:D/2],
     * x2 = x[D/2:] of one head: x1' = x1·cos − x2·sin, x2' = x2·cos + x1·sin.
     */
    @Override
    public void rope(float[] x, int T, int heads, int D, int[] positions, float[] cos, float[] sin) {
        OpsChecks.rope(x, T, heads, D, positions, cos, sin);
        int half = D / 2;
        int bound = S.loopBound(half);
        workers.forRange(T, Math.max(1, GRAIN / Math.max(1, heads * D)), (t0, t1) -> {
            for (int t = t0; t < t1; t++) {
                int table = positions[t] * half; // row of cos/sin: [D/2]
                for (int h = 0; h < heads; h++) {
                    int lo = (t * heads + h) * D, hi = lo + half; // the two halves of this head
                    int i = 0;
                    for (; i < bound; i += L) {
                        FloatVector c = FloatVector.fromArray(S, cos, table + i);
                        FloatVector s = FloatVector.fromArray(S, sin, table + i);
                        FloatVector x1 = FloatVector.fromArray(S, x, lo + i);
                        FloatVector x2 = FloatVector.fromArray(S, x, hi + i);
                        x1.mul(c).sub(x2.mul(s)).intoArray(x, lo + i);
                        x2.mul(c).add(x1.mul(s)).intoArray(x, hi + i);
                    }
                    for (; i < half; i++) {
                        float c = cos[table + i], s = sin[table + i];
                        float x1 = x[lo + i], x2 = x[hi + i];
                        x[lo + i] = x1 * c - x2 * s;
                        x[hi + i] = x2 * c + x1 * s;
                    }
                }
            }
        });
    }

    /**
     * Causal attention, one task per (head, block of {@value #QUERY_BLOCK} queries).
     * q, out: [Tq, H, D]; k, v: [Tk, Hkv, D]; query head h reads kv head h / (H / Hkv). Query i sits at
     * position Tk − Tq + i and sees keys 0..that position (later keys are skipped, not masked).
     */
    @Override
    public void attention(float[] q, float[] k, float[] v, int Tq, int Tk, int H, int Hkv, int D, float[] out) {
        OpsChecks.attention(q, k, v, Tq, Tk, H, Hkv, D, out);
        int group = H / Hkv;
        float scale = (float) (1.0 / Math.sqrt(D));
        int qBlocks = (Tq + QUERY_BLOCK - 1) / QUERY_BLOCK;
        boolean parallel = (long) Tq * Tk * H * D >= GRAIN;
        int tasks = H * qBlocks;
        if (!parallel) {
            for (int t = 0; t < tasks; t++) {
                attentionBlock(q, k, v, Tq, Tk, H, Hkv, D, out, group, scale, t / qBlocks, t % qBlocks);
            }
            return;
        }
        // Interleave heads across neighbouring tasks so costly late query blocks spread over threads.
        workers.forEach(tasks, t -> attentionBlock(q, k, v, Tq, Tk, H, Hkv, D, out, group, scale,
                t % H, t / H));
    }

    private static void attentionBlock(float[] q, float[] k, float[] v, int Tq, int Tk, int H, int Hkv, int D,
                                       float[] out, int group, float scale, int h, int qBlock) {
        int kvHead = h / group;
        int kvStride = Hkv * D; // between consecutive tokens of one kv head
        int i0 = qBlock * QUERY_BLOCK, i1 = Math.min(Tq, i0 + QUERY_BLOCK);
        float[] scores = new float[Tk]; // [visible keys] of one query
        for (int i = i0; i < i1; i++) {
            int visible = Tk - Tq + i + 1;
            int qRow = (i * H + h) * D;
            // scores[j] = (q · k_j) / sqrt(D)
            float max = Float.NEGATIVE_INFINITY;
            for (int j = 0, kRow = kvHead * D; j < visible; j++, kRow += kvStride) {
                float s = dot(q, qRow, k, kRow, D) * scale;
                scores[j] = s;
                max = Math.max(max, s);
            }
            float sum = expShifted(scores, visible, max);
            // out = Σ_j scores[j] · v_j / sum, accumulated in place in the output row
            java.util.Arrays.fill(out, qRow, qRow + D, 0f);
            int bound = S.loopBound(D);
            for (int j = 0, vRow = kvHead * D; j < visible; j++, vRow += kvStride) {
                FloatVector p = FloatVector.broadcast(S, scores[j]);
                float ps = scores[j];
                int d = 0;
                for (; d < bound; d += L) {
                    FloatVector.fromArray(S, v, vRow + d)
                            .fma(p, FloatVector.fromArray(S, out, qRow + d))
                            .intoArray(out, qRow + d);
                }
                for (; d < D; d++) {
                    out[qRow + d] += ps * v[vRow + d];
                }
            }
            float inv = 1f / sum;
            int d = 0;
            for (; d < bound; d += L) {
                FloatVector.fromArray(S, out, qRow + d).mul(inv).intoArray(out, qRow + d);
            }
            for (; d < D; d++) {
                out[qRow + d] *= inv;
            }
        }
    }

    /** Σ_d a[ao + d] · b[bo + d] for d &lt; n, vectorized with a scalar tail. */
    private static float dot(float[] a, int ao, float[] b, int bo, int n) {
        int bound = S.loopBound(n);
        int d = 0;
        float s = 0f;
        if (bound > 0) {
            FloatVector acc = FloatVector.zero(S);
            for (; d < bound; d += L) {
                acc = FloatVector.fromArray(S, a, ao + d).fma(FloatVector.fromArray(S, b, bo + d), acc);
            }
            s = acc.reduceLanes(VectorOperators.ADD);
        }
        for (; d < n; d++) {
            s += a[ao + d] * b[bo + d];
        }
        return s;
    }

    /** x[j] = exp(x[j] − max) for j &lt; n; returns Σ x[j]. */
    private static float expShifted(float[] x, int n, float max) {
        int bound = S.loopBound(n);
        int j = 0;
        FloatVector acc = FloatVector.zero(S);
        for (; j < bound; j += L) {
            FloatVector e = FloatVector.fromArray(S, x, j).sub(max).lanewise(VectorOperators.EXP);
            e.intoArray(x, j);
            acc = acc.add(e);
        }
        float sum = acc.reduceLanes(VectorOperators.ADD);
        for (; j < n; j++) {
            x[j] = (float) Math.exp(x[j] - max);
            sum += x[j];
        }
        return sum;
    }

    /** out[i] = silu(gate[i]) · up[i], silu(g) = g / (1 + exp(−g)); out may alias gate. */
    @Override
    public void swiglu(float[] gate, float[] up, int n, float[] out) {
        OpsChecks.swiglu(gate, up, n, out);
        workers.forRange(n, GRAIN, (i0, i1) -> {
            int i = i0;
            for (int bound = i0 + S.loopBound(i1 - i0); i < bound; i += L) {
                FloatVector g = FloatVector.fromArray(S, gate, i);
                FloatVector silu = g.div(g.neg().lanewise(VectorOperators.EXP).add(1f));
                silu.mul(FloatVector.fromArray(S, up, i)).intoArray(out, i);
            }
            for (; i < i1; i++) {
                float g = gate[i];
                out[i] = g / (1f + (float) Math.exp(-g)) * up[i];
            }
        });
    }

    /**
     * nll[m] = logsumexp(logits[m, :]) − logits[m, target[m]], rows in parallel; logits: [M, V].
     * exp(x − max) in float32 vectors, each vector's sum added into a per-row double.
     */
    @Override
    public void crossEntropy(float[] logits, int M, int V, int[] targets, double[] nll) {
        OpsChecks.crossEntropy(logits, M, V, targets, nll);
        int bound = S.loopBound(V);
        workers.forRange(M, Math.max(1, GRAIN / V), (m0, m1) -> {
            for (int m = m0; m < m1; m++) {
                int row = m * V;
                float max = Float.NEGATIVE_INFINITY;
                int c = 0;
                if (bound > 0) {
                    FloatVector mv = FloatVector.broadcast(S, Float.NEGATIVE_INFINITY);
                    for (; c < bound; c += L) {
                        mv = mv.max(FloatVector.fromArray(S, logits, row + c));
                    }
                    max = mv.reduceLanes(VectorOperators.MAX);
                }
                for (; c < V; c++) {
                    max = Math.max(max, logits[row + c]);
                }
                double sum = 0;
                c = 0;
                for (; c < bound; c += L) {
                    sum += FloatVector.fromArray(S, logits, row + c).sub(max)
                            .lanewise(VectorOperators.EXP).reduceLanes(VectorOperators.ADD);
                }
                for (; c < V; c++) {
                    sum += Math.exp(logits[row + c] - max);
                }
                nll[m] = max + Math.log(sum) - logits[row + targets[m]];
            }
        });
    }
}
