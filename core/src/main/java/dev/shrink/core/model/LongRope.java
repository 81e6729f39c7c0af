package dev.shrink.core.model;

import java.util.List;

/**
 * Phi-3's LongRoPE scaling, as transformers computes it (modeling_rope_utils, longrope): per-frequency
 * factors, the short ones while a forward's sequence (its largest position + 1) stays within
 * {@code original_max_position_embeddings}, the long ones beyond it; cos and sin both multiplied by
 * an attention factor, sqrt(1 + ln(factor) / ln(original)) with factor = max_position_embeddings /
 * original_max_position_embeddings unless the config gives one (1 when factor ≤ 1).
 *
 * @param shortFactor     [D/2]
 * @param longFactor      [D/2]
 * @param originalMax     original_max_position_embeddings
 * @param attentionFactor the cos/sin multiplier
 */
public record LongRope(double[] shortFactor, double[] longFactor, int originalMax, double attentionFactor) {

    /** The factors for a forward whose positions reach {@code seqLen − 1}. */
    public boolean isLong(int seqLen) {
        return seqLen > originalMax;
    }

    /**
     * inv_freq[i] = 1 / (ext[i] · theta^(2i/D)), each step in float32 as torch computes it (the exponent
     * a float division, the power rounded to float, the product and the quotient float operations).
     */
    public double[] inverseFrequencies(double theta, int headDim, boolean longVariant) {
        double[] ext = longVariant ? longFactor : shortFactor;
        int half = headDim / 2;
        if (ext.length != half) {
            throw new IllegalArgumentException("longrope factors: " + ext.length + " for head_dim " + headDim);
        }
        double[] inv = new double[half];
        for (int i = 0; i < half; i++) {
            float exponent = (float) (2 * i) / (float) headDim;
            float pow = (float) Math.pow(theta, exponent);
            float denom = (float) ext[i] * pow;
            inv[i] = 1f / denom;
        }
        return inv;
    }

    static double defaultAttentionFactor(int maxPositions, int originalMax, Double factor) {
        double f = factor != null ? factor : maxPositions / (double) originalMax;
        return f <= 1.0 ? 1.0 : Math.sqrt(1 + Math.log(f) / Math.log(originalMax));
    }

    static double[] toArray(List<Double> xs) {
        return xs.stream().mapToDouble(Double::doubleValue).toArray();
    }
}
