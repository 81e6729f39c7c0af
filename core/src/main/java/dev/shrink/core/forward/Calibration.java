package dev.shrink.core.forward;

import dev.shrink.core.ShrinkException;

/**
 * Helpers the block-by-block stages share for their calibration activations, held one array per
 * sequence (xs[s]: [T, C]): batching them into one [B·T, C] array, and refusing non-finite values.
 */
public final class Calibration {
    private Calibration() {
    }

    /** Sequences s0..s0+B−1 of xs (each {@code len} floats) side by side: [B·len]. */
    public static float[] gather(float[][] xs, int s0, int B, int len) {
        float[] x = new float[B * len];
        for (int b = 0; b < B; b++) {
            System.arraycopy(xs[s0 + b], 0, x, b * len, len);
        }
        return x;
    }

    /** Copies a batch produced by {@link #gather} back into xs. */
    public static void scatter(float[] x, float[][] xs, int s0, int B, int len) {
        for (int b = 0; b < B; b++) {
            System.arraycopy(x, b * len, xs[s0 + b], 0, len);
        }
    }

    /** A weight with NaN or Inf cannot be quantized meaningfully: one clear error naming it. */
    public static void requireFiniteWeight(float[] W, String name) {
        if (NonFinite.first(W, W.length) >= 0) {
            throw new ShrinkException(name + ": the weight holds NaN or Inf; refusing to quantize it");
        }
    }

    /** Activations that overflowed on the calibration data: one clear error naming the block. */
    public static void requireFiniteActivations(float[] x, int layer) {
        if (NonFinite.first(x, x.length) >= 0) {
            throw new ShrinkException("block " + layer + ": activations became NaN or Inf on the calibration data");
        }
    }
}
