package dev.shrink.kernels.cuda;

import java.util.HashMap;
import java.util.Map;

/**
 * W4A16 GEMV on a packed 4-bit GPTQ linear resident on the GPU: y[N] = x[K] · dequant(W)ᵀ for one
 * token (decoding), reading each weight byte once. x is fp16, y float32. Groups must be a multiple
 * of 32 input columns (or −1: one group over K), without act-order's column permutation
 * (g = k / group); N a multiple of 8, K of the group.
 *
 * <p>The weights may stay in GPTQ's layout ({@link #gemv}) or be rearranged once into a tiled layout
 * ({@link #tile}, then {@link #gemvTiled}) in which each warp streams one contiguous run of memory.
 *
 * <p>Three kernels of w4a16.cu, where the layout is spelled out. The split kernel ({@link Split}, the
 * default of {@link #gemvTiled}): each warp loads one 32-column tile's slice of 4 or 8 steps (128 or
 * 256 inputs) at once, converts codes to q − z exactly and multiplies them by x on the tensor cores,
 * and adds its sums into y with atomic vector adds (so y = ... first zeroes y, and the order of the
 * additions varies run to run); on an H100 it reads the 7B shapes at 74–92% of a device-to-device
 * copy's rate when y accumulates, 62–87% when y is written (the zeroing is a launch of its own). The tensor-core kernel ({@link Tc}: stages in flight,
 * columns per block, warps, K splits), one K slice by default (deterministic), for the GPTQ layout and
 * for groups the split kernel does not take; and the first, "sliced" kernel (float FMAs, K sliced over
 * blocks with a ticket reduction), kept for comparison in {@link W4a16Bench}. All sum Σ x·q per group
 * in float32 and apply the scale and zero point in float32: no fp16 rounding of the weights.
 */
public final class W4a16Gemv implements AutoCloseable {
    /**
     * A shape of the tensor-core kernel.
     *
     * @param stages steps (4 qweight rows each) of loads in flight per warp
     * @param cols   int4s per thread per step: the block takes 32·cols output columns
     * @param warps  warps per block, splitting the block's K range (1 to 16)
     * @param splits K slices over blocks; above 1 the slices add into y with atomics (accumulate only)
     */
    public record Tc(int stages, int cols, int warps, int splits) {
        @Override
        public String toString() {
            return "u" + stages + " c" + cols + " w" + warps + (splits > 1 ? " k" + splits : "");
        }
    }

    /**
     * A shape of the split kernel (tiled layout only).
     *
     * @param steps steps (32 inputs each) a warp loads at once: 4 or 8
     * @param warps warps per block (1 to 4), on neighbouring tiles of the same K slice
     */
    public record Split(int steps, int warps) {
        @Override
        public String toString() {
            return "split p" + steps + " w" + warps;
        }
    }

    /**
     * How the tensor-core kernel is launched. {@code OFF}: a plain launch (cuLaunchKernel), after the
     * previous kernel on the stream has finished. {@code AFTER_LOADS} and {@code AT_START}: programmatic
     * dependent launch (cuLaunchKernelEx with programmatic stream serialization, Hopper): the kernel's
     * blocks may start while the previous kernel drains, issue their weight loads (which no kernel
     * writes) and wait (griddepcontrol.wait) before reading x or touching y; each block lets the next
     * GEMV start (griddepcontrol.launch_dependents) once it has issued its last weight loads
     * ({@code AFTER_LOADS}) or right after its first ones ({@code AT_START}). The kernel is the same in
     * all three modes. Kernels launched after it without PDL wait for it to finish, as always.
     * In plain launches x is read first, with the scales; under PDL only after the wait.
     * Measured on an H100 (README, W4a16Bench --pdl): back-to-back GEMVs with N ≥ 11008 run 1–7%
     * faster with {@code AT_START} than plain launches did (22016 × 4096: 84% of a copy's rate), 4096 ×
     * 11008 ~7% faster with {@code AFTER_LOADS} but a third slower with {@code AT_START}, and 4096 × 4096
     * slower with both. A decode graph gains nothing, because its other kernels are plain launches.
     */
    public enum Pdl {
        OFF, AFTER_LOADS, AT_START
    }

    /** The tensor-core kernels compiled in w4a16.cu, by (stages, cols). */
    private static final int[][] COMPILED = {{8, 1}, {6, 1}, {4, 1}, {4, 2}, {2, 4}, {4, 4}};
    private static final int COLS = 256, RUNS = 4;
    private final CudaDevice device;
    private final CudaModule module;
    private final CudaKernel sliced, stream, tile;
    private final Map<String, CudaKernel> tc = new HashMap<>();
    /** The split kernels by name: w4a16_gemv_split_p{4,8}_g{1,2,4,0}. */
    private final Map<String, CudaKernel> split = new HashMap<>();
    /** Slices' partial sums [slices, N] and the per-column-block tickets (zero between calls), for the sliced kernel. */
    private DeviceBuffer partial, tickets;
    /** How the tensor-core launches go (see {@link #pdl(Pdl)}); why PDL is unavailable here, or null. */
    private Pdl pdl = Pdl.OFF;
    private final String pdlUnsupported;

