package dev.shrink.awq;

import dev.shrink.core.ops.Ops;
import java.util.List;

/**
 * The math of AWQ's activation-aware scale search (Lin et al. 2023, "AWQ: Activation-aware Weight
 * Quantization for LLM Compression and Acceleration", §3.2, Eq. 4–5), as llm-awq's
 * {@code auto_scale_block} and AutoAWQ's {@code _search_best_scale} compute it. Pure functions; the
 * forwards that measure each candidate's loss are wired by {@link AwqStage}.
 *
 * <p>Dimension letters: K input channels of the consumers (the scaled dim), N output features,
 * M calibration tokens. For a ratio α of the grid α = 0, 1/20, ..., 19/20:
 * <pre>
 *   x_mean[k] = mean over tokens of |x[:, k]|                                     (the activation statistic)
 *   w_mean[k] = mean over the consumers' rows of |W[n, k]| / (max over k's group of |W[n, :]| + 1e−6)
 *   s = x_mean^α / (w_mean^(1−α) + 1e−4)    (AutoAWQ's duo scaling, its default)
 *   s = x_mean^α                             (llm-awq's original)
 *   s = max(s, 1e−4);  s = s / sqrt(max(s) · min(s))
 *   loss(α) = mean over outputs of (module(x; W) − module(x; Q(W·diag(s)) · diag(s)⁻¹))²
 * </pre>
 * and the α with the smallest loss wins (the first one on ties, as the references' strict {@code <}).
 */
public final class ScaleSearch {
    /** The number of ratios in the grid (both references: 20). */
    public static final int GRID = 20;

    private ScaleSearch() {
    }

    /** The grid α_i = i / n, i = 0..n−1. */
    public static double[] ratios(int n) {
        double[] r = new double[n];
        for (int i = 0; i < n; i++) {
            r[i] = (double) i / n;
        }
        return r;
    }

    /**
     * w_mean [K] over the concatenated rows of {@code weights} (each [rows_i, K]), groups of {@code gs}
     * columns (−1: one group of K): |w| / (max |w| of its (row, group) + 1e−6), averaged over all rows.
     */
    public static float[] wMean(List<float[]> weights, int K, int gs) {
        int len = AwqQuantizer.groupLength(K, gs);
        double[] sum = new double[K];
        long rows = 0;
        for (float[] W : weights) {
            if (W.length % K != 0) {
                throw new IllegalArgumentException("a weight of " + W.length + " values is not [rows, " + K + "]");
            }
            int N = W.length / K;
            rows += N;
            for (int n = 0; n < N; n++) {
                for (int c0 = 0; c0 < K; c0 += len) {
                    int base = n * K + c0;
                    float max = 0f;
                    for (int i = 0; i < len; i++) {
                        max = Math.max(max, Math.abs(W[base + i]));
                    }
                    float denom = max + 1e-6f;
                    for (int i = 0; i < len; i++) {
                        sum[c0 + i] += Math.abs(W[base + i]) / denom;
                    }
                }
            }
        }
        float[] mean = new float[K];
        for (int k = 0; k < K; k++) {
            mean[k] = (float) (sum[k] / rows);
        }
        return mean;
    }

    /**
     * The candidate scales s [K] for ratio α: duo scaling when {@code wMean} is given, else the
     * original {@code x_mean^α}; clamped at 1e−4, normalised by sqrt(max(s)·min(s)); non-finite
     * entries become 1 (AutoAWQ).
     */
    public static float[] scales(float[] xMean, float[] wMean, double ratio) {
        int K = xMean.length;
        if (wMean != null && wMean.length != K) {
            throw new IllegalArgumentException("x_mean has " + K + " channels, w_mean " + wMean.length);
        }
        float[] s = new float[K];
        float max = Float.NEGATIVE_INFINITY, min = Float.POSITIVE_INFINITY;
        for (int k = 0; k < K; k++) {
            float v = (float) Math.pow(xMean[k], ratio);
            if (wMean != null) {
                v = v / ((float) Math.pow(wMean[k], 1 - ratio) + 1e-4f);
            }
            v = Math.max(v, 1e-4f);
            s[k] = v;
            max = Math.max(max, v);
            min = Math.min(min, v);
        }
        float norm = (float) Math.sqrt(max * min);
        for (int k = 0; k < K; k++) {
            float v = s[k] / norm;
            s[k] = Float.isFinite(v) ? v : 1f;
        }
        return s;
    }

    /** Q(W·diag(s)) · diag(s)⁻¹: W [N, K] scaled per input column, quantized (AWQ's quantizer), scaled back. */
    public static float[] scaledQuantized(float[] W, int N, int K, float[] s, int gs) {
        return scaledQuantized(W, N, K, s, gs, AwqQuantizer.MAXQ);
    }

    /** {@link #scaledQuantized(float[], int, int, float[], int)} with AWQ's quantizer at codes 0..maxq. */
    public static float[] scaledQuantized(float[] W, int N, int K, float[] s, int gs, int maxq) {
        float[] ws = new float[N * K];
        for (int n = 0; n < N; n++) {
            for (int k = 0; k < K; k++) {
                ws[n * K + k] = W[n * K + k] * s[k];
            }
        }
        float[] q = AwqQuantizer.pseudoQuantize(ws, N, K, gs, maxq);
        for (int n = 0; n < N; n++) {
            for (int k = 0; k < K; k++) {
                q[n * K + k] = q[n * K + k] / s[k];
            }
        }
        return q;
    }

    /**
     * The index of the smallest loss, the first on ties; −1 when none is a number.
     */
    public static int best(double[] losses) {
        int best = -1;
        double bestLoss = Double.POSITIVE_INFINITY;
        for (int i = 0; i < losses.length; i++) {
            if (losses[i] < bestLoss) {
                bestLoss = losses[i];
                best = i;
            }
        }
        return best;
    }

    /**
     * The loss of a linear inspected on its own, from the Gram matrix of its inputs: for outputs
     * y = x·Wᵀ and ŷ = x·Ŵᵀ over M tokens, {@code mean((y − ŷ)²) = tr(ΔW·G·ΔWᵀ) / (M·N)} with
     * ΔW = W − Ŵ [N, K] and G = Σ_m x_m x_mᵀ [K, K] — the same number as the forward comparison,
     * at the cost of one [N, K]·[K, K] product per candidate instead of an [M, K]·[K, N] one (M ≫ K).
     * A bias cancels in the difference.
     *
     * @param gram G [K, K] (float32 of a double accumulation)
     */
    public static double linearLoss(float[] W, float[] Wq, int N, int K, float[] gram, long tokens, Ops ops) {
        float[] dW = new float[N * K];
        for (int i = 0; i < dW.length; i++) {
            dW[i] = W[i] - Wq[i];
        }
        float[] P = new float[N * K];
        ops.gemm(false, false, N, K, K, 1f, dW, 0, K, gram, 0, K, 0f, P, 0, K); // P = ΔW·G
        double sum = 0;
        for (int i = 0; i < dW.length; i++) {
            sum += (double) P[i] * dW[i];
        }
        return sum / ((double) tokens * N);
    }
}
