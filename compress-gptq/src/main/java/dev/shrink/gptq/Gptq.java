package dev.shrink.gptq;

import dev.shrink.core.ops.Ops;
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
 */
public final class Gptq {
    private Gptq() {
    }

    /**
     * @param blockSize    columns per lazy-update block (128 in the paper)
     * @param dampPercent  λ = dampPercent · mean(diag(H)) added to the diagonal (0.01)
     * @param actOrder     quantize columns in order of decreasing diag(H)
     * @param staticGroups with act-order: group parameters fixed on the original W, before any update
     */
    public record Options(QuantScheme scheme, int blockSize, double dampPercent, boolean actOrder, boolean staticGroups) {
        public Options {
            if (blockSize <= 0) {
                throw new IllegalArgumentException("block size must be positive");
            }
            if (!(dampPercent > 0) || dampPercent >= 1) {
                throw new IllegalArgumentException("damp must be in (0, 1), got " + dampPercent);
            }
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
     * Quantizes W given the Hessian H = (2/n)·Σ x·xᵀ of its inputs. Neither array is modified.
     */
    public static GptqResult quantize(float[] Win, int N, int K, float[] Hin, Options o, Ops ops) {
        QuantScheme s = o.scheme();
        int maxq = s.maxq();
        int gs = s.groupSize();
        float[] W = Win.clone();
        double[] H = new double[K * K];
        for (int i = 0; i < K * K; i++) {
            H[i] = Hin[i];
        }

        // Per-row parameters over the whole row (used when there are no groups), before anything else.
        Quantizer.Params rowParams = gs == -1 ? Quantizer.find(W, N, K, 0, K, s) : null;

        // Dead inputs: never activated, so their weights cannot matter; pin H and zero W.
        int dead = 0;
        for (int d = 0; d < K; d++) {
            if (H[d * K + d] == 0) {
                H[d * K + d] = 1;
                for (int n = 0; n < N; n++) {
                    W[n * K + d] = 0;
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

        int G = s.groups(K);
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
            for (int i = i1; i < i2; i++) {
                int g;
                if (gs == -1) {
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
                    int c = Quantizer.code(w, cur.scale()[n], cur.zero()[n], maxq);
                    float q = cur.scale()[n] * (c - cur.zero()[n]);
                    codesP[n * K + i] = c;
                    QP[n * K + i] = q;
                    float e = (w - q) / d;
                    loss += (double) (w - q) * (w - q) / ((double) d * d) / 2;
                    Err[n * count + (i - i1)] = e;
                    // W[n, i+1..i2) −= e · Hinv[i, i+1..i2)
                    int row = n * K;
                    int hrow = i * K;
                    for (int j = i + 1; j < i2; j++) {
                        W[row + j] -= e * Hinvf[hrow + j];
                    }
                }
            }
            if (i2 < K) {
                // W[:, i2:] −= Err[:, 0:count] · Hinv[i1:i2, i2:]
                ops.gemm(false, false, N, K - i2, count, -1f, Err, 0, count, Hinvf, i1 * K + i2, K,
                        1f, W, i2, K);
            }
        }
        if (gs == -1) {
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
        double colSeconds = (System.nanoTime() - tCols) / 1e9;
        return new GptqResult(Q, codes, scales, zeros, gIdx, loss, damp, damp > o.dampPercent() + 1e-12, dead,
                cholSeconds, colSeconds);
    }

    /**
     * Round-to-nearest with the same quantizer, no error feedback: the baseline GPTQ is compared with.
     */
    public static GptqResult roundToNearest(float[] W, int N, int K, QuantScheme s) {
        int gs = s.groupSize() == -1 ? K : s.groupSize();
        int G = s.groups(K);
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
        return new GptqResult(Q, codes, scales, zeros, gIdx, 0, 0, false, 0, 0, 0);
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
