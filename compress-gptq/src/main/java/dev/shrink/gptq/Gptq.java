package dev.shrink.gptq;

import dev.shrink.core.ops.Ops;
import dev.shrink.core.sparse.SparsityPattern;
import java.util.Arrays;

/**
 * GPTQ (Frantar et al. 2022, "GPTQ: Accurate Post-Training Quantization for Generative
 * Pre-trained Transformers", Algorithm 1), as the reference gptq.py computes it:
 * quantize the columns of W one at a time in blocks of B = 128, spreading each column's error
 * over the not-yet-quantized columns through the upper Cholesky factor of H⁻¹:
 * <pre>
 *   err = (w_i − q_i) / Hinv[i,i];   W[:, j] −= err · Hinv[i, j]   (j in the block, j &gt; i)
 *   after the block:                 W[:, i2:] −= Err · Hinv[i1:i2, i2:]   (one GEMM)
 * </pre>
 * A pure function: no I/O, no logging. W: [N, K] row-major (N outputs, K inputs), H: [K, K].
 *
 * <p><b>Zeros are kept.</b> A weight that is exactly 0 on input (a pruned weight) is quantized to the
 * code of 0, which dequantizes to exactly 0 ({@code scale · (z − z)}); its error still feeds the
 * columns after it. A dense model has no exact zeros, so nothing changes for it.
 *
 * <p><b>SparseGPT</b> (Frantar &amp; Alistarh 2023, "SparseGPT: Massive Language Models Can Be Accurately
 * Pruned in One-Shot", Algorithm 1) is the same machinery with "prune" in place of (or before)
 * "quantize": at the start of each block the mask M of the block is chosen by the smallest
 * {@code w² / Hinv[i,i]²} (for N:M, within each group of m columns as the loop reaches it), masked
 * weights become 0 and their error is spread exactly like a rounding error:
 * <pre>
 *   q_i = M[:, i] ? 0 : quant(w_i)        err = (w_i − q_i) / Hinv[i,i]
 * </pre>
 * With {@code scheme == null} it prunes only (q_i = w_i where kept).
 */
public final class Gptq {
    private Gptq() {
    }

    /**
     * @param blockSize    columns per lazy-update block (128 in the paper)
     * @param dampPercent  λ = dampPercent · mean(diag(H)) added to the diagonal (0.01)
     * @param actOrder     quantize columns in order of decreasing diag(H)
     * @param staticGroups with act-order: group parameters fixed on the original W, before any update
     * @param prune        SparseGPT: the sparsity to reach (null: quantize only, keeping existing zeros)
     * @param scheme       the quantization (null: prune only; then {@code prune} is required)
     */
    public record Options(QuantScheme scheme, int blockSize, double dampPercent, boolean actOrder, boolean staticGroups,
                          SparsityPattern prune) {
        public Options {
            if (blockSize <= 0) {
                throw new IllegalArgumentException("block size must be positive");
            }
            if (!(dampPercent > 0) || dampPercent >= 1) {
                throw new IllegalArgumentException("damp must be in (0, 1), got " + dampPercent);
            }
            if (scheme == null && prune == null) {
                throw new IllegalArgumentException("nothing to do: neither a quantization scheme nor a sparsity");
            }
            if (scheme == null && actOrder) {
                throw new IllegalArgumentException("act-order orders quantization groups: it needs a quantization scheme");
            }
            if (prune instanceof SparsityPattern.NofM nm) {
                if (actOrder) {
                    throw new IllegalArgumentException("N:M pruning needs the natural column order: not with act-order");
                }
                if (blockSize % nm.m() != 0) {
                    throw new IllegalArgumentException("block size " + blockSize + " must be a multiple of M = " + nm.m());
                }
            }
        }

        /** Quantization only (GPTQ). */
        public Options(QuantScheme scheme, int blockSize, double dampPercent, boolean actOrder, boolean staticGroups) {
            this(scheme, blockSize, dampPercent, actOrder, staticGroups, null);
        }
    }

    /** Raised by steps of this much while Cholesky fails, up to {@link #MAX_DAMP}. */
    public static final double DAMP_STEP = 0.01;
    public static final double MAX_DAMP = 1.0;

    /** Thrown when even the largest damp leaves H not positive definite. */
    public static final class NotPositiveDefinite extends RuntimeException {
        public NotPositiveDefinite(String m) {
            super(m);
        }
    }

