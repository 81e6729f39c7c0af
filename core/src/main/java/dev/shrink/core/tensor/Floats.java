package dev.shrink.core.tensor;

/** Conversions between float32 and the 16- and 8-bit float formats, bit-exact with PyTorch. */
public final class Floats {
    private Floats() {
    }

    /** bfloat16 bits (low 16 bits of {@code bits}) to float: the high half of a float32. */
    public static float bf16ToFloat(short bits) {
        return Float.intBitsToFloat((bits & 0xFFFF) << 16);
    }

    /** float to bfloat16 bits, round to nearest even (as torch's .to(bfloat16)); NaN stays NaN. */
    public static short floatToBf16(float f) {
        int x = Float.floatToRawIntBits(f);
        if ((x & 0x7FFFFFFF) > 0x7F800000) {
            return (short) ((x >>> 16) | 0x0040);
        }
        int rounding = 0x7FFF + ((x >>> 16) & 1);
        return (short) ((x + rounding) >>> 16);
    }

    public static float f16ToFloat(short bits) {
        return Float.float16ToFloat(bits);
    }

    /** float to IEEE half, round to nearest even. */
    public static short floatToF16(float f) {
        return Float.floatToFloat16(f);
    }

    /** float8 e4m3fn (bias 7, no infinities, 0x7F/0xFF = NaN) to float. */
    public static float e4m3ToFloat(byte b) {
        int v = b & 0xFF;
        int sign = (v >>> 7) != 0 ? -1 : 1;
        int exp = (v >>> 3) & 0xF;
        int man = v & 0x7;
        if (exp == 0xF && man == 0x7) {
            return Float.NaN;
        }
        if (exp == 0) {
            return sign * (man / 8f) * (float) Math.pow(2, -6);
        }
        return sign * (1 + man / 8f) * (float) Math.pow(2, exp - 7);
    }

    /** Every value rounded to fp16 ({@link #floatToF16}), in parallel over 64 Ki-value chunks. */
    public static short[] toF16(float[] f) {
        short[] h = new short[f.length];
        java.util.stream.IntStream.range(0, (f.length + 65535) / 65536).parallel().forEach(c -> {
            for (int i = c * 65536, e = Math.min(f.length, i + 65536); i < e; i++) {
                h[i] = floatToF16(f[i]);
            }
        });
        return h;
    }
}
