package dev.shrink.core.forward;

import dev.shrink.core.ShrinkException;

/**
 * Where NaN or ±Inf first appears, so that a non-finite perplexity, KL or logit is an error naming
 * its cause instead of a number. Weights are checked as they are read ({@link #checkWeight}: one
 * pass over each tensor); a forward whose result is not finite is run again with every op's output
 * checked ({@link Decoder#checking()}), which names the first op and block that went non-finite.
 */
public final class NonFinite {
    private NonFinite() {
    }

    /** Index of the first NaN or ±Inf in {@code x[0..n)}, or −1. */
    public static int first(float[] x, int n) {
        for (int i = 0; i < n; i++) {
            // x − x is 0 for finite x and NaN for NaN or ±Inf
            if (x[i] - x[i] != 0f) {
                return i;
            }
        }
        return -1;
    }

    /** Whether every element of {@code x} is finite. */
    public static boolean all(float[] x) {
        return first(x, x.length) < 0;
    }

    /** "NaN", "+Inf" or "-Inf". */
    public static String describe(float v) {
        return Float.isNaN(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf";
    }

    /**
     * Refuses a weight tensor holding NaN or ±Inf: "FILE: tensor 'NAME' holds NaN (element i of n)".
     *
     * @param origin where the tensor comes from (its file), as {@link WeightSource#origin} says
     */
    public static float[] checkWeight(String origin, String name, float[] w) {
        int i = first(w, w.length);
        if (i >= 0) {
            throw new ShrinkException(origin + ": tensor '" + name + "' holds " + describe(w[i]) + " (element " + i
                    + " of " + w.length + "); a model with non-finite weights gives no meaningful output");
        }
        return w;
    }

    /**
     * The error for a forward op whose output is not finite although its inputs were: thrown by the
     * checking decoder. {@code where} names the op, e.g. "layer 3 attention (softmax(q·kᵀ/√D)·v)".
     */
    public static final class OpException extends ShrinkException {
        public OpException(String where, float value) {
            super("non-finite output (" + describe(value) + ") first at " + where);
        }
    }
}
