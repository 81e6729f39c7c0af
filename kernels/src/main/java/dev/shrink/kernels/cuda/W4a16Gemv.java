package dev.shrink.kernels.cuda;

/**
 * W4A16 GEMV on a packed 4-bit GPTQ linear resident on the GPU: y[N] = x[K] · dequant(W)ᵀ for one
 * token (decoding), reading each weight byte once (kernel {@code w4a16_gemv} of w4a16.cu, where
 * the layout is spelled out). x is fp16, y float32. Groups must be a multiple of 32 input columns
 * (or −1: one group over K), without act-order's column permutation (g = k / group); N a multiple
 * of 8, K of the group.
 */
public final class W4a16Gemv implements AutoCloseable {
    private static final int COLS = 256, RUNS = 4;
    private final CudaDevice device;
    private final CudaModule module;
    private final CudaKernel gemv;
    /** Slices' partial sums [slices, N] and the per-column-block tickets (zero between calls). */
    private DeviceBuffer partial, tickets;

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
        // K is cut into slices of 8 steps (256 inputs), so that each of a block's 4 runs has 2 steps, all of
        // whose loads are issued as the block starts (short blocks, many in flight)
        int colBlocks = (N + COLS - 1) / COLS, steps = K / 32;
        int slices = Math.max(1, steps / 8);
        int span = (steps + slices - 1) / slices;
        if (partial == null || partial.bytes() < (long) slices * N * 4) {
            partial = replace(partial, (long) slices * N * 4);
        }
        if (tickets == null || tickets.bytes() < colBlocks * 4L) {
            tickets = replace(tickets, colBlocks * 4L);
            device.fill32(tickets, 0, tickets.bytes() / 4);
        }
        device.makeCurrent();
        gemv.launch(colBlocks, slices, RUNS * 64, (32 * span + span + RUNS * COLS) * 4, qweight, qzeros, scales, x, y,
                K, N, gs, v1 ? 1 : 0, partial, tickets);
    }

    private DeviceBuffer replace(DeviceBuffer old, long bytes) {
        if (old != null) {
            device.synchronize();
            old.close();
        }
        return device.alloc(bytes);
    }

    @Override
    public void close() {
        device.synchronize();
        if (partial != null) {
            partial.close();
        }
        if (tickets != null) {
            tickets.close();
        }
        module.close();
    }
}