    /**
     * Quantizes and/or prunes W given the Hessian H = (2/n)·Σ x·xᵀ of its inputs. Neither array is modified.
     */
    public static GptqResult quantize(float[] Win, int N, int K, float[] Hin, Options o, Ops ops) {
        return quantize(Win, N, K, Hin, null, o, ops);
    }

    /**
     * GPTAQ's weight of the asymmetry term (the reference implementation's {@code alpha}: dXXT and H are
     * gathered with the same (2/n) normalisation, and the term is damped by this factor).
     */
    public static final float GPTAQ_ALPHA = 0.25f;

    /**
     * {@link #quantize(float[], int, int, float[], Options, Ops)} with GPTAQ's asymmetric calibration
     * (Li et al. 2025, "GPTAQ: Efficient Finetuning-Free Quantization for Asymmetric Calibration"):
     * the target is the float model's output W·X_fp while the solver sees the quantized model's inputs
     * X; with {@code dXXT} = (2/n)·Σ (x_fp − x)·xᵀ [K, K] and U the upper Cholesky factor of H⁻¹,
     * <pre>
     *   P = α · triu(dXXT · Uᵀ, 1) · U          (strictly upper triangular)
     *   after quantizing column i:  W[:, j] −= err_i · U[i, j] − w_i · P[i, j]   (j &gt; i)
     * </pre>
     * where w_i is column i as it was quantized. {@code dXXT == null} is plain GPTQ; a zero dXXT (X_fp = X)
     * gives exactly GPTQ's codes.
     */
    public static GptqResult quantize(float[] Win, int N, int K, float[] Hin, float[] dXXTin, Options o, Ops ops) {
        QuantScheme s = o.scheme();
        SparsityPattern prune = o.prune();
        if (prune instanceof SparsityPattern.NofM nm && K % nm.m() != 0) {
            throw new IllegalArgumentException("in-features " + K + " not divisible by M = " + nm.m());
        }
        int maxq = s == null ? 0 : s.maxq();
        int gs = s == null ? -1 : s.groupSize();
        float[] W = Win.clone();
        // M: the weights that end as exact zeros (permuted like W's columns); starts as the input's zeros.
        boolean[] M = new boolean[N * K];
        for (int i = 0; i < N * K; i++) {
            M[i] = Win[i] == 0f;
        }
        double[] H = new double[K * K];
        for (int i = 0; i < K * K; i++) {
            H[i] = Hin[i];
        }

        // Per-row parameters over the whole row (used when there are no groups), before anything else.
        Quantizer.Params rowParams = s != null && gs == -1 ? Quantizer.find(W, N, K, 0, K, s) : null;

        float[] dXXT = dXXTin == null ? null : dXXTin.clone();
        // Dead inputs: never activated, so their weights cannot matter; pin H and zero W.
        int dead = 0;
        for (int d = 0; d < K; d++) {
            if (H[d * K + d] == 0) {
                H[d * K + d] = 1;
                for (int n = 0; n < N; n++) {
                    W[n * K + d] = 0;
                    M[n * K + d] = true;
                }
                if (dXXT != null) {
                    for (int r = 0; r < K; r++) {
                        dXXT[r * K + d] = 0;
                    }
                }
                dead++;
            }
        }

        Quantizer.Params[] staticParams = null;
        if (o.staticGroups() && gs != -1) {
            staticParams = new Quantizer.Params[s.groups(K)];
            for (int g = 0; g < staticParams.length; g++) {
                staticParams[g] = Quantizer.find(W, N, K, g * gs, Math.min(gs, K - g * gs), s);
            }
        }

        // Act-order: permute columns by decreasing diag(H) (stable, as torch.argsort on the GPU is not: ties are rare).
        int[] perm = identity(K);
        if (o.actOrder()) {
            double[] diag = new double[K];
            for (int i = 0; i < K; i++) {
                diag[i] = H[i * K + i];
            }
            Integer[] idx = new Integer[K];
            for (int i = 0; i < K; i++) {
                idx[i] = i;
            }
            Arrays.sort(idx, (a, b) -> Double.compare(diag[b], diag[a]));
            for (int i = 0; i < K; i++) {
                perm[i] = idx[i];
            }
            W = permuteColumns(W, N, K, perm);
            H = permuteSymmetric(H, K, perm);
            if (dXXT != null) {
                dXXT = permuteSquare(dXXT, K, perm);
            }
            boolean[] Mp = new boolean[N * K];
            for (int n = 0; n < N; n++) {
                for (int p = 0; p < K; p++) {
                    Mp[n * K + p] = M[n * K + perm[p]];
                }
            }
            M = Mp;
        }

        // Hinv = upper Cholesky factor of (H + λI)⁻¹, raising λ while the factorisation fails.
        double meanDiag = 0;
        for (int i = 0; i < K; i++) {
            meanDiag += H[i * K + i];
        }
        meanDiag /= K;
        double damp = o.dampPercent();
        long tChol = System.nanoTime();
        double[] Hinv = null;
        while (Hinv == null) {
            double[] A = H.clone();
            // torch adds damp in float32: H[diag] += percdamp * mean(diag)
            float lambda = (float) (damp * (float) meanDiag);
            for (int i = 0; i < K; i++) {
                A[i * K + i] = (float) ((float) A[i * K + i] + lambda);
            }
            if (Cholesky.factorLower(A, K)) {
                double[] inv = Cholesky.inverseFromLower(A, K);
                if (Cholesky.factorUpper(inv, K)) {
                    Hinv = inv;
                    break;
                }
            }
            damp += DAMP_STEP;
            if (damp > MAX_DAMP + 1e-9) {
                throw new NotPositiveDefinite("the Hessian stays singular even with damp " + MAX_DAMP);
            }
        }
        double cholSeconds = (System.nanoTime() - tChol) / 1e9;
        long tCols = System.nanoTime();
        float[] Hinvf = new float[K * K];
        for (int i = 0; i < K * K; i++) {
            Hinvf[i] = (float) Hinv[i];
        }

        // GPTAQ: P = α · triu(dXXT · Uᵀ, 1) · U
        float[] P = null;
        if (dXXT != null) {
            float[] A = new float[K * K];
            ops.gemm(false, true, K, K, K, 1f, dXXT, 0, K, Hinvf, 0, K, 0f, A, 0, K);
            for (int i = 0; i < K; i++) {
                for (int j = 0; j <= i; j++) {
                    A[i * K + j] = 0f;
                }
            }
            P = new float[K * K];
            ops.gemm(false, false, K, K, K, GPTAQ_ALPHA, A, 0, K, Hinvf, 0, K, 0f, P, 0, K);
        }

        int G = s == null ? 0 : s.groups(K);
        float[] scales = new float[G * N];
        float[] zerosF = new float[G * N];
        int[] codesP = new int[N * K];  // codes in permuted column order
        float[] QP = new float[N * K];  // quantized values in permuted column order
        int[] groupOfPos = new int[K];  // group index of each permuted position
        double loss = 0;

        Quantizer.Params cur = rowParams;
        int B = o.blockSize();
        float[] Err = new float[N * B]; // [N, count]
        for (int i1 = 0; i1 < K; i1 += B) {
            int i2 = Math.min(i1 + B, K);
            int count = i2 - i1;
            if (prune instanceof SparsityPattern.Unstructured u) {
                // this block's share of floor(ratio · N · K) zeros, so that the whole matrix gets exactly that many
                long target = (long) Math.floor(u.ratio() * N * (double) i2) - (long) Math.floor(u.ratio() * N * (double) i1);
                maskBlock(W, Hinvf, M, N, K, i1, i2, target);
            }
            for (int i = i1; i < i2; i++) {
                if (prune instanceof SparsityPattern.NofM nm && i % nm.m() == 0) {
                    maskGroups(W, Hinvf, M, N, K, i, nm);
                }
                int g;
                if (s == null) {
                    g = 0;
                } else if (gs == -1) {
                    g = 0;
                } else if (staticParams != null) {
                    g = perm[i] / gs;
                    cur = staticParams[g];
                } else {
                    g = i / gs;
                    if (i % gs == 0) {
                        // group parameters from the current, already updated columns
                        cur = Quantizer.find(W, N, K, i, Math.min(gs, K - i), s);
                        System.arraycopy(cur.scale(), 0, scales, g * N, N);
                        System.arraycopy(cur.zero(), 0, zerosF, g * N, N);
                    }
                }
                groupOfPos[i] = g;
                float d = Hinvf[i * K + i];
                for (int n = 0; n < N; n++) {
                    float w = W[n * K + i];
                    boolean masked = M[n * K + i];
                    int c = 0;
                    float q;
                    if (s == null) {
                        q = masked ? 0f : w;
                    } else {
                        // a masked weight takes the code of 0: z, so q = scale · (z − z) = 0 exactly
                        c = Quantizer.code(masked ? 0f : w, cur.scale()[n], cur.zero()[n], maxq);
                        q = cur.scale()[n] * (c - cur.zero()[n]);
                    }
                    codesP[n * K + i] = c;
                    QP[n * K + i] = q;
                    float e = (w - q) / d;
                    loss += (double) (w - q) * (w - q) / ((double) d * d) / 2;
                    Err[n * count + (i - i1)] = e;
                    // W[n, i+1..i2) −= e · Hinv[i, i+1..i2)
                    int row = n * K;
                    int hrow = i * K;
                    if (P == null) {
                        for (int j = i + 1; j < i2; j++) {
                            W[row + j] -= e * Hinvf[hrow + j];
                        }
                    } else {
                        for (int j = i + 1; j < i2; j++) {
                            W[row + j] -= e * Hinvf[hrow + j] - w * P[hrow + j];
                        }
                    }
                }
            }
            if (i2 < K) {
                // W[:, i2:] −= Err[:, 0:count] · Hinv[i1:i2, i2:]
                ops.gemm(false, false, N, K - i2, count, -1f, Err, 0, count, Hinvf, i1 * K + i2, K,
                        1f, W, i2, K);
                if (P != null) {
                    // GPTAQ: W[:, i2:] += W1 · P[i1:i2, i2:], W1 the block's columns as they were quantized
                    float[] W1 = new float[N * count];
                    for (int n = 0; n < N; n++) {
                        System.arraycopy(W, n * K + i1, W1, n * count, count);
                    }
                    ops.gemm(false, false, N, K - i2, count, 1f, W1, 0, count, P, i1 * K + i2, K, 1f, W, i2, K);
                }
            }
        }
        if (s == null) {
            // prune only: no codes
        } else if (gs == -1) {
            System.arraycopy(rowParams.scale(), 0, scales, 0, N);
            System.arraycopy(rowParams.zero(), 0, zerosF, 0, N);
        } else if (staticParams != null) {
            for (int g = 0; g < G; g++) {
                System.arraycopy(staticParams[g].scale(), 0, scales, g * N, N);
                System.arraycopy(staticParams[g].zero(), 0, zerosF, g * N, N);
            }
        }

        // Undo the permutation: column perm[p] of the original is position p.
        float[] Q = new float[N * K];
        int[] codes = new int[N * K];
        int[] gIdx = new int[K];
        for (int p = 0; p < K; p++) {
            int c = perm[p];
            gIdx[c] = groupOfPos[p];
            for (int n = 0; n < N; n++) {
                Q[n * K + c] = QP[n * K + p];
                codes[n * K + c] = codesP[n * K + p];
            }
        }
        int[] zeros = new int[G * N];
        for (int i = 0; i < G * N; i++) {
            zeros[i] = Math.round(zerosF[i]);
        }
        int masked = 0;
        for (boolean m : M) {
            masked += m ? 1 : 0;
        }
        double colSeconds = (System.nanoTime() - tCols) / 1e9;
        if (s == null) {
            return new GptqResult(Q, null, null, null, null, loss, damp, damp > o.dampPercent() + 1e-12, dead,
                    masked, cholSeconds, colSeconds);
        }
        return new GptqResult(Q, codes, scales, zeros, gIdx, loss, damp, damp > o.dampPercent() + 1e-12, dead,
                masked, cholSeconds, colSeconds);
    }

