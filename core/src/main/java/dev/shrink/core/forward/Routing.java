package dev.shrink.core.forward;

/**
 * A mixture of experts' routing of M tokens, computed on the host from the router logits as
 * transformers does (docs/FORWARD.md): p = softmax over the E experts (float32), the k largest p
 * (torch.topk; equal values: the lower expert first), divided by their sum where the family
 * renormalises (Mixtral; Qwen with norm_topk_prob). Per expert, the tokens routed to it in increasing
 * order with their weights: the forward runs each expert on its rows only and adds the experts' outputs
 * in increasing expert index, as transformers' index_add_ loop does.
 */
public final class Routing {
    private final int[][] rows;
    private final float[][] weights;

    private Routing(int[][] rows, float[][] weights) {
        this.rows = rows;
        this.weights = weights;
    }

    /** The routing of logits [M, E] to the top {@code k} of E experts, renormalised when {@code normalize}. */
    public static Routing of(float[] logits, int M, int E, int k, boolean normalize) {
        if (k < 1 || k > E || logits.length < (long) M * E) {
            throw new IllegalArgumentException("routing " + M + " tokens to " + k + " of " + E + " experts from "
                    + logits.length + " logits");
        }
        int[] count = new int[E];
        int[] chosen = new int[M * k];
        float[] chosenW = new float[M * k];
        float[] p = new float[E];
        boolean[] taken = new boolean[E];
        for (int m = 0; m < M; m++) {
            int off = m * E;
            float max = Float.NEGATIVE_INFINITY;
            for (int e = 0; e < E; e++) {
                max = Math.max(max, logits[off + e]);
            }
            double sum = 0;
            for (int e = 0; e < E; e++) {
                p[e] = (float) Math.exp(logits[off + e] - max);
                sum += p[e];
            }
            float inv = (float) sum;
            for (int e = 0; e < E; e++) {
                p[e] = p[e] / inv;
                taken[e] = false;
            }
            float total = 0;
            for (int j = 0; j < k; j++) {
                int best = -1;
                for (int e = 0; e < E; e++) {
                    if (!taken[e] && (best < 0 || p[e] > p[best])) {
                        best = e;
                    }
                }
                taken[best] = true;
                chosen[m * k + j] = best;
                chosenW[m * k + j] = p[best];
                total += p[best]; // summed in top-k order, as torch sums the sorted values
                count[best]++;
            }
            if (normalize) {
                for (int j = 0; j < k; j++) {
                    chosenW[m * k + j] /= total;
                }
            }
        }
        int[][] rows = new int[E][];
        float[][] weights = new float[E][];
        for (int e = 0; e < E; e++) {
            rows[e] = new int[count[e]];
            weights[e] = new float[count[e]];
            count[e] = 0;
        }
        for (int m = 0; m < M; m++) {
            for (int j = 0; j < k; j++) {
                int e = chosen[m * k + j];
                rows[e][count[e]] = m;
                weights[e][count[e]++] = chosenW[m * k + j];
            }
        }
        return new Routing(rows, weights);
    }

    /** The tokens routed to expert e, in increasing order (empty when none). */
    public int[] rows(int e) {
        return rows[e];
    }

    /** Their weights, in the same order. */
    public float[] weights(int e) {
        return weights[e];
    }
}
