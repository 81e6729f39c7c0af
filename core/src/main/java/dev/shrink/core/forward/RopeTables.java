package dev.shrink.core.forward;

import dev.shrink.core.model.ModelConfig;

/**
 * RoPE tables for positions 0..P−1 at least: angle = (float) p · inv_freq[i], as torch computes the
 * outer product in float32; cos and sin of that float angle, [P, D/2] each. They grow with the
 * positions actually used (doubling, so decoding token by token recomputes them only log(P) times),
 * never to max_position_embeddings itself, which configs set as high as 2^29. Every backend's
 * forward uses these tables (the GPU uploads them), so positions rotate alike everywhere.
 */
public final class RopeTables {
    private final ModelConfig cfg;
    private final ModelConfig.RopeConfig params;
    private float[] cos = new float[0];
    private float[] sin = new float[0];
    private int positions;

    public RopeTables(ModelConfig cfg) {
        this(cfg, cfg.rope());
    }

    /** Tables of {@code params} (a block's RoPE: {@link ModelConfig#rope(int)}) at cfg's head dim. */
    public RopeTables(ModelConfig cfg, ModelConfig.RopeConfig params) {
        this.cfg = cfg;
        this.params = params;
        ensure(Math.min(cfg.maxPositions(), 16));
    }

    /** Grows the tables to at least {@code needed} positions; true when they changed. */
    public boolean ensure(int needed) {
        if (needed <= positions) {
            return false;
        }
        int half = cfg.headDim() / 2;
        long grown = Math.max(needed, Math.min(2L * positions, cfg.maxPositions()));
        if (grown * half > Integer.MAX_VALUE - 8) {
            throw new IllegalArgumentException("RoPE tables for " + needed + " positions exceed a Java array");
        }
        int P = (int) grown;
        double[] inv = params.inverseFrequencies(cfg.headDim());
        float[] c = new float[P * half];
        float[] s = new float[P * half];
        float scale = (float) params.attentionFactor(); // LongRoPE's: cos and sin times it, in float32 as torch does
        for (int p = 0; p < P; p++) {
            for (int i = 0; i < half; i++) {
                float angle = (float) p * (float) inv[i];
                c[p * half + i] = scale == 1f ? (float) Math.cos(angle) : (float) Math.cos(angle) * scale;
                s[p * half + i] = scale == 1f ? (float) Math.sin(angle) : (float) Math.sin(angle) * scale;
            }
        }
        cos = c;
        sin = s;
        positions = P;
        return true;
    }

    /** [positions(), D/2]. */
    public float[] cos() {
        return cos;
    }

    /** [positions(), D/2]. */
    public float[] sin() {
        return sin;
    }

    public int positions() {
        return positions;
    }
}