    /**
     * Round-to-nearest with the same quantizer, no error feedback: the baseline GPTQ is compared with.
     */
    public static GptqResult roundToNearest(float[] W, int N, int K, QuantScheme s) {
        int gs = s.groupSize() == -1 ? K : s.groupSize();
        int G = s == null ? 0 : s.groups(K);
        float[] scales = new float[G * N];
        float[] zerosF = new float[G * N];
        float[] Q = new float[N * K];
        int[] codes = new int[N * K];
        int[] gIdx = new int[K];
        for (int g = 0; g < G; g++) {
            int c0 = g * gs, cols = Math.min(gs, K - c0);
            Quantizer.Params p = Quantizer.find(W, N, K, c0, cols, s);
            System.arraycopy(p.scale(), 0, scales, g * N, N);
            System.arraycopy(p.zero(), 0, zerosF, g * N, N);
            for (int k = c0; k < c0 + cols; k++) {
                gIdx[k] = g;
            }
            for (int n = 0; n < N; n++) {
                for (int k = c0; k < c0 + cols; k++) {
                    int c = Quantizer.code(W[n * K + k], p.scale()[n], p.zero()[n], s.maxq());
                    codes[n * K + k] = c;
                    Q[n * K + k] = p.scale()[n] * (c - p.zero()[n]);
                }
            }
        }
        int[] zeros = new int[G * N];
        for (int i = 0; i < G * N; i++) {
            zeros[i] = Math.round(zerosF[i]);
        }
        int masked = 0;
        for (float w : W) {
            masked += w == 0f ? 1 : 0; // round-to-nearest maps 0 to the code of 0: zeros stay exact
        }
        return new GptqResult(Q, codes, scales, zeros, gIdx, 0, 0, false, 0, masked, 0, 0);
    }

