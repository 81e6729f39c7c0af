package dev.shrink.core.quant;

/**
 * The AutoAWQ "GEMM" int32 packing of 4-bit codes and zero points; see FORMATS.md, "AWQ GEMM".
 *
 * <p>Dimension letters: N output features, K input features, G = K / group groups. Both tensors are
 * packed along the <b>output</b> dim, eight 4-bit fields per little-endian int32 word, with
 * AutoAWQ's interleave: nibble i (bits 4i..4i+3) of word c holds output column
 * {@code 8c + ORDER[i]}, {@code ORDER = [0, 2, 4, 6, 1, 3, 5, 7]}; equivalently column
 * {@code 8c + j} sits at nibble {@code [0, 4, 1, 5, 2, 6, 3, 7][j]}.
 * <pre>
 *   qweight: I32 [K, N/8]   qweight[k][c] = Σ_i codes[8c + ORDER[i]][k] &lt;&lt; 4i
 *   qzeros:  I32 [G, N/8]   qzeros[g][c]  = Σ_i zeros[g][8c + ORDER[i]] &lt;&lt; 4i   (zeros stored as they are)
 * </pre>
 * Checked against AutoAWQ's {@code WQLinear_GEMM.from_linear} ({@code order_map = [0, 2, 4, 6, 1, 3, 5, 7]},
 * {@code qweight[:, col] |= intweight[:, col*8 + order_map[i]] << (i * 4)}) and its unpacking
 * ({@code AWQ_REVERSE_ORDER = [0, 4, 1, 5, 2, 6, 3, 7]}).
 */
public final class AwqPacking {
    /** ORDER[i]: the column offset within a group of eight held by nibble i. */
    public static final int[] ORDER = {0, 2, 4, 6, 1, 3, 5, 7};

    /** REVERSE[j]: the nibble holding column offset j within a group of eight. */
    public static final int[] REVERSE = {0, 4, 1, 5, 2, 6, 3, 7};

    private static final int BITS = 4;
    private static final int MASK = 0xF;

    private AwqPacking() {
    }

    private static void checkDims(int N, int K) {
        if (N <= 0 || K <= 0) {
            throw new IllegalArgumentException("N = " + N + " and K = " + K + " must be positive");
        }
        if (N % 8 != 0) {
            throw new IllegalArgumentException("out-features N = " + N + " is not a multiple of 8: AWQ packs eight "
                    + "4-bit output columns per int32 word");
        }
    }

    private static void checkLength(String what, int[] a, long expected) {
        if (a.length != expected) {
            throw new IllegalArgumentException(what + " has " + a.length + " elements, expected " + expected);
        }
    }

    /**
     * Packs codes [N, K] (row-major, PyTorch's weight layout, each in 0..15) into qweight [K, N/8].
     *
     * @throws IllegalArgumentException for N not a multiple of 8, a wrong length or a code out of range
     */
    public static int[] packQweight(int[] codes, int N, int K) {
        checkDims(N, K);
        checkLength("codes", codes, (long) N * K);
        int words = N / 8;
        int[] q = new int[Math.multiplyExact(K, words)];
        for (int n = 0; n < N; n++) {
            int shift = BITS * REVERSE[n & 7];
            int c = n >>> 3;
            int row = n * K;
            for (int k = 0; k < K; k++) {
                int v = codes[row + k];
                if ((v & ~MASK) != 0) {
                    throw new IllegalArgumentException("code " + v + " at (" + n + ", " + k + ") is outside 0..15");
                }
                q[k * words + c] |= v << shift;
            }
        }
        return q;
    }

    /**
     * Unpacks qweight [K, N/8] into codes [N, K] row-major; the inverse of {@link #packQweight}.
     *
     * @throws IllegalArgumentException for N not a multiple of 8 or a wrong length
     */
    public static int[] unpackQweight(int[] qweight, int N, int K) {
        checkDims(N, K);
        int words = N / 8;
        checkLength("qweight", qweight, (long) K * words);
        int[] codes = new int[Math.multiplyExact(N, K)];
        for (int k = 0; k < K; k++) {
            int base = k * words;
            for (int c = 0; c < words; c++) {
                int w = qweight[base + c];
                for (int i = 0; i < 8; i++) {
                    codes[(8 * c + ORDER[i]) * K + k] = (w >>> (BITS * i)) & MASK;
                }
            }
        }
        return codes;
    }

    /**
     * Packs zero points [G, N] (each in 0..15, stored as they are) into qzeros [G, N/8].
     *
     * @throws IllegalArgumentException for N not a multiple of 8, a wrong length or a zero out of range
     */
    public static int[] packQzeros(int[] zeros, int G, int N) {
        checkDims(N, G);
        checkLength("zeros", zeros, (long) G * N);
        int words = N / 8;
        int[] q = new int[Math.multiplyExact(G, words)];
        for (int g = 0; g < G; g++) {
            for (int n = 0; n < N; n++) {
                int z = zeros[g * N + n];
                if ((z & ~MASK) != 0) {
                    throw new IllegalArgumentException("zero point " + z + " at (" + g + ", " + n + ") is outside 0..15");
                }
                q[g * words + (n >>> 3)] |= z << (BITS * REVERSE[n & 7]);
            }
        }
        return q;
    }

    /**
     * Unpacks qzeros [G, N/8] into zero points [G, N]; the inverse of {@link #packQzeros}.
     *
     * @throws IllegalArgumentException for N not a multiple of 8 or a wrong length
     */
    public static int[] unpackQzeros(int[] qzeros, int G, int N) {
        checkDims(N, G);
        int words = N / 8;
        checkLength("qzeros", qzeros, (long) G * words);
        int[] z = new int[Math.multiplyExact(G, N)];
        for (int g = 0; g < G; g++) {
            for (int c = 0; c < words; c++) {
                int w = qzeros[g * words + c];
                for (int i = 0; i < 8; i++) {
                    z[g * N + 8 * c + ORDER[i]] = (w >>> (BITS * i)) & MASK;
                }
            }
        }
        return z;
    }
}
