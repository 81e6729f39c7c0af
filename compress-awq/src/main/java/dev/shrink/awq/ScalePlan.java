package dev.shrink.awq;

import java.util.List;

/**
 * The outcome of AWQ's scale search for one mapping of one block (Lin et al. 2023, "AWQ:
 * Activation-aware Weight Quantization for LLM Compression and Acceleration", §3.2): the per-input-channel
 * scales s [K] that divide {@code previous}'s output and multiply the columns of {@code consumers}.
 * Found by {@link ScaleSearch}, reported, then applied by {@link AwqApply#scale}.
 *
 * @param layer     the block
 * @param previous  the op whose output is divided by s (a norm or a linear, spec name under the layer prefix)
 * @param consumers the linears whose input columns are multiplied by s
 * @param inspect   the module whose output the loss compares ("self_attn", "mlp" or a linear)
 * @param best      index of the chosen ratio in the grid
 * @param ratios    the grid α = 0, 1/n, ..., (n−1)/n
 * @param losses    mean squared output difference per ratio (original vs Q(W·s)/s)
 * @param scales    s [K] of the chosen ratio, normalised so that max(s)·min(s) = 1
 */
public record ScalePlan(int layer, String previous, List<String> consumers, String inspect, int best,
                        double[] ratios, double[] losses, float[] scales) {

    public ScalePlan {
        consumers = List.copyOf(consumers);
        if (ratios.length != losses.length || best < 0 || best >= ratios.length) {
            throw new IllegalArgumentException("best " + best + " of " + ratios.length + " ratios, " + losses.length + " losses");
        }
    }

    /** The chosen ratio α. */
    public double ratio() {
        return ratios[best];
    }

    /** The loss at the chosen ratio. */
    public double loss() {
        return losses[best];
    }

    /** The loss at α = 0 (without duo scaling: s = 1, i.e. plain round-to-nearest). */
    public double lossAtZero() {
        return losses[0];
    }
}