    /**
     * SparseGPT's mask for columns [i1, i2): adds to M the entries with the smallest
     * {@code w² / Hinv[j,j]²} until the block holds {@code target} masked entries (entries already
     * masked count; ties go to the lower index).
     */
    static void maskBlock(float[] W, float[] Hinv, boolean[] M, int N, int K, int i1, int i2, long target) {
        int count = i2 - i1;
        long already = 0;
        long[] keyed = new long[N * count];
        int free = 0;
        for (int n = 0; n < N; n++) {
            for (int j = i1; j < i2; j++) {
                if (M[n * K + j]) {
                    already++;
                } else {
                    keyed[free++] = key(score(W[n * K + j], Hinv[j * K + j]), n * count + (j - i1));
                }
            }
        }
        long extra = Math.min(target - already, free);
        if (extra <= 0) {
            return;
        }
        Arrays.sort(keyed, 0, free);
        for (int e = 0; e < extra; e++) {
            int idx = (int) keyed[e];
            M[(idx / count) * K + i1 + idx % count] = true;
        }
    }

    /**
     * SparseGPT's N:M mask for the group of columns [i, i + m) of every row: the m − n entries with
     * the smallest {@code w² / Hinv[j,j]²} (counting entries already masked), from W as updated so far.
     */
    static void maskGroups(float[] W, float[] Hinv, boolean[] M, int N, int K, int i, SparsityPattern.NofM nm) {
        int m = nm.m();
        long[] keyed = new long[m];
        for (int n = 0; n < N; n++) {
            int need = m - nm.n();
            int free = 0;
            for (int j = i; j < i + m; j++) {
                if (M[n * K + j]) {
                    need--;
                } else {
                    keyed[free++] = key(score(W[n * K + j], Hinv[j * K + j]), j - i);
                }
            }
            if (need <= 0) {
                continue;
            }
            Arrays.sort(keyed, 0, free);
            for (int e = 0; e < need; e++) {
                M[n * K + i + (int) keyed[e]] = true;
            }
        }
    }

