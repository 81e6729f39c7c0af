package dev.shrink.core.ops;

/**
 * A linear layer held in a backend's own form (a 4-bit linear kept packed, {@link Ops#packed}; a
 * float32 one laid out once, {@link Ops#dense}): y[M, N] = x[M, K]·Wᵀ + b with W and b as the
 * quantized linear, or the float32 weights and bias given, define them.
 */
public interface LinearKernel {

    /** y = x·Wᵀ + b; x: [M, K], y: [M, N] (overwritten). */
    void apply(float[] x, int M, float[] y);

    /** The memory it holds, bytes. */
    long bytes();

    /** W [N, K] as the products use it (dequantized for packed codes), made on request. */
    float[] weights();

    /** The bias [N] it adds, or null. */
    float[] bias();

    /** Whether {@link #row} reads rows. */
    default boolean readsRows() {
        return false;
    }

    /**
     * dst[off .. off + K) = W[n, :] as the products use it: one row without making all of W (a tied
     * model's embedding read from its head).
     *
     * @throws UnsupportedOperationException where the kernel reads no rows ({@link #readsRows})
     */
    default void row(int n, float[] dst, int off) {
        throw new UnsupportedOperationException("this linear kernel reads no rows");
    }
}
