package dev.shrink.kernels.cuda;

/**
 * One linear of a device-resident decoder at batch 1: fp16 weight [N, K] (cuBLAS GEMV), or W4A16
 * (qweight in {@link W4a16Gemv#tile}'s layout, qzeros, fp16 scales; {@link W4a16Gemv#gemvTiled}, or a
 * tensor-core kernel shape where one is given).
 *
 * @param group input columns per group (W4A16)
 * @param v1    zero points stored as z − 1 (the "gptq" v1 checkpoint format)
 */
record DecodeLinear(int N, int K, int group, boolean v1, DeviceBuffer w, DeviceBuffer qw, DeviceBuffer qz,
                    DeviceBuffer sc) {
    static DecodeLinear dense(int N, int K, DeviceBuffer w) {
        return new DecodeLinear(N, K, 0, false, w, null, null, null);
    }

    boolean w4() {
        return w == null;
    }

    long bytes() {
        return w != null ? w.bytes() : qw.bytes() + qz.bytes() + sc.bytes();
    }

    void close() {
        for (DeviceBuffer b : new DeviceBuffer[] {w, qw, qz, sc}) {
            if (b != null) {
                b.close();
            }
        }
    }

    /** Queues out (float32 [N]) = in (fp16 [K]) · Wᵀ, or out += when {@code accumulate}. */
    void apply(CublasHandle blas, W4a16Gemv gemv, W4a16Gemv.Tc shape, DeviceBuffer in, DeviceBuffer out,
               boolean accumulate) {
        if (w != null) {
            blas.gemmRowMajorF16(false, true, 1, N, K, 1f, in.address(), K, w.address(), K, accumulate ? 1f : 0f,
                    out.address(), N);
        } else if (shape != null) {
            gemv.gemv(shape, true, false, qw.address(), qz.address(), sc.address(), in.address(), out.address(), K, N,
                    group, v1, accumulate);
        } else {
            gemv.gemvTiled(qw.address(), qz.address(), sc.address(), in.address(), out.address(), K, N, group, v1,
                    accumulate);
        }
    }
}