    /** SparseGPT's saliency of a weight: w² / Hinv[j,j]² (≥ 0). */
    private static float score(float w, float d) {
        return w * w / (d * d);
    }

    /** A non-negative float and an index in one long that sorts by (score, index). */
    private static long key(float score, int index) {
        return ((long) Float.floatToIntBits(score) << 32) | (index & 0xffffffffL);
    }

    private static int[] identity(int K) {
        int[] p = new int[K];
        for (int i = 0; i < K; i++) {
            p[i] = i;
        }
        return p;
    }

    private static float[] permuteColumns(float[] W, int N, int K, int[] perm) {
        float[] out = new float[N * K];
        for (int n = 0; n < N; n++) {
            for (int p = 0; p < K; p++) {
                out[n * K + p] = W[n * K + perm[p]];
            }
        }
        return out;
    }

    private static float[] permuteSquare(float[] A, int K, int[] perm) {
        float[] out = new float[K * K];
        for (int i = 0; i < K; i++) {
            for (int j = 0; j < K; j++) {
                out[i * K + j] = A[perm[i] * K + perm[j]];
            }
        }
        return out;
    }

    private static double[] permuteSymmetric(double[] H, int K, int[] perm) {
        double[] out = new double[K * K];
        for (int i = 0; i < K; i++) {
            for (int j = 0; j < K; j++) {
                out[i * K + j] = H[perm[i] * K + perm[j]];
            }
        }
        return out;
    }
}
