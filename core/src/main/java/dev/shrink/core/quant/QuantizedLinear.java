package dev.shrink.core.quant;

import java.util.Objects;

/**
 * A linear layer quantized GPTQ-style, unpacked: integer codes, per-group scales and zero points,
 * the group of each input column. Shared by the GPTQ writer (compress-gptq) and reader (eval).
 *
 * <p>Dequantization: {@code w[n][k] = scales[gIdx[k]][n] · (codes[n][k] − zeros[gIdx[k]][n])}.
 *
 * @param name      tensor prefix, e.g. {@code model.layers.0.self_attn.q_proj} (no ".weight")
 * @param N         output features (rows of W)
 * @param K         input features (columns of W)
 * @param bits      code width: 2, 3, 4 or 8
 * @param groupSize input columns per group, or −1 for one group over all of K
 * @param codes     [N, K] row-major, each in 0..2^bits − 1
 * @param scales    [G, N]
 * @param zeros     [G, N] integer zero points z as used in the formula (not z − 1)
 * @param gIdx      [K] group of each input column, each in 0..G − 1 (act-order: any assignment)
 * @param bias      [N], or null
 */
public record QuantizedLinear(String name, int N, int K, int bits, int groupSize, int[] codes, float[] scales,
                              int[] zeros, int[] gIdx, float[] bias) {

    public QuantizedLinear {
        Objects.requireNonNull(name, "name");
        Objects.requireNonNull(codes, "codes");
        Objects.requireNonNull(scales, "scales");
        Objects.requireNonNull(zeros, "zeros");
        Objects.requireNonNull(gIdx, "gIdx");
        String what = "quantized linear '" + name + "'";
        if (N <= 0 || K <= 0) {
            throw new IllegalArgumentException(what + ": N = " + N + " and K = " + K + " must be positive");
        }
        if (bits != 2 && bits != 3 && bits != 4 && bits != 8) {
            throw new IllegalArgumentException(what + ": bits " + bits + " is not supported (2, 3, 4, 8)");
        }
        if (groupSize != -1 && groupSize <= 0) {
            throw new IllegalArgumentException(what + ": group size " + groupSize + " must be positive or -1");
        }
        int G = groups(K, groupSize);
        if ((long) N * K != codes.length) {
            throw new IllegalArgumentException(what + ": " + codes.length + " codes, expected N·K = " + N + "·" + K);
        }
        if ((long) G * N != scales.length) {
            throw new IllegalArgumentException(what + ": " + scales.length + " scales, expected G·N = " + G + "·" + N);
        }
        if ((long) G * N != zeros.length) {
            throw new IllegalArgumentException(what + ": " + zeros.length + " zeros, expected G·N = " + G + "·" + N);
        }
        if (gIdx.length != K) {
            throw new IllegalArgumentException(what + ": g_idx has " + gIdx.length + " entries, expected K = " + K);
        }
        if (bias != null && bias.length != N) {
            throw new IllegalArgumentException(what + ": bias has " + bias.length + " entries, expected N = " + N);
        }
        for (int k = 0; k < K; k++) {
            if (gIdx[k] < 0 || gIdx[k] >= G) {
                throw new IllegalArgumentException(what + ": g_idx[" + k + "] = " + gIdx[k] + " is outside 0.." + (G - 1));
            }
        }
        int maxq = (1 << bits) - 1;
        for (int i = 0; i < codes.length; i++) {
            if (codes[i] < 0 || codes[i] > maxq) {
                throw new IllegalArgumentException(what + ": code " + codes[i] + " at (" + i / K + ", " + i % K
                        + ") is outside 0.." + maxq);
            }
        }
    }

    /** G: ceil(K / groupSize), or 1 when groupSize is −1. */
    public static int groups(int K, int groupSize) {
        return groupSize == -1 ? 1 : (int) ((K + (long) groupSize - 1) / groupSize);
    }

    /** The number of groups G. */
    public int groupCount() {
        return groups(K, groupSize);
    }

    /** The trivial group assignment {@code g_idx[k] = k / groupSize} (all 0 for groupSize −1). */
    public static int[] sequentialGIdx(int K, int groupSize) {
        int[] g = new int[K];
        if (groupSize > 0) {
            for (int k = 0; k < K; k++) {
                g[k] = k / groupSize;
            }
        }
        return g;
    }

    /** W [N, K] row-major in float32: {@code scales[g][n] · (codes[n][k] − zeros[g][n])} with g = gIdx[k]. */
    public float[] dequantize() {
        float[] w = new float[Math.multiplyExact(N, K)];
        for (int n = 0; n < N; n++) {
            int row = n * K;
            for (int k = 0; k < K; k++) {
                int g = gIdx[k] * N + n;
                w[row + k] = scales[g] * (float) (codes[row + k] - zeros[g]);
            }
        }
        return w;
    }

    @Override
    public String toString() {
        return "QuantizedLinear[" + name + " N=" + N + " K=" + K + " bits=" + bits + " group=" + groupSize
                + (bias != null ? " bias" : "") + "]";
    }

    /** "X" for a tensor name "X.weight", else the name unchanged. */
    public static String prefixOf(String tensorName) {
        return tensorName.endsWith(".weight") ? tensorName.substring(0, tensorName.length() - ".weight".length()) : tensorName;
    }

    /**
     * Checks, before a writer packs anything, that this linear can replace {@code key}'s weight in
     * {@code source}: the map key is its name, the source has "key.weight" of shape [N, K], bits and
     * group size are the format's, and every scale fits fp16.
     *
     * @throws IllegalArgumentException naming the linear and the mismatch (a caller's bug, not bad input)
     */
    public void checkReplaces(String key, dev.shrink.core.safetensors.WeightStore source, int formatBits, int formatGroupSize) {
        if (!key.equals(name)) {
            throw new IllegalArgumentException("map key '" + key + "' holds the quantized linear '" + name + "'");
        }
        if (!source.has(key + ".weight")) {
            throw new IllegalArgumentException("quantized linear '" + key + "': the source has no tensor '" + key + ".weight'");
        }
        long[] shape = source.info(key + ".weight").shape();
        if (!java.util.Arrays.equals(shape, new long[] {N, K})) {
            throw new IllegalArgumentException("quantized linear '" + key + "' is [" + N + ", " + K
                    + "] but the source weight is " + java.util.Arrays.toString(shape));
        }
        if (bits != formatBits || groupSize != formatGroupSize) {
            throw new IllegalArgumentException("quantized linear '" + key + "' has bits " + bits + ", group size "
                    + groupSize + "; the format says bits " + formatBits + ", group size " + formatGroupSize);
        }
        for (float s : scales) {
            if (!Float.isFinite(s) || Math.abs(s) > 65504f) {
                throw new IllegalArgumentException("quantized linear '" + key + "' has scale " + s + ", which fp16 cannot hold");
            }
        }
    }
}