    public W4a16Gemv(CudaDevice device) {
        this.device = device;
        module = device.module("w4a16.cu");
        sliced = module.kernel("w4a16_gemv");
        stream = module.kernel("w4a16_probe_stream");
        tile = module.kernel("w4a16_tile");
        for (int[] c : COMPILED) {
            tc.put("w4a16_gemv_tc_u" + c[0] + "_c" + c[1], module.kernel("w4a16_gemv_tc_u" + c[0] + "_c" + c[1]));
        }
        for (int p : new int[] {4, 8}) {
            for (int spg : new int[] {1, 2, 4, 0}) {
                String name = "w4a16_gemv_split_p" + p + "_g" + spg;
                split.put(name, module.kernel(name));
            }
        }
        tc.put("w4a16_probe_u4_c1", module.kernel("w4a16_probe_u4_c1"));
        tc.put("w4a16_probe_u4_c4", module.kernel("w4a16_probe_u4_c4"));
        pdlUnsupported = device.programmaticLaunchUnsupported();
    }

    /**
     * Sets how every later tensor-core launch of this object goes ({@link #gemv}, {@link #gemvTiled}
     * and the shaped form). Where programmatic dependent launch is unavailable (before sm_90, a driver
     * without cuLaunchKernelEx or older than CUDA 12.3) the launches stay plain, and this returns
     * false; {@link #pdlUnsupported} says why.
     */
    public boolean pdl(Pdl mode) {
        pdl = mode == Pdl.OFF || pdlUnsupported == null ? mode : Pdl.OFF;
        return pdl == mode;
    }

    /** The launch mode in use. */
    public Pdl pdl() {
        return pdl;
    }

    /** Why programmatic dependent launch is unavailable on this device, or null when it is available. */
    public String pdlUnsupported() {
        return pdlUnsupported;
    }

    /** The (stages, cols) pairs compiled. */
    public static int[][] compiled() {
        return COMPILED.clone();
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
        gemv(qweight, qzeros, scales, x, y, K, N, group, v1, false);
    }

    /** {@link #gemv}, adding into y (y += x · dequant(W)ᵀ) when {@code accumulate}: a residual stream. */
    public void gemv(DeviceBuffer qweight, DeviceBuffer qzeros, DeviceBuffer scales, DeviceBuffer x, DeviceBuffer y,
                     int K, int N, int group, boolean v1, boolean accumulate) {
        int gs = check(qweight, qzeros, scales, x, y, K, N, group);
        launchTc(defaultTc(N, K), false, false, qweight.address(), qzeros.address(), scales.address(), x.address(),
                y.address(), K, N, gs, v1, accumulate);
    }

    /** {@link #gemv} on device addresses (sizes unchecked beyond the shape) with the default shape. */
    public void gemv(long qweight, long qzeros, long scales, long x, long y, int K, int N, int group, boolean v1,
                     boolean accumulate) {
        launchTc(defaultTc(N, K), false, false, qweight, qzeros, scales, x, y, K, N, shapeCheck(K, N, group), v1,
                accumulate);
    }

    /**
     * The tensor-core kernel in shape {@code c} on device addresses; {@code tiled}: qweight is in the
     * tiled layout ({@link #tile}); {@code probe}: the same loads without the arithmetic (y gets
     * meaningless values: a bandwidth probe).
     */
    public void gemv(Tc c, boolean tiled, boolean probe, long qweight, long qzeros, long scales, long x, long y, int K,
                     int N, int group, boolean v1, boolean accumulate) {
        launchTc(c, tiled, probe, qweight, qzeros, scales, x, y, K, N, shapeCheck(K, N, group), v1, accumulate);
    }

    /** Bytes of qweight [K/8, N] in the tiled layout: ceil(N/32) tiles of K/32 steps of 512 bytes. */
    public static long tiledBytes(int K, int N) {
        return (long) ((N + 31) / 32) * (K / 32) * 512;
    }

