package dev.shrink.core.quant;

/**
 * The GPTQ (AutoGPTQ / GPTQModel) int32 packing of codes and zero points; see FORMATS.md, "GPTQ".
 *
 * <p>Both tensors are packed as a little-endian bit stream of b-bit fields: field i of a column
 * (qweight, along the input dim) or of a row (qzeros, along the output dim) occupies bits
 * {@code b·i .. b·i + b − 1} of the stream, and stream bit p is bit {@code p % 32} of word
 * {@code p / 32}. For b = 2, 4, 8 that is {@code 32/b} whole fields per word: input row
 * {@code (32/b)·r + j} of column n is at bits {@code b·j} of {@code qweight[r][n]}. For b = 3 it is
 * AutoGPTQ's layout of 32 values in 3 words: values 0..9 at bits 3i of word 0; value 10 split, its low
 * 2 bits at bits 30..31 of word 0 and its high bit at bit 0 of word 1; values 11..20 at bits
 * 3(i−11)+1 of word 1; value 21 split, its low bit at bit 31 of word 1 and its high 2 bits at bits
 * 0..1 of word 2; values 22..31 at bits 3(i−22)+2 of word 2.
 *
 * <p>Checked against AutoGPTQ's {@code auto_gptq/nn_modules/qlinear/qlinear_cuda_old.py}
 * ({@code QuantLinear.pack}, {@code bits == 3} branch): {@code qweight[row] |= intweight[j] << (3*(j-i))}
 * for 10 values, {@code qweight[row] |= intweight[i] << 30} (uint32: only the low 2 bits survive),
 * next row {@code |= (intweight[i] >> 2) & 1}, 10 values at {@code 3*(j-i) + 1},
 * {@code |= intweight[i] << 31}, next row {@code |= (intweight[i] >> 1) & 0x3}, 10 values at
 * {@code 3*(j-i) + 2}; the same loop packs qzeros along the columns. Its unpacking ({@code wf} shifts
 * {@code [0,3,..,30,0] / [0,1,4,..,31] / [0,2,5,..,29,0]} with the two split fields stitched back)
 * is the inverse. That is exactly the contiguous bit stream above.
 *
 * <p>Zero points: checkpoint format {@code "gptq"} (v1) stores z − 1 (AutoGPTQ's {@code zeros -= 1});
 * the field is masked to b bits, so z = 0 becomes all ones and reads back as 2^b (v1 cannot hold
 * z = 0; write such layers as {@code "gptq_v2"}, which stores z as it is).
 */
public final class GptqPacking {
    private GptqPacking() {
    }

    private static void checkBits(int bits) {
        if (bits != 2 && bits != 3 && bits != 4 && bits != 8) {
            throw new IllegalArgumentException("bits " + bits + " is not supported (2, 3, 4, 8)");
        }
    }

    private static void checkPositive(String dim, int size) {
        if (size <= 0) {
            throw new IllegalArgumentException(dim + " = " + size + " must be positive");
        }
    }

    private static void checkMultiple(String dim, int size, int bits) {
        checkPositive(dim, size);
        if ((long) size * bits % 32 != 0) {
            throw new IllegalArgumentException(dim + " = " + size + " times " + bits
                    + " bits is not a multiple of 32: cannot be packed into int32 words");
        }
    }

    private static void checkLength(String what, int[] a, long expected) {
        if (a.length != expected) {
            throw new IllegalArgumentException(what + " has " + a.length + " elements, expected " + expected);
        }
    }

    /**
     * Packs codes [N, K] (row-major, each in 0..2^bits − 1) into qweight [K·bits/32, N].
     *
     * @throws IllegalArgumentException for unsupported bits, K·bits not a multiple of 32, a wrong
     *                                  array length or a code out of range
     */
    public static int[] packQweight(int[] codes, int N, int K, int bits) {
        checkBits(bits);
        checkPositive("N", N);
        checkMultiple("K", K, bits);
        checkLength("codes", codes, (long) N * K);
        int mask = (1 << bits) - 1;
        int[] q = new int[Math.toIntExact((long) K * bits / 32 * N)];
        for (int n = 0; n < N; n++) {
            int row = n * K;
            for (int k = 0; k < K; k++) {
                int v = codes[row + k];
                if ((v & ~mask) != 0) {
                    throw new IllegalArgumentException("code " + v + " at (" + n + ", " + k + ") is outside 0.." + mask);
                }
                long p = (long) k * bits;
                int r = (int) (p >>> 5);
                int s = (int) (p & 31);
                q[r * N + n] |= v << s;
                if (s + bits > 32) {
                    q[(r + 1) * N + n] |= v >>> (32 - s);
                }
            }
        }
        return q;
    }

