package dev.shrink.awq;

/**
 * The outcome of AWQ's clip search for one linear (Lin et al. 2023, "AWQ", §3.2, the weight-clipping
 * step of the reference code): per (output row, group), the largest |w| kept. Found by
 * {@link ClipSearch}, reported, then applied by {@link AwqApply#clip}. N outputs, G groups.
 *
 * @param linear      the linear's full tensor prefix
 * @param N           output features
 * @param K           input features
 * @param groupSize   input columns per group (−1: one group of K)
 * @param maxVal      [N, G]: W[n, k] is clamped to [−maxVal, maxVal] in k's group
 * @param steps       [N, G]: the chosen shrink step i (the factor is 1 − i/20; 0 means not clipped)
 * @param errorBefore mean over (row, group) of the group's output error with no clipping
 * @param errorAfter  the same with the chosen clipping
 */
public record ClipPlan(String linear, int N, int K, int groupSize, float[] maxVal, int[] steps, double errorBefore,
                       double errorAfter) {

    /** The number of groups G. */
    public int groups() {
        return K / AwqQuantizer.groupLength(K, groupSize);
    }

    /** The mean shrink factor 1 − step/20 over all (row, group). */
    public double meanFactor() {
        double sum = 0;
        for (int s : steps) {
            sum += 1 - s / (double) ClipSearch.GRID;
        }
        return sum / steps.length;
    }

    /** The fraction of (row, group) that are clipped at all. */
    public double clippedFraction() {
        int n = 0;
        for (int s : steps) {
            if (s > 0) {
                n++;
            }
        }
        return (double) n / steps.length;
    }
}