    /**
     * Queues the rearrangement of GPTQ qweight [K/8, N] into the tiled layout the GEMV streams
     * fastest (w4a16.cu, w4a16_tile: each warp's weights become one contiguous run); {@code dst}
     * holds {@link #tiledBytes} and is not {@code src}. Done once when a model is loaded.
     */
    public void tile(DeviceBuffer src, DeviceBuffer dst, int K, int N) {
        shapeCheck(K, N, -1);
        if (src.bytes() < (long) K / 8 * N * 4 || dst.bytes() < tiledBytes(K, N) || src == dst) {
            throw new IllegalArgumentException("W4A16 tile: buffers too small for [K=" + K + ", N=" + N + "] or the same");
        }
        device.makeCurrent();
        long units = tiledBytes(K, N) / 16;
        tile.launch((int) Math.min(1 << 16, (units + 255) / 256), 1, 256, 0, src, dst, K, N);
    }

    /**
     * {@link #gemv} on a qweight in the tiled layout ({@link #tile}); device addresses. The fastest form
     * for a model loaded once: the split kernel in {@link #defaultSplit}'s shape where it takes the group
     * ({@link #splitTakes}), else the tensor-core kernel in {@link #defaultTiledTc}'s (one K slice).
     */
    public void gemvTiled(long qweightTiled, long qzeros, long scales, long x, long y, int K, int N, int group,
                          boolean v1, boolean accumulate) {
        int gs = shapeCheck(K, N, group);
        Split s = tiledSplit(N, K, gs);
        if (s != null) {
            launchSplit(s, qweightTiled, qzeros, scales, x, y, K, N, gs, v1, accumulate);
        } else {
            launchTc(defaultTiledTc(N, K), true, false, qweightTiled, qzeros, scales, x, y, K, N, gs, v1, accumulate);
        }
    }

    /** What {@link #gemvTiled} runs for this shape and group: "split p4 w4" or "u4 c1 w16" (the tensor-core kernel). */
    public String describeTiled(int N, int K, int group) {
        Split s = tiledSplit(N, K, shapeCheck(K, N, group));
        return s != null ? s.toString() : defaultTiledTc(N, K).toString();
    }

    /** {@link #gemvTiled}'s choice: the split kernel's default shape where it takes the group, else null. */
    private Split tiledSplit(int N, int K, int gs) {
        Split s = defaultSplit(N, K);
        return splitTakes(s, gs) ? s : null;
    }

    /**
     * The split kernel in shape {@code s} on a qweight in the tiled layout; device addresses. y = ... is
     * a zeroing of y (cuMemsetD32Async) then y += ...
     *
     * @throws IllegalArgumentException where the kernel does not take the group ({@link #splitTakes})
     */
    public void gemvSplit(Split s, long qweightTiled, long qzeros, long scales, long x, long y, int K, int N, int group,
                          boolean v1, boolean accumulate) {
        int gs = shapeCheck(K, N, group);
        if (!splitTakes(s, gs)) {
            throw new IllegalArgumentException("W4A16 GEMV " + s + ": groups of " + gs + " inputs are neither 32, 64 or 128"
                    + " nor a multiple of " + 32 * s.steps());
        }
        launchSplit(s, qweightTiled, qzeros, scales, x, y, K, N, gs, v1, accumulate);
    }

    /**
     * Whether the split kernel in shape {@code s} takes groups of {@code group} inputs (a multiple of 32;
     * K for one group over K): a warp's steps must hold whole groups (32, 64, 128 inputs) or lie within
     * one (groups a multiple of 32·steps inputs).
     */
    public static boolean splitTakes(Split s, int group) {
        int spg = group / 32;
        return (s.steps() == 4 || s.steps() == 8) && (spg == 1 || spg == 2 || spg == 4 || spg % s.steps() == 0);
    }

    /**
     * The split kernel's shape for {@link #gemvTiled}: 4 steps per warp, 4 warps per block, the best or
     * within 1% of the best of the shapes tried on every 7B shape in the microbenchmark on an H100
     * (scripts/microbench, weights rotated over 1 GiB, y +=): 4096 × 4096 5.15 us (73% of a copy's
     * rate), 4096 × 11008 84%, 11008 × 4096 83%, 12288 × 4096 85%, 22016 × 4096 92%. (8 steps per warp
     * measured 62–87% with the same code; the arguments are kept for other GPUs.)
     */
    public Split defaultSplit(int N, int K) {
        return new Split(4, 4);
    }

    private void launchSplit(Split s, long qweight, long qzeros, long scales, long x, long y, int K, int N, int gs,
                             boolean v1, boolean accumulate) {
        if (s.warps() < 1 || s.warps() > 4) {
            throw new IllegalArgumentException("W4A16 GEMV " + s + ": 1 to 4 warps");
        }
        int spg = gs / 32, kspg = spg <= 4 && s.steps() % spg == 0 ? spg : 0;
        CudaKernel k = split.get("w4a16_gemv_split_p" + s.steps() + "_g" + kspg);
        device.makeCurrent();
        if (!accumulate) {
            device.fill32(y, 0, N);
        }
        int tiles = (N + 31) / 32;
        k.launch(pdl != Pdl.OFF, (tiles + s.warps() - 1) / s.warps(), (K / 32 + s.steps() - 1) / s.steps(),
                32 * s.warps(), 0, qweight, qzeros, scales, x, y, K, N, spg, v1 ? 1 : 0);
    }

