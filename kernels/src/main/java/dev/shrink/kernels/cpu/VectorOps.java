package dev.shrink.kernels.cpu;

import dev.shrink.core.ops.Ops;
import jdk.incubator.vector.DoubleVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * The fast CPU backend: every op vectorized with the Vector API (the preferred species of this
 * CPU) and spread over a fixed number of threads of its own. {@link ReferenceOps} is the spec it
 * is tested against; results agree to float32 rounding, not bit for bit.
 *
 * <p>Results are reproducible: for a given input they do not depend on the thread count, on how
 * work is split, on the CPU's vector width, or on JIT state. Element-wise ops do the same float
 * operations in their vector lanes and scalar tails; exp comes from {@link VectorMath}, not from
 * Vector API operations whose last bit may differ between the intrinsic and its fallback; row
 * sums follow {@link LaneSums}' fixed order; each GEMM output gets the same chain of FMAs
 * whatever the tile ({@link Sgemm}).
 */
public final class VectorOps implements Ops {
    private static final VectorSpecies<Float> S = FloatVector.SPECIES_PREFERRED;
    private static final int L = S.length();
    /** Elements per task below which an element-wise op is not worth splitting. */
    private static final int GRAIN = 1 << 14;
    /** Query rows per attention task (the M of its two GEMMs). */
    private static final int QUERY_BLOCK = 64;

    private final WorkerPool workers;
    private final Sgemm sgemm;
    /** Per-thread attention scores [QUERY_BLOCK, Tk], grown on demand; never shared between threads. */
    private final ThreadLocal<float[]> scores = ThreadLocal.withInitial(() -> new float[0]);

    /** A backend using {@code threads} threads (≥ 1); with 1, everything runs on the caller. */
    public VectorOps(int threads) {
        this.workers = new WorkerPool(threads);
        this.sgemm = new Sgemm(workers);
    }

    @Override
    public String name() {
        return "cpu";
    }

    /**
     * 4- and 8-bit linears multiplied packed ({@link PackedLinear}: bit for bit this backend's
     * {@link #linear} of the dequantized weights, a quarter of their memory at 4 bits); other bits: null.
     */
    @Override
    public dev.shrink.core.ops.LinearKernel packed(dev.shrink.core.quant.QuantizedLinear q) {
        if (q.bits() != 4 && q.bits() != 8) {
            return null;
        }
        PackedLinear p = PackedLinear.of(q);
        return new dev.shrink.core.ops.LinearKernel() {
            @Override
            public void apply(float[] x, int M, float[] y) {
                p.apply(x, M, y, workers);
            }

            @Override
            public long bytes() {
                return p.bytes();
            }

            @Override
            public float[] weights() {
                return p.weights();
            }

            @Override
            public float[] bias() {
                return p.biasValues();
            }
        };
    }

    /**
     * Float32 linears laid out once ({@link DenseLinear}: bit for bit this backend's {@link #linear}
     * followed by adding the bias, without packing W on every call; several times faster at M = 1).
     */
    @Override
    public dev.shrink.core.ops.LinearKernel dense(float[] W, int N, int K, float[] bias) {
        DenseLinear d = DenseLinear.of(W, N, K, bias);
        return new dev.shrink.core.ops.LinearKernel() {
            @Override
            public void apply(float[] x, int M, float[] y) {
                d.apply(x, M, y, workers);
            }

            @Override
            public long bytes() {
                return d.bytes();
            }

            @Override
            public float[] weights() {
                return d.weights();
            }

            @Override
            public float[] bias() {
                return d.biasValues();
            }

            @Override
            public boolean readsRows() {
                return true;
            }

            @Override
            public void row(int n, float[] dst, int off) {
                d.row(n, dst, off);
            }
        };
    }

    public int threads() {
        return workers.threads();
    }

