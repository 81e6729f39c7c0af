package dev.shrink.distill;

/**
 * Linear warm-up, then cosine decay to zero: the multiplier of transformers'
 * {@code get_cosine_schedule_with_warmup} (half a cosine), applied to the peak rate. For the
 * optimizer step that follows {@code s} completed steps (s = 0 for the first):
 *
 * <pre>
 * s &lt; W:  lr = peak · s / W
 * else:   lr = peak · ½ · (1 + cos(π · (s − W) / (S − W)))
 * </pre>
 *
 * As with transformers' scheduler, the very first step runs at lr 0 when W &gt; 0.
 *
 * @param peak   the learning rate after warm-up
 * @param warmup W, steps of linear warm-up
 * @param total  S, all steps
 */
public record LrSchedule(double peak, int warmup, int total) {
    public LrSchedule {
        if (!(peak > 0) || Double.isInfinite(peak)) {
            throw new IllegalArgumentException("learning rate must be positive, got " + peak);
        }
        if (warmup < 0 || total < 1) {
            throw new IllegalArgumentException("warm-up " + warmup + " and total steps " + total);
        }
    }

    /** The learning rate of the step after {@code s} completed steps. */
    public double at(int s) {
        if (s < warmup) {
            return peak * s / Math.max(1, warmup);
        }
        double progress = (double) (s - warmup) / Math.max(1, total - warmup);
        return peak * Math.max(0, 0.5 * (1 + Math.cos(Math.PI * progress)));
    }
}
