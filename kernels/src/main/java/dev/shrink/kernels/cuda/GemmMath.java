package dev.shrink.kernels.cuda;

/**
 * The arithmetic of the float32 GEMMs on the GPU. {@link #FP32}: true float32 (what {@code Ops}
 * specifies; results agree with the CPU backends to float rounding). {@link #TF32}: float32 data,
 * products on the tensor cores with inputs rounded to TF32 (10-bit mantissa, like fp16's) and
 * float32 sums: several times faster, errors of ~1e-3·sqrt(K) relative instead of ~1e-6.
 * {@link #FP16}: the resident model forward keeps its linears' weights in fp16 and multiplies them
 * with activations rounded to fp16 on the tensor cores, float32 sums (half the weight memory, twice
 * TF32's rate, transformers' fp16 arithmetic with a float32 residual stream); its float32-data
 * products (attention's) and every other stage's GEMMs run as {@link #TF32}.
 */
public enum GemmMath {
    FP32(Cublas.COMPUTE_32F),
    TF32(Cublas.COMPUTE_32F_FAST_TF32),
    FP16(Cublas.COMPUTE_32F_FAST_TF32);

    final int computeType;

    GemmMath(int computeType) {
        this.computeType = computeType;
    }

    /** "fp32", "tf32" or "fp16". */
    public String label() {
        return name().toLowerCase(java.util.Locale.ROOT);
    }

    /** Parses "fp32" / "tf32" (any case); anything else is an IllegalArgumentException naming the choices. */
    public static GemmMath parse(String s) {
        for (GemmMath m : values()) {
            if (m.label().equalsIgnoreCase(s)) {
                return m;
            }
        }
        throw new IllegalArgumentException("unknown GEMM math '" + s + "'; choose fp32, tf32 or fp16");
    }
}