    /** Bits of this CPU's preferred vector (256 with AVX2, 512 with AVX-512): speed depends on it, results do not. */
    public static int vectorBits() {
        return S.vectorBitSize();
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
                double sumSq = LaneSums.sumSquares(x, row, C);
                float inv = (float) (1.0 / Math.sqrt(sumSq / C + eps));
                int c = 0;
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
     * Causal attention, as two small GEMMs per (head, block of {@value #QUERY_BLOCK} queries), the
     * tasks run in parallel. q, out: [Tq, H, D]; k, v: [Tk, Hkv, D]; query head h reads kv head
     * h / (H / Hkv); query i sits at position Tk − Tq + i and sees keys 0..that position.
     *
     * <pre>
     * S[b, j]   = q_i · k_j / sqrt(D)     for the block's queries i and keys j up to its last position
     * P[b, :]   = softmax over j ≤ position of i (later keys get weight 0)
     * out[i, h] = P[b, :] · V
     * </pre>
     *
     * Batching the queries of a block turns the per-key dot products into the register-blocked
     * GEMM kernel, several times faster than one reduction per (query, key); the keys a block
     * computes past a query's position (fewer than the block size) are masked, and K and V are
     * read in place through their strides.
     */
    @Override
    public void attention(float[] q, float[] k, float[] v, int Tq, int Tk, int H, int Hkv, int D, float[] out) {
        attention(q, k, v, Tq, Tk, H, Hkv, D, 0, out);
    }

    /**
     * With a sliding window (≤ 0: none): each query block multiplies only the keys some row of it
     * sees, and each row's keys before its window are masked like those past its position.
     */
    @Override
    public void attention(float[] q, float[] k, float[] v, int Tq, int Tk, int H, int Hkv, int D, int window,
                          float[] out) {
        attention(q, k, v, Tq, Tk, H, Hkv, D, window, 1.0 / Math.sqrt(D), 0f, out);
    }

    /**
     * With the scores' scale (the first GEMM's alpha, in float32) and a soft-cap c &gt; 0: each visible
     * score s becomes c·tanh(s/c) ({@link StrictMath#tanh}: the same bits on every JIT state) before its softmax.
     */
    @Override
    public void attention(float[] q, float[] k, float[] v, int Tq, int Tk, int H, int Hkv, int D, int window,
                          double scale, float softcap, float[] out) {
        OpsChecks.attention(q, k, v, Tq, Tk, H, Hkv, D, out);
        int W = window > 0 && window < Tk ? window : 0;
        float alpha = (float) scale;
        if (Tq == 0 || D == 0) {
            return;
        }
        if (Tq == 1 && H % Hkv == 0) {
            // decoding: one task per KV head, its query heads as the rows of one product (K packed
            // once per KV head, not once per query head), V read in place; the spinning helpers
            // share them (a step's attention is microseconds)
            workers.forRangeSpinning(Hkv, 1, (g0, g1) -> {
                for (int g = g0; g < g1; g++) {
                    attendOne(q, k, v, Tk, H, Hkv, D, W, alpha, softcap, out, g);
                }
            });
            return;
        }
        int qBlocks = (Tq + QUERY_BLOCK - 1) / QUERY_BLOCK;
        int tasks = H * qBlocks;
        if ((long) Tq * Tk * H * D < GRAIN) {
            for (int t = 0; t < tasks; t++) {
                attentionBlock(q, k, v, Tq, Tk, H, Hkv, D, W, alpha, softcap, out, t % H, t / H);
            }
            return;
        }
        // Neighbouring tasks are different heads of one query block, so the costly late blocks
        // (more visible keys) spread over the threads.
        workers.forEach(tasks, t -> attentionBlock(q, k, v, Tq, Tk, H, Hkv, D, W, alpha, softcap, out, t % H, t / H));
    }

    /** Queries qBlock·QUERY_BLOCK.. of head h; see {@link #attention}. */
    private void attentionBlock(float[] q, float[] k, float[] v, int Tq, int Tk, int H, int Hkv, int D, int window,
                                float alpha, float softcap, float[] out, int h, int qBlock) {
        int kvHead = h / (H / Hkv);
        int i0 = qBlock * QUERY_BLOCK, rows = Math.min(Tq, i0 + QUERY_BLOCK) - i0;
        int k0 = window > 0 ? Math.max(0, Tk - Tq + i0 + 1 - window) : 0; // first key of the block's first query
        int keys = Tk - Tq + i0 + rows - k0; // keys k0.. visible to the block's last query
        float[] p = scores.get();
        if (p.length < rows * keys) {
            p = new float[rows * keys];
            scores.set(p);
        }
        // S[rows, keys] = Q[i0.., h, :] · K[.., kvHead, :]ᵀ / sqrt(D); rows of Q and K are H·D and Hkv·D apart
        sgemm.gemmOnCaller(false, true, rows, keys, D, alpha,
                q, (i0 * H + h) * D, H * D, k, (k0 * Hkv + kvHead) * D, Hkv * D, 0f, p, 0, keys);
        for (int r = 0; r < rows; r++) {
            int visible = Tk - Tq + i0 + r + 1 - k0;
            int first = window > 0 ? Math.max(0, visible + k0 - window) - k0 : 0;
            int row = r * keys;
            java.util.Arrays.fill(p, row, row + first, 0f); // before the window
            if (softcap > 0) {
                for (int j = row + first; j < row + visible; j++) {
                    p[j] = (float) StrictMath.tanh(p[j] / softcap) * softcap;
                }
            }
            softmaxInPlace(p, row + first, visible - first);
            java.util.Arrays.fill(p, row + visible, row + keys, 0f); // causal mask
        }
        // out[i0.., h, :] = P[rows, keys] · V[.., kvHead, :]
        sgemm.gemmOnCaller(false, false, rows, D, keys, 1f, p, 0, keys, v, (k0 * Hkv + kvHead) * D, Hkv * D,
                0f, out, (i0 * H + h) * D, H * D);
    }

    /**
     * One query (Tq = 1, at position Tk − 1) for the query heads of KV head {@code kvHead}: the
     * same float operations as {@link #attentionBlock} gives each of them (Sgemm's chains do not
     * depend on the rows computed beside them), so decoding a token gives the bits of the last row
     * of the whole sequence's attention.
     */
    private void attendOne(float[] q, float[] k, float[] v, int Tk, int H, int Hkv, int D, int window, float alpha,
                           float softcap, float[] out, int kvHead) {
        int g = H / Hkv, h0 = kvHead * g;
        int k0 = window > 0 ? Math.max(0, Tk - window) : 0;
        int keys = Tk - k0;
        float[] p = scores.get();
        if (p.length < g * keys) {
            p = new float[g * keys];
            scores.set(p);
        }
        int kv = (k0 * Hkv + kvHead) * D;
        // S[g, keys] = Q[h0.., :] · K[k0.., kvHead, :]ᵀ · alpha: the g heads' rows are D apart
        sgemm.gemmOnCaller(false, true, g, keys, D, alpha, q, h0 * D, D, k, kv, Hkv * D, 0f, p, 0, keys);
        for (int r = 0; r < g; r++) {
            int row = r * keys;
            if (softcap > 0) {
                for (int j = row; j < row + keys; j++) {
                    p[j] = (float) StrictMath.tanh(p[j] / softcap) * softcap;
                }
            }
            softmaxInPlace(p, row, keys);
        }
        weightedValues(p, g, keys, v, kv, Hkv * D, D, out, h0 * D);
    }

    /**
     * out[r, :] = P[r, :] · V for r &lt; rows, P: [rows, keys] (dense), V: {@code keys} rows of D
     * floats {@code ldv} apart from {@code v0}, out rows D apart from {@code o0}: as {@link Sgemm}
     * computes it (keys cut into its equal blocks of at most {@link Sgemm#KC}, each block a chain
     * of FMAs over its keys in order from +0, the block sums added in order) but reading V in place
     * instead of packing it: the lanes are V's columns, as in Sgemm's micro-kernel.
     */
    static void weightedValues(float[] p, int rows, int keys, float[] v, int v0, int ldv, int D, float[] out, int o0) {
        int kBlocks = (keys + Sgemm.KC - 1) / Sgemm.KC, kc = (keys + kBlocks - 1) / kBlocks; // Sgemm's K blocks
        int vecBound = S.loopBound(D);
        for (int r = 0; r < rows; r++) {
            int pr = r * keys, o = o0 + r * D;
            for (int j0 = 0; j0 < keys; j0 += kc) {
                int j1 = Math.min(keys, j0 + kc);
                boolean first = j0 == 0;
                int d = 0;
                for (; d + 4 * L <= vecBound; d += 4 * L) {
                    FloatVector a0 = FloatVector.zero(S), a1 = a0, a2 = a0, a3 = a0;
                    for (int j = j0, vj = v0 + j0 * ldv + d; j < j1; j++, vj += ldv) {
                        FloatVector pj = FloatVector.broadcast(S, p[pr + j]);
                        a0 = pj.fma(FloatVector.fromArray(S, v, vj), a0);
                        a1 = pj.fma(FloatVector.fromArray(S, v, vj + L), a1);
                        a2 = pj.fma(FloatVector.fromArray(S, v, vj + 2 * L), a2);
                        a3 = pj.fma(FloatVector.fromArray(S, v, vj + 3 * L), a3);
                    }
                    storeSum(a0, out, o + d, first);
                    storeSum(a1, out, o + d + L, first);
                    storeSum(a2, out, o + d + 2 * L, first);
                    storeSum(a3, out, o + d + 3 * L, first);
                }
                for (; d < vecBound; d += L) {
                    FloatVector a0 = FloatVector.zero(S);
                    for (int j = j0, vj = v0 + j0 * ldv + d; j < j1; j++, vj += ldv) {
                        a0 = FloatVector.broadcast(S, p[pr + j]).fma(FloatVector.fromArray(S, v, vj), a0);
                    }
                    storeSum(a0, out, o + d, first);
                }
                for (; d < D; d++) {
                    float a = 0f;
                    for (int j = j0, vj = v0 + j0 * ldv + d; j < j1; j++, vj += ldv) {
                        a = Math.fma(p[pr + j], v[vj], a);
                    }
                    out[o + d] = first ? a : out[o + d] + a;
                }
            }
        }
    }

    /** out[i ..) = a on the first K block, else out[i ..) + a (Sgemm's store with alpha 1, beta 0). */
    private static void storeSum(FloatVector a, float[] out, int i, boolean first) {
        (first ? a : FloatVector.fromArray(S, out, i).add(a)).intoArray(out, i);
    }

    /** x[o .. o+n) = softmax(x[o .. o+n)), in float32 with the max subtracted. */
    static void softmaxInPlace(float[] x, int o, int n) {
        int bound = S.loopBound(n);
        int j = 0;
        float max = Float.NEGATIVE_INFINITY;
        if (bound > 0) {
            FloatVector mv = FloatVector.broadcast(S, Float.NEGATIVE_INFINITY);
            for (; j < bound; j += L) {
                mv = mv.max(FloatVector.fromArray(S, x, o + j));
            }
            max = mv.reduceLanes(VectorOperators.MAX);
        }
        for (; j < n; j++) {
            max = Math.max(max, x[o + j]);
        }
        // Σ exp(x − max) in LaneSums' fixed order: the same bits for every vector width
        FloatVector a0 = FloatVector.zero(S), a1 = a0, a2 = a0, a3 = a0;
        int sumBound = LaneSums.bound(n);
        for (j = 0; j < sumBound; j += LaneSums.W) {
            a0 = a0.add(expInPlace(x, o + j, max));
            if (LaneSums.K > 1) {
                a1 = a1.add(expInPlace(x, o + j + L, max));
            }
            if (LaneSums.K > 2) {
                a2 = a2.add(expInPlace(x, o + j + 2 * L, max));
                a3 = a3.add(expInPlace(x, o + j + 3 * L, max));
            }
        }
        float[] part = LaneSums.partials(a0, a1, a2, a3);
        for (; j < n; j++) {
            x[o + j] = VectorMath.exp(x[o + j] - max);
            part[j & (LaneSums.W - 1)] += x[o + j];
        }
        double sum = LaneSums.sum(part);
        float inv = (float) (1.0 / sum);
        for (j = 0; j < bound; j += L) {
            FloatVector.fromArray(S, x, o + j).mul(inv).intoArray(x, o + j);
        }
        for (; j < n; j++) {
            x[o + j] *= inv;
        }
    }

    /** exp(x[i .. i+L) − shift). */
    private static FloatVector exp(float[] x, int i, float shift) {
        return VectorMath.exp(FloatVector.fromArray(S, x, i).sub(shift));
    }

    /** x[i .. i+L) = exp(x[i .. i+L) − shift), returned too. */
    private static FloatVector expInPlace(float[] x, int i, float shift) {
        FloatVector e = exp(x, i, shift);
        e.intoArray(x, i);
        return e;
    }

    /**
     * out[i] = silu(gate[i]) · up[i], silu(g) = g / (1 + exp(−g)); out may alias gate. Chunks start
     * at multiples of the vector width, so only the last n mod L elements take the scalar path,
     * whatever the thread count.
     */
    @Override
    public void swiglu(float[] gate, float[] up, int n, float[] out) {
        OpsChecks.swiglu(gate, up, n, out);
        int vectors = (n + L - 1) / L;
        workers.forRange(vectors, GRAIN / L, (v0, v1) -> {
            int i = v0 * L, end = Math.min(n, v1 * L);
            for (int bound = i + S.loopBound(end - i); i < bound; i += L) {
                FloatVector g = FloatVector.fromArray(S, gate, i);
                FloatVector silu = g.div(VectorMath.exp(g.neg()).add(1f));
                silu.mul(FloatVector.fromArray(S, up, i)).intoArray(out, i);
            }
            for (; i < end; i++) {
                float g = gate[i];
                out[i] = g / (1f + VectorMath.exp(-g)) * up[i];
            }
        });
    }

    /**
     * out[i] = gelu_tanh(gate[i]) · up[i], computed as g·sigmoid(2u) = g / (1 + exp(−2u)) with
     * u = √(2/π)·(g + 0.044715·g³) (equal to g/2·(1 + tanh(u))); out may alias gate. Chunks as
     * {@link #swiglu}'s, the same float operations in the lanes and the scalar tail.
     */
    @Override
    public void geglu(float[] gate, float[] up, int n, float[] out) {
        OpsChecks.geglu(gate, up, n, out);
        final float c2 = (float) (2 * Math.sqrt(2 / Math.PI)), k = 0.044715f;
        int vectors = (n + L - 1) / L;
        workers.forRange(vectors, GRAIN / L, (v0, v1) -> {
            int i = v0 * L, end = Math.min(n, v1 * L);
            for (int bound = i + S.loopBound(end - i); i < bound; i += L) {
                FloatVector g = FloatVector.fromArray(S, gate, i);
                FloatVector u2 = g.mul(g).mul(g).mul(k).add(g).mul(c2); // 2u
                FloatVector gelu = g.div(VectorMath.exp(u2.neg()).add(1f));
                gelu.mul(FloatVector.fromArray(S, up, i)).intoArray(out, i);
            }
            for (; i < end; i++) {
                float g = gate[i];
                float u2 = (g * g * g * k + g) * c2;
                out[i] = g / (1f + VectorMath.exp(-u2)) * up[i];
            }
        });
    }

    /**
     * nll[m] = logsumexp(logits[m, :]) − logits[m, target[m]], rows in parallel; logits: [M, V].
     * exp(x − max) in float32 vectors, summed in double in {@link LaneSums}' fixed order.
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
                // Σ exp(x − max): float exps, summed in double in LaneSums' fixed order
                DoubleVector l0 = DoubleVector.zero(LaneSums.SD), h0 = l0, l1 = l0, h1 = l0, l2 = l0, h2 = l0,
                        l3 = l0, h3 = l0;
                int sumBound = LaneSums.bound(V);
                for (c = 0; c < sumBound; c += LaneSums.W) {
                    FloatVector e = exp(logits, row + c, max);
                    l0 = l0.add(LaneSums.widen(e, 0));
                    h0 = h0.add(LaneSums.widen(e, 1));
                    if (LaneSums.K > 1) {
                        e = exp(logits, row + c + L, max);
                        l1 = l1.add(LaneSums.widen(e, 0));
                        h1 = h1.add(LaneSums.widen(e, 1));
                    }
                    if (LaneSums.K > 2) {
                        e = exp(logits, row + c + 2 * L, max);
                        l2 = l2.add(LaneSums.widen(e, 0));
                        h2 = h2.add(LaneSums.widen(e, 1));
                        e = exp(logits, row + c + 3 * L, max);
                        l3 = l3.add(LaneSums.widen(e, 0));
                        h3 = h3.add(LaneSums.widen(e, 1));
                    }
                }
                double[] part = LaneSums.partials(l0, h0, l1, h1, l2, h2, l3, h3);
                for (; c < V; c++) {
                    part[c & (LaneSums.W - 1)] += VectorMath.exp(logits[row + c] - max);
                }
                double sum = LaneSums.sum(part);
                nll[m] = max + Math.log(sum) - logits[row + targets[m]];
            }
        });
    }
}
