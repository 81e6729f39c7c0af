package dev.shrink.prune;

import dev.shrink.core.sparse.SparsityPattern;

/**
 * Wanda, "Pruning by Weights and activations" (Sun, Liu, Bair, Kolter 2023, "A Simple and Effective
 * Pruning Approach for Large Language Models"), eq. 1: the importance of weight W_ij is
 * <pre>S_ij = |W_ij| · ‖X_j‖₂</pre>
 * with ‖X_j‖₂ the L2 norm of input feature j over all N·L calibration tokens. Weights are compared
 * per output row (unstructured; the paper's "per output" comparison group) or within each N:M group,
 * and the lowest-scoring are set to zero; no weight update.
 *
 * <p>Dimensions: W, S: [N = out, K = in]; sumSq: [K] = Σ over tokens of X_j², accumulated in double.
 * The block-by-block loop that gathers sumSq from calibration data lives in {@link PruneStage}.
 */
public final class Wanda {
    private Wanda() {
    }

    /** S = |W| · sqrt(sumSq) broadcast over rows: W: [N, K], sumSq: [K] → S: [N, K]. */
    public static float[] scores(float[] W, int N, int K, double[] sumSq) {
        if ((long) N * K != W.length || sumSq.length != K) {
            throw new IllegalArgumentException("W of " + W.length + " and sumSq of " + sumSq.length + " for [" + N + ", " + K + "]");
        }
        double[] norm = new double[K]; // ‖X_j‖₂
        for (int j = 0; j < K; j++) {
            if (!(sumSq[j] >= 0) || Double.isInfinite(sumSq[j])) {
                throw new IllegalArgumentException("input channel " + j + " has sum of squares " + sumSq[j]);
            }
            norm[j] = Math.sqrt(sumSq[j]);
        }
        float[] S = new float[W.length];
        for (int n = 0; n < N; n++) {
            for (int j = 0; j < K; j++) {
                S[n * K + j] = (float) (Math.abs(W[n * K + j]) * norm[j]);
            }
        }
        return S;
    }

    /**
     * The Wanda mask of W: [N, K]: per output row (scope ROW, the paper's choice) or per matrix
     * (LAYER) for unstructured sparsity, per group for N:M.
     */
    public static boolean[] mask(float[] W, int N, int K, double[] sumSq, SparsityPattern pattern, Scope scope) {
        return Masks.mask(scores(W, N, K, sumSq), N, K, pattern, scope);
    }
}
