package dev.shrink.awq;

import dev.shrink.core.quant.QuantizedLinear;

/**
 * AWQ's weight quantizer (FORMATS.md, "AWQ GEMM"; llm-awq's {@code pseudo_quantize_tensor} with
 * {@code zero_point=True}): asymmetric 4-bit round-to-nearest per (output row, group of input
 * columns), in float32 arithmetic as the reference computes it:
 * <pre>
 *   s = max(max(w) − min(w), 1e−5) / 15
 *   z = clamp(−round(min(w) / s), 0, 15)
 *   q = clamp(round(w / s) + z, 0, 15),   Q(w) = (q − z) · s
 * </pre>
 * round is half-to-even (torch.round); the range need not include 0. W: [N, K] row-major, groups of
 * {@code gs} consecutive columns, K a multiple of gs. Pure functions.
 */
public final class AwqQuantizer {
    /** AWQ GEMM holds 4-bit codes only. */
    public static final int BITS = 4;
    /** The largest code, 2^4 − 1. */
    public static final int MAXQ = 15;

    private AwqQuantizer() {
    }

    /**
     * Why a linear [N, K] cannot be written in the AWQ GEMM format with groups of {@code gs} (−1:
     * one group of K), or null when it can: AWQ needs {@code K % gs == 0} and {@code N % 8 == 0}.
     */
    public static String unfitReason(int N, int K, int gs) {
        if (gs != -1 && K % gs != 0) {
            return "in-features " + K + " not divisible by the group size " + gs;
        }
        if (N % 8 != 0) {
            return "out-features " + N + " not divisible by 8 (AWQ packs 8 output columns per int32)";
        }
        return null;
    }

    /** The group length: gs, or K for −1. */
    static int groupLength(int K, int gs) {
        return gs == -1 ? K : gs;
    }

    /** The scale of a group with this min and max: max(max − min, 1e−5) / 15, in float32. */
    static float scale(float min, float max) {
        return scale(min, max, MAXQ);
    }

    /** {@link #scale(float, float)} for codes 0..maxq (the scale search of GPTQ's --awq-scales at 2, 3 or 8 bits). */
    static float scale(float min, float max, int maxq) {
        return Math.max(max - min, 1e-5f) / maxq;
    }

    /** The zero point of a group: clamp(−round(min / s), 0, 15). */
    static float zero(float min, float s) {
        return zero(min, s, MAXQ);
    }

    static float zero(float min, float s, int maxq) {
        return Math.max(0f, Math.min(maxq, -(float) Math.rint(min / s)));
    }

    /** The code of w: clamp(round(w / s) + z, 0, 15). */
    static int code(float w, float s, float z) {
        return code(w, s, z, MAXQ);
    }

    static int code(float w, float s, float z, int maxq) {
        return (int) Math.max(0f, Math.min(maxq, (float) Math.rint(w / s) + z));
    }

    /**
     * Q(W) for columns [c0, c0 + len) of row n of W (leading dim K), written to out at the same place.
     * out may be W.
     */
    static void pseudoQuantizeGroup(float[] W, int base, int len, float[] out, int outBase) {
        pseudoQuantizeGroup(W, base, len, out, outBase, MAXQ);
    }

    /** {@link #pseudoQuantizeGroup(float[], int, int, float[], int)} with codes 0..maxq. */
    static void pseudoQuantizeGroup(float[] W, int base, int len, float[] out, int outBase, int maxq) {
        float min = Float.POSITIVE_INFINITY, max = Float.NEGATIVE_INFINITY;
        for (int i = 0; i < len; i++) {
            float w = W[base + i];
            min = Math.min(min, w);
            max = Math.max(max, w);
        }
        float s = scale(min, max, maxq);
        float z = zero(min, s, maxq);
        for (int i = 0; i < len; i++) {
            out[outBase + i] = (code(W[base + i], s, z, maxq) - z) * s;
        }
    }

    /** Q(W): W [N, K] quantized and dequantized per (row, group); a new array. */
    public static float[] pseudoQuantize(float[] W, int N, int K, int gs) {
        return pseudoQuantize(W, N, K, gs, MAXQ);
    }

    /** {@link #pseudoQuantize(float[], int, int, int)} with codes 0..maxq (2^bits − 1). */
    public static float[] pseudoQuantize(float[] W, int N, int K, int gs, int maxq) {
        int len = groupLength(K, gs);
        if (K % len != 0 || W.length != N * K) {
            throw new IllegalArgumentException("W has " + W.length + " values for [" + N + ", " + K + "] in groups of " + len);
        }
        float[] out = new float[N * K];
        for (int n = 0; n < N; n++) {
            for (int c0 = 0; c0 < K; c0 += len) {
                pseudoQuantizeGroup(W, n * K + c0, len, out, n * K + c0, maxq);
            }
        }
        return out;
    }

    /**
     * W [N, K] as integer codes, per-group scales [G, N] and zero points [G, N], the form the GEMM
     * packing stores; {@code QuantizedLinear.dequantize()} gives {@link #pseudoQuantize}'s values.
     *
     * @param bias [N] or null, carried into the result
     */
    public static QuantizedLinear quantize(String name, float[] W, int N, int K, int gs, float[] bias) {
        int len = groupLength(K, gs);
        if (K % len != 0 || W.length != N * K) {
            throw new IllegalArgumentException(name + ": W has " + W.length + " values for [" + N + ", " + K
                    + "] in groups of " + len);
        }
        int G = K / len;
        int[] codes = new int[N * K];
        float[] scales = new float[G * N];
        int[] zeros = new int[G * N];
        for (int n = 0; n < N; n++) {
            for (int g = 0; g < G; g++) {
                int base = n * K + g * len;
                float min = Float.POSITIVE_INFINITY, max = Float.NEGATIVE_INFINITY;
                for (int i = 0; i < len; i++) {
                    min = Math.min(min, W[base + i]);
                    max = Math.max(max, W[base + i]);
                }
                float s = scale(min, max);
                float z = zero(min, s);
                scales[g * N + n] = s;
                zeros[g * N + n] = (int) z;
                for (int i = 0; i < len; i++) {
                    codes[base + i] = code(W[base + i], s, z);
                }
            }
        }
        return new QuantizedLinear(name, N, K, BITS, gs, codes, scales, zeros, QuantizedLinear.sequentialGIdx(K, gs), bias);
    }
}