    /**
     * Unpacks qweight [K·bits/32, N] into codes [N, K] row-major; the inverse of {@link #packQweight}.
     *
     * @throws IllegalArgumentException for unsupported bits, K·bits not a multiple of 32 or a wrong length
     */
    public static int[] unpackQweight(int[] qweight, int N, int K, int bits) {
        checkBits(bits);
        checkPositive("N", N);
        checkMultiple("K", K, bits);
        checkLength("qweight", qweight, (long) K * bits / 32 * N);
        int mask = (1 << bits) - 1;
        int[] codes = new int[Math.multiplyExact(N, K)];
        for (int k = 0; k < K; k++) {
            long p = (long) k * bits;
            int r = (int) (p >>> 5);
            int s = (int) (p & 31);
            boolean split = s + bits > 32;
            int base = r * N;
            for (int n = 0; n < N; n++) {
                int v = qweight[base + n] >>> s;
                if (split) {
                    v |= qweight[base + N + n] << (32 - s);
                }
                codes[n * K + k] = v & mask;
            }
        }
        return codes;
    }

    /**
     * Packs zero points [G, N] into qzeros [G, N·bits/32], along the output dim. {@code v1}: stores
     * {@code (z − 1) & mask} (z in 0..2^bits; z = 0 becomes all ones, as AutoGPTQ writes it); v2:
     * stores z (in 0..2^bits − 1).
     *
     * @throws IllegalArgumentException for unsupported bits, N·bits not a multiple of 32, a wrong
     *                                  length or a zero point out of range
     */
    public static int[] packQzeros(int[] zeros, int G, int N, int bits, boolean v1) {
        checkBits(bits);
        checkPositive("G", G);
        checkMultiple("N", N, bits);
        checkLength("zeros", zeros, (long) G * N);
        int mask = (1 << bits) - 1;
        int maxZ = v1 ? mask + 1 : mask;
        int words = (int) ((long) N * bits / 32);
        int[] q = new int[G * words];
        for (int g = 0; g < G; g++) {
            int base = g * words;
            for (int n = 0; n < N; n++) {
                int z = zeros[g * N + n];
                if (z < 0 || z > maxZ) {
                    throw new IllegalArgumentException("zero point " + z + " at (" + g + ", " + n + ") is outside 0.."
                            + maxZ + (v1 ? " (v1)" : " (v2)"));
                }
                int v = (v1 ? z - 1 : z) & mask;
                int p = n * bits;
                int r = p >>> 5;
                int s = p & 31;
                q[base + r] |= v << s;
                if (s + bits > 32) {
                    q[base + r + 1] |= v >>> (32 - s);
                }
            }
        }
        return q;
    }

    /**
     * Unpacks qzeros [G, N·bits/32] into zero points [G, N]; v1 adds 1 back after masking (so an
     * all-ones v1 field reads as 2^bits, as AutoGPTQ's dequantization does).
     *
     * @throws IllegalArgumentException for unsupported bits, N·bits not a multiple of 32 or a wrong length
     */
    public static int[] unpackQzeros(int[] qzeros, int G, int N, int bits, boolean v1) {
        checkBits(bits);
        checkPositive("G", G);
        checkMultiple("N", N, bits);
        int words = (int) ((long) N * bits / 32);
        checkLength("qzeros", qzeros, (long) G * words);
        int mask = (1 << bits) - 1;
        int add = v1 ? 1 : 0;
        int[] z = new int[Math.multiplyExact(G, N)];
        for (int g = 0; g < G; g++) {
            int base = g * words;
            for (int n = 0; n < N; n++) {
                int p = n * bits;
                int r = p >>> 5;
                int s = p & 31;
                int v = qzeros[base + r] >>> s;
                if (s + bits > 32) {
                    v |= qzeros[base + r + 1] << (32 - s);
                }
                z[g * N + n] = (v & mask) + add;
            }
        }
        return z;
    }
}
