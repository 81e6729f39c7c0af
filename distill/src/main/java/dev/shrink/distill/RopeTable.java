package dev.shrink.distill;

import dev.shrink.core.model.ModelConfig;

/**
 * cos and sin of the rotary angles for positions 0..P−1, computed as the decoder forward
 * ({@link dev.shrink.core.forward.Decoder}) computes them: angle = (float) p · (float) inv_freq[i]
 * in float32, then cos/sin of that float angle; so training sees the same rotations as evaluation.
 *
 * @param positions P
 * @param half      D / 2
 * @param cos       [P, D/2]
 * @param sin       [P, D/2]
 */
public record RopeTable(int positions, int half, float[] cos, float[] sin) {

    /** The table of {@code cfg}'s rotary embedding for {@code positions} positions. */
    public static RopeTable of(ModelConfig cfg, int positions) {
        int half = cfg.headDim() / 2;
        double[] inv = cfg.rope().inverseFrequencies(cfg.headDim());
        float[] c = new float[positions * half];
        float[] s = new float[positions * half];
        for (int p = 0; p < positions; p++) {
            for (int i = 0; i < half; i++) {
                float angle = (float) p * (float) inv[i];
                c[p * half + i] = (float) Math.cos(angle);
                s[p * half + i] = (float) Math.sin(angle);
            }
        }
        return new RopeTable(positions, half, c, s);
    }
}
