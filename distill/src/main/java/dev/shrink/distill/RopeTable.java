package dev.shrink.distill;

import dev.shrink.core.forward.RopeTables;
import dev.shrink.core.model.ModelConfig;

/**
 * cos and sin of the rotary angles for positions 0..P−1, as the decoder forward computes them
 * ({@link RopeTables}: angle = (float) p · (float) inv_freq[i] in float32, cos/sin of that float
 * angle, times LongRoPE's attention factor), so training sees the same rotations as evaluation.
 *
 * @param positions P
 * @param half      D / 2
 * @param cos       [P, D/2] at least (row p at p·half)
 * @param sin       [P, D/2] at least
 */
public record RopeTable(int positions, int half, float[] cos, float[] sin) {

    /** The table of {@code cfg}'s rotary embedding {@code params} ({@link ModelConfig#rope(int, int)}) for {@code positions} positions. */
    public static RopeTable of(ModelConfig cfg, ModelConfig.RopeConfig params, int positions) {
        RopeTables t = new RopeTables(cfg, params);
        t.ensure(positions);
        return new RopeTable(positions, cfg.headDim() / 2, t.cos(), t.sin());
    }
}
