package dev.shrink.awq;

import dev.shrink.core.ops.Ops;

/**
 * AWQ's weight-clipping search (Lin et al. 2023, "AWQ"; llm-awq's {@code auto_clip_layer}), for one
 * linear W [N, K] with its (already scaled) weights and inputs X [T, K] of T sampled tokens:
 * <pre>
 *   for each (row n, group g):  m0 = max |W[n, g]|
 *   for i = 0 .. 9:             m_i = m0 · (1 − i/20)                     (factors 1.00, 0.95, ..., 0.55)
 *                               Ŵ_i = Q(clamp(W[n, g], −m_i, m_i))        (AWQ's quantizer)
 *                               err_i = mean over t of (X[t, g]·Ŵ_iᵀ − X[t, g]·W[n, g]ᵀ)²
 *   keep the m_i with the smallest err_i (the first on ties)
 * </pre>
 * Each group's partial output is compared on its own, as the reference does. One GEMM per group
 * evaluates all ten factors (their quantized weights stacked: [10·N, gs]). Pure apart from the
 * {@link Ops} it computes with.
 */
public final class ClipSearch {
    /** The grid: factors 1 − i/GRID. */
    public static final int GRID = 20;
    /** The factors go down to 1 − MAX_SHRINK (exclusive): 10 steps. */
    public static final double MAX_SHRINK = 0.5;
    /** Tokens sampled for the search (llm-awq's n_sample_token). */
    public static final int SAMPLE_TOKENS = 512;

    private ClipSearch() {
    }

    /** The number of factors tried: int(MAX_SHRINK · GRID) = 10. */
    public static int steps() {
        return (int) (MAX_SHRINK * GRID);
    }

    /**
     * The stride with which the reference samples tokens: every (total / 512)-th token from the first
     * (at least every token). {@code input_feat[:, 0::n_token // n_sample_token]}.
     */
    public static int sampleStride(long totalTokens) {
        return (int) Math.max(1, totalTokens / SAMPLE_TOKENS);
    }

    /**
     * Searches the clipping of W [N, K] given inputs X [T, K].
     *
     * @param gs group size (−1: one group of K)
     */
    public static ClipPlan search(String name, float[] W, int N, int K, float[] X, int T, int gs, Ops ops) {
        int len = AwqQuantizer.groupLength(K, gs);
        if (K % len != 0 || W.length != N * K || X.length != T * K) {
            throw new IllegalArgumentException(name + ": W has " + W.length + " values, X " + X.length + ", for N = " + N
                    + ", K = " + K + ", T = " + T + ", groups of " + len);
        }
        int G = K / len;
        int S = steps();
        float[] maxVal = new float[N * G];
        int[] steps = new int[N * G];
        double before = 0, after = 0;
        float[] Xg = new float[T * len];        // [T, gs]
        float[] Wg = new float[N * len];        // [N, gs]
        float[] Qs = new float[S * N * len];    // [S·N, gs]: the candidates of every step
        float[] org = new float[T * N];         // [T, N]
        float[] cur = new float[T * S * N];     // [T, S·N]
        float[] orgMax = new float[N];
        for (int g = 0; g < G; g++) {
            int c0 = g * len;
            for (int t = 0; t < T; t++) {
                System.arraycopy(X, t * K + c0, Xg, t * len, len);
            }
            for (int n = 0; n < N; n++) {
                System.arraycopy(W, n * K + c0, Wg, n * len, len);
                float m = 0f;
                for (int i = 0; i < len; i++) {
                    m = Math.max(m, Math.abs(Wg[n * len + i]));
                }
                orgMax[n] = m;
            }
            for (int i = 0; i < S; i++) {
                float factor = (float) (1 - (double) i / GRID);
                for (int n = 0; n < N; n++) {
                    float mv = orgMax[n] * factor;
                    int dst = (i * N + n) * len;
                    for (int j = 0; j < len; j++) {
                        Qs[dst + j] = Math.max(-mv, Math.min(mv, Wg[n * len + j]));
                    }
                    AwqQuantizer.pseudoQuantizeGroup(Qs, dst, len, Qs, dst);
                }
            }
            ops.gemm(false, true, T, N, len, 1f, Xg, 0, len, Wg, 0, len, 0f, org, 0, N);          // X_g·W_gᵀ
            ops.gemm(false, true, T, S * N, len, 1f, Xg, 0, len, Qs, 0, len, 0f, cur, 0, S * N);  // X_g·Ŵ_iᵀ, all i
            for (int n = 0; n < N; n++) {
                double bestErr = Double.POSITIVE_INFINITY;
                int best = 0;
                double err0 = 0;
                for (int i = 0; i < S; i++) {
                    double e = 0;
                    for (int t = 0; t < T; t++) {
                        double d = (double) cur[t * S * N + i * N + n] - org[t * N + n];
                        e += d * d;
                    }
                    e /= T;
                    if (i == 0) {
                        err0 = e;
                    }
                    if (e < bestErr) {
                        bestErr = e;
                        best = i;
                    }
                }
                maxVal[n * G + g] = orgMax[n] * (float) (1 - (double) best / GRID);
                steps[n * G + g] = best;
                before += err0;
                after += Double.isFinite(bestErr) ? bestErr : err0;
            }
        }
        return new ClipPlan(name, N, K, gs, maxVal, steps, before / (N * G), after / (N * G));
    }
}
