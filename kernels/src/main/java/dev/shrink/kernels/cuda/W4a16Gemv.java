package dev.shrink.kernels.cuda;

/**
 * W4A16 GEMV on a packed 4-bit GPTQ linear resident on the GPU: y[N] = x[K] · dequant(W)ᵀ for one
 * token (decoding), reading each weight byte once. x is fp16, y float32. Groups must be a multiple
 * of 32 input columns (or −1: one group over K), without act-order's column permutation
 * (g = k / group); N a multiple of 8, K of the group.
 *
 * <p>Two kernels of w4a16.cu, where the layout is spelled out: {@link Variant#TC} (the default),
 * codes turned into fp16 integers and multiplied on the tensor cores, one launch with the K split
 * inside a block (no cross-block reduction); and {@link Variant#SLICED}, the first kernel (float FMAs,
 * K split over blocks with a ticket reduction), kept for comparison in {@link W4a16Bench}. Both sum
 * Σ x·q per group in float32 and apply s·(Σ x·q − z·Σx) in float32: no fp16 rounding of weights.
 */
public final class W4a16Gemv implements AutoCloseable {
    /** The kernels. */
    public enum Variant {
        /** Tensor-core kernel, U = 8 steps (8 × 512 bytes) of weight loads in flight per warp. */
        TC,
        /** Tensor-core kernel, U = 4. */
        TC4,
        /** The first kernel: float FMAs, K slices over blocks, ticket reduction. */
        SLICED
    }

    private static final int COLS = 256, RUNS = 4;
    private final CudaDevice device;
    private final CudaModule module;
    private final CudaKernel sliced, tc8, tc4;
    /** Slices' partial sums [slices, N] and the per-column-block tickets (zero between calls), for SLICED. */
    private DeviceBuffer partial, tickets;

    public W4a16Gemv(CudaDevice device) {
        this.device = device;
        module = device.module("w4a16.cu");
        sliced = module.kernel("w4a16_gemv");
        tc8 = module.kernel("w4a16_gemv_tc8");
        tc4 = module.kernel("w4a16_gemv_tc4");
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
        gemv(Variant.TC, 0, qweight.address(), qzeros.address(), scales.address(), x.address(), y.address(), K, N,
                group, v1, false, check(qweight, qzeros, scales, x, y, K, N, group));
    }

    /** {@link #gemv}, adding into y (y += x · dequant(W)ᵀ) when {@code accumulate}: a residual stream. */
    public void gemv(DeviceBuffer qweight, DeviceBuffer qzeros, DeviceBuffer scales, DeviceBuffer x, DeviceBuffer y,
                     int K, int N, int group, boolean v1, boolean accumulate) {
        gemv(Variant.TC, 0, qweight.address(), qzeros.address(), scales.address(), x.address(), y.address(), K, N,
                group, v1, accumulate, check(qweight, qzeros, scales, x, y, K, N, group));
    }

    /**
     * The product with a chosen kernel and, for the tensor-core ones, warps per block ({@code warps}
     * 0: {@link #defaultWarps}); addresses are device pointers (sizes as {@link #gemv} checks them).
     * {@link Variant#SLICED} cannot accumulate.
     */
    public void gemv(Variant v, int warps, long qweight, long qzeros, long scales, long x, long y, int K, int N,
                     int group, boolean v1, boolean accumulate) {
        gemv(v, warps, qweight, qzeros, scales, x, y, K, N, group, v1, accumulate, shapeCheck(K, N, group));
    }

    private void gemv(Variant v, int warps, long qweight, long qzeros, long scales, long x, long y, int K, int N,
                      int group, boolean v1, boolean accumulate, int gs) {
        device.makeCurrent();
        if (v == Variant.SLICED) {
            if (accumulate) {
                throw new IllegalArgumentException("the SLICED W4A16 kernel writes y; it cannot add into it");
            }
            launchSliced(qweight, qzeros, scales, x, y, K, N, gs, v1);
            return;
        }
        int w = warps > 0 ? warps : defaultWarps(N);
        if (w > 16 || w < 1) {
            throw new IllegalArgumentException("W4A16 GEMV: " + w + " warps per block; 1 to 16");
        }
        int stages = v == Variant.TC ? 8 : 4;
        (v == Variant.TC ? tc8 : tc4).launch((N + 31) / 32, 1, 32 * w, tcShared(K, gs, w, stages),
                qweight, qzeros, scales, x, y, K, N, gs, v1 ? 1 : 0, accumulate ? 1 : 0);
    }

    /**
     * Warps per block of the tensor-core kernel for N output columns: enough that the GPU holds
     * ~16 warps per SM of loads in flight (blocks of 32 columns), 4 to 16.
     */
    public int defaultWarps(int N) {
        int blocks = (N + 31) / 32;
        int want = (int) Math.ceil(16.0 * device.multiprocessors() / blocks);
        return want > 8 ? 16 : want > 4 ? 8 : 4;
    }

    /**
     * Dynamic shared memory of the tensor-core kernel: x, scales, zero words, Σx per step (padded),
     * the warps' sums, and each warp's ring of {@code stages} × 512 bytes of weights.
     */
    static int tcShared(int K, int group, int warps, int stages) {
        int G = K / group, S = K / 32;
        return 2 * K + 80 * G + 4 * ((S + 3) & ~3) + 128 * warps + 512 * stages * warps;
    }

    private static int shapeCheck(int K, int N, int group) {
        int gs = group == -1 ? K : group;
        if (N <= 0 || K <= 0 || N % 8 != 0 || gs <= 0 || gs % 32 != 0 || K % gs != 0) {
            throw new IllegalArgumentException("W4A16 GEMV needs N % 8 == 0, a group multiple of 32 and K a multiple"
                    + " of the group; got N = " + N + ", K = " + K + ", group = " + group);
        }
        return gs;
    }

    private static int check(DeviceBuffer qweight, DeviceBuffer qzeros, DeviceBuffer scales, DeviceBuffer x,
                             DeviceBuffer y, int K, int N, int group) {
        int gs = shapeCheck(K, N, group);
        int G = K / gs;
        if (qweight.bytes() < (long) K / 8 * N * 4 || qzeros.bytes() < (long) G * N / 8 * 4
                || scales.bytes() < (long) G * N * 2 || x.bytes() < K * 2L || y.bytes() < N * 4L) {
            throw new IllegalArgumentException("W4A16 GEMV: a buffer is smaller than [K=" + K + ", N=" + N + "] needs");
        }
        return gs;
    }

    private void launchSliced(long qweight, long qzeros, long scales, long x, long y, int K, int N, int gs,
                              boolean v1) {
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
        sliced.launch(colBlocks, slices, RUNS * 64, (32 * span + span + RUNS * COLS) * 4, qweight, qzeros, scales, x,
                y, K, N, gs, v1 ? 1 : 0, partial, tickets);
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
