package dev.shrink.kernels.cuda;

/**
 * W4A16 GEMV on a packed 4-bit GPTQ linear resident on the GPU: y[N] = x[K] · dequant(W)ᵀ for one
 * token (decoding), reading each weight byte once (kernel {@code w4a16_gemv} of w4a16.cu, where
 * the layout is spelled out). x is fp16, y float32. Groups must be a multiple of 32 input columns
 * (or −1: one group over K), without act-order's column permutation (g = k / group); N a multiple
 * of 8, K of the group.
 */
public final class W4a16Gemv implements AutoCloseable {
    private static final int COLS = 32, RUNS = 32;
    private final CudaDevice device;
    private final CudaModule module;
    private final CudaKernel gemv;

    public W4a16Gemv(CudaDevice device) {
        this.device = device;
        module = device.module("w4a16.cu");
        gemv = module.kernel("w4a16_gemv");
    }

    /**
     * Queues y = x · dequant(W)ᵀ (every element of y written once).
     *
     * @param qweight int32 [K/8, N]
     * @param qzeros  int32 [G, N/8] (v1: z − 1 stored)
     * @param scales  fp16 [G, N]
     * @param x       fp16 [K]
     * @param y       float32 [N]
     * @param group   input columns per group, or −1
     * @param v1      the "gptq" checkpoint format's zero points (z − 1); false for "gptq_v2"
     */
    public void gemv(DeviceBuffer qweight, DeviceBuffer qzeros, DeviceBuffer scales, DeviceBuffer x, DeviceBuffer y,
                     int K, int N, int group, boolean v1) {
        int gs = group == -1 ? K : group;
        if (N % 8 != 0 || gs % 32 != 0 || K % gs != 0) {
            throw new IllegalArgumentException("W4A16 GEMV needs N % 8 == 0, a group multiple of 32 and K a multiple"
                    + " of the group; got N = " + N + ", K = " + K + ", group = " + group);
        }
        int G = K / gs;
        if (qweight.bytes() < (long) K / 8 * N * 4 || qzeros.bytes() < (long) G * N / 8 * 4
                || scales.bytes() < (long) G * N * 2 || x.bytes() < K * 2L || y.bytes() < N * 4L) {
            throw new IllegalArgumentException("W4A16 GEMV: a buffer is smaller than [K=" + K + ", N=" + N + "] needs");
        }
        device.makeCurrent();
        gemv.launch((N + COLS - 1) / COLS, 1, RUNS * 8, 0, qweight, qzeros, scales, x, y, K, N, gs,
                v1 ? 1 : 0);
    }

    @Override
    public void close() {
        module.close();
    }
}
