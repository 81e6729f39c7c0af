package dev.shrink.gptq;

/**
 * How weights are quantized: b bits, groups of input columns, symmetric or with a zero point,
 * optionally with the MSE search of a range-shrink factor (GPTQ's {@code --mse}).
 *
 * @param bits      2, 3, 4 or 8
 * @param groupSize input columns sharing a scale and zero (−1: one group per row)
 * @param sym       symmetric: zero fixed at 2^(b−1)
 * @param mse       search the shrink factor p that minimises Σ|w − q(w)|^norm per row
 * @param maxShrink the search tries p = 1, 1 − 1/grid, ..., down to 1 − maxShrink
 * @param grid      the number of steps of that search
 * @param norm      the error norm of that search
 */
public record QuantScheme(int bits, int groupSize, boolean sym, boolean mse, double maxShrink, int grid, double norm) {

    public QuantScheme {
        if (bits != 2 && bits != 3 && bits != 4 && bits != 8) {
            throw new IllegalArgumentException("bits must be 2, 3, 4 or 8, got " + bits);
        }
        if (groupSize != -1 && groupSize <= 0) {
            throw new IllegalArgumentException("group size must be −1 or positive, got " + groupSize);
        }
    }

    public static QuantScheme of(int bits, int groupSize, boolean sym) {
        return new QuantScheme(bits, groupSize, sym, false, 0.8, 100, 2.4);
    }

    public QuantScheme withMse(boolean on) {
        return new QuantScheme(bits, groupSize, sym, on, maxShrink, grid, norm);
    }

    /** 2^b − 1, the largest code. */
    public int maxq() {
        return (1 << bits) - 1;
    }

    /** Groups of a row of K columns. */
    public int groups(int K) {
        return groupSize == -1 ? 1 : (K + groupSize - 1) / groupSize;
    }
}
