package dev.shrink.core.forward;

import dev.shrink.core.ShrinkException;
import java.util.Locale;

/**
 * How keys and values are kept in the KV cache: {@code fp16} (as the decoder computes them), or
 * LMDeploy's online {@code int8} / {@code int4} scheme (its {@code --quant-policy 8|4}): per token and
 * per KV head, asymmetric, the scale and the zero point stored in fp16 beside the codes
 * (docs/KV_CACHE.md).
 *
 * <p>For one head's D values x of one token (K after RoPE, or V), with b bits and Q = 2^b − 1:
 * <pre>
 *   scale = fp16((max x − min x) / Q)      zero = fp16(min x)
 *   q     = clamp(rint((x − zero) · (1 / scale)), 0, Q)     (round half to even; NaN → 0)
 *   x̂     = q · scale + zero
 * </pre>
 * as LMDeploy's TurboMind kernels compute them (kernels/attention/quantization.h: {@code warp_stats},
 * {@code quantize} with {@code cvt.rni.sat}, {@code dequantize}); the arithmetic is float32 here.
 * On the CPU the cache is simulated: K and V are quantized and dequantized as they are written
 * ({@link #roundTrip}) and kept as floats, so every read sees exactly the values a quantized cache
 * would give back.
 */
public enum KvCacheType {
    FP16(16), INT8(8), INT4(4);

    /** Bytes that a quantized cache stores beside the codes of one token of one KV head: fp16 scale + fp16 zero. */
    public static final int SCALE_ZERO_BYTES = 4;

    private final int bits;

    KvCacheType(int bits) {
        this.bits = bits;
    }

    /** Bits per stored element: 16, 8 or 4. */
    public int bits() {
        return bits;
    }

    /** Whether K and V go through the quantizer (int8, int4). */
    public boolean quantized() {
        return this != FP16;
    }

    /** "int8", as options take it. */
    public String id() {
        return name().toLowerCase(Locale.ROOT);
    }

    /**
     * Bytes of one token of one KV head of K (or of V) in the cache: D codes of b bits plus, when
     * quantized, the fp16 scale and fp16 zero point.
     */
    public long bytesPerHead(int headDim) {
        return quantized() ? ((long) headDim * bits + 7) / 8 + SCALE_ZERO_BYTES : 2L * headDim;
    }

    /**
     * fp16|int8|int4 (also f16, float16, half, i8, i4).
     *
     * @throws ShrinkException naming {@code option}
     */
    public static KvCacheType parse(String s, String option) {
        return switch (s.strip().toLowerCase(Locale.ROOT)) {
            case "fp16", "f16", "float16", "half" -> FP16;
            case "int8", "i8" -> INT8;
            case "int4", "i4" -> INT4;
            default -> throw new ShrinkException(option + ": unknown KV cache type '" + s + "' (fp16, int8, int4)");
        };
    }

    /**
     * LMDeploy's {@code quant_policy}: 0 (none), 8 (int8), 4 (int4).
     *
     * @throws ShrinkException naming {@code option}
     */
    public static KvCacheType fromQuantPolicy(int policy, String option) {
        return switch (policy) {
            case 0 -> FP16;
            case 8 -> INT8;
            case 4 -> INT4;
            default -> throw new ShrinkException(option + ": " + policy + " is not a quant policy (0, 4 = int4, 8 = int8)");
        };
    }

    /**
     * Quantizes and dequantizes in place n rows of {@code heads} heads of D values (x: [n, heads·D]), as
     * a quantized cache stores them and attention reads them back; nothing for fp16.
     */
    public void roundTrip(float[] x, int n, int heads, int D) {
        if (!quantized()) {
            return;
        }
        if ((long) n * heads * D > x.length) {
            throw new IllegalArgumentException(n + " × " + heads + " × " + D + " values, array of " + x.length);
        }
        int[] codes = new int[D];
        float[] params = new float[2];
        for (int g = 0, groups = n * heads; g < groups; g++) {
            int off = g * D;
            quantize(x, off, D, bits, codes, params);
            for (int i = 0; i < D; i++) {
                x[off + i] = dequantize(codes[i], params[0], params[1]);
            }
        }
    }

    /**
     * One group's codes: {@code params} receives {scale, zero} (fp16 values, as floats), {@code codes}
     * the D codes in 0..2^bits − 1.
     */
    public static void quantize(float[] x, int off, int D, int bits, int[] codes, float[] params) {
        float min = Float.POSITIVE_INFINITY, max = Float.NEGATIVE_INFINITY;
        for (int i = 0; i < D; i++) {
            min = Math.min(min, x[off + i]);
            max = Math.max(max, x[off + i]);
        }
        int qmax = (1 << bits) - 1;
        float scale = fp16((max - min) * (1f / qmax));
        float zero = fp16(min);
        float inv = 1f / scale;
        for (int i = 0; i < D; i++) {
            float v = (float) Math.rint((x[off + i] - zero) * inv);
            codes[i] = v >= qmax ? qmax : v > 0 ? (int) v : 0; // saturate; NaN (0 · ∞ when scale is 0) → 0
        }
        params[0] = scale;
        params[1] = zero;
    }

    /** x̂ = q · scale + zero. */
    public static float dequantize(int code, float scale, float zero) {
        return code * scale + zero;
    }

    /** A float rounded to the nearest fp16 value (ties to even), as a float. */
    public static float fp16(float v) {
        return Float.float16ToFloat(Float.floatToFloat16(v));
    }
}