    /** The first kernel (float FMAs, K slices with a ticket reduction); it writes y. */
    public void gemvSliced(long qweight, long qzeros, long scales, long x, long y, int K, int N, int group,
                           boolean v1) {
        int gs = shapeCheck(K, N, group);
        device.makeCurrent();
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

    /** Bandwidth probe: reads {@code bytes} (a multiple of 16) from {@code p} as one stream, 4 blocks per SM. */
    public void probeStream(long p, long bytes, long sink) {
        device.makeCurrent();
        stream.launch(4 * device.multiprocessors(), 1, 512, 0, p, bytes / 16, sink);
    }

    private void launchTc(Tc c, boolean tiled, boolean probe, long qweight, long qzeros, long scales, long x, long y, int K, int N,
                          int gs, boolean v1, boolean accumulate) {
        if (c.warps() < 1 || c.warps() > 16 || c.splits() < 1 || c.splits() > K / 32) {
            throw new IllegalArgumentException("W4A16 GEMV shape " + c + ": 1 to 16 warps, 1 to K/32 splits");
        }
        if (c.splits() > 1 && !accumulate) {
            throw new IllegalArgumentException("W4A16 GEMV: K split over blocks adds into y; it needs accumulate");
        }
        String name = (probe ? "w4a16_probe_u" : "w4a16_gemv_tc_u") + c.stages() + "_c" + c.cols();
        CudaKernel k = tc.get(name);
        if (k == null) {
            throw new IllegalArgumentException("W4A16 GEMV shape " + c + (probe ? " (probe)" : "") + " is not compiled");
        }
        device.makeCurrent();
        k.launch(pdl != Pdl.OFF, (N + 32 * c.cols() - 1) / (32 * c.cols()), c.splits(), 32 * c.warps(),
                tcShared(K, gs, c), qweight, qzeros, scales, x, y, K, N, gs, v1 ? 1 : 0, accumulate ? 1 : 0,
                tiled ? 1 : 0, pdl.ordinal());
    }

    /**
     * The shape used by {@link #gemvTiled}, one K slice (deterministic, no atomics), from W4a16Bench's
     * sweep on an H100 (7B shapes, tiled layout, graph-timed over rotating weights): while 32-column
     * blocks alone fill the SMs (N ≤ 32·SMs), 32 columns and 16 warps (4096 × 4096: 7.97 us; × 11008:
     * 14.5 us); up to 4× that, 128 columns, 16 warps, 2 stages (12288 × 4096: 13.3 us, 11008 × 4096:
     * 13.1 us); beyond, 64 columns, 8 warps, 4 stages (22016 × 4096: 21.3 us).
     */
    public Tc defaultTiledTc(int N, int K) {
        int blocks = (N + 31) / 32, sms = device.multiprocessors();
        if (blocks <= sms) {
            return new Tc(4, 1, 16, 1);
        }
        return blocks <= 4 * sms ? new Tc(2, 4, 16, 1) : new Tc(4, 2, 8, 1);
    }

    /**
     * The shape used by {@link #gemv} on the GPTQ layout: one K slice (deterministic, no atomics),
     * 32 columns per block, 4 stages in flight, and warps enough that the GPU holds ~16 warps per SM
     * (4 to 16): within a few percent of the best measured for that layout on the 7B shapes.
     */
    public Tc defaultTc(int N, int K) {
        int blocks = (N + 31) / 32;
        int want = (int) Math.ceil(16.0 * device.multiprocessors() / blocks);
        return new Tc(4, 1, want > 8 ? 16 : want > 4 ? 8 : 4, 1);
    }

    /**
     * Dynamic shared memory of the tensor-core kernel in shape {@code c}: for the largest K slice
     * (steps [a, b)), its x, its groups' scales and zero words, Σx per step (padded to 4), the
     * warps' sums, and each warp's ring of stages × cols × 512 bytes.
     */
    static int tcShared(int K, int group, Tc c) {
        int S = K / 32, spg = group / 32, most = 0, mostGroups = 0;
        for (int y = 0; y < c.splits(); y++) {
            int a = (int) ((long) S * y / c.splits()), b = (int) ((long) S * (y + 1) / c.splits());
            most = Math.max(most, b - a);
            if (b > a) {
                mostGroups = Math.max(mostGroups, (b - 1) / spg - a / spg + 1);
            }
        }
        return 64 * most + 80 * c.cols() * mostGroups + 4 * ((most + 3) & ~3) + 128 * c.cols() * c.warps()
                + 512 * c.stages() * c.cols() * c.warps();
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
