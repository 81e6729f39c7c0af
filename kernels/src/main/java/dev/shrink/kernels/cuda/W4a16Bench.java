package dev.shrink.kernels.cuda;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;

/**
 * Bandwidth of {@link W4a16Gemv} on Llama-2-7B's linear shapes (w4 g128, one token) against a
 * device-to-device copy of the same bytes. Both rotate over enough distinct buffers (≥ 1 GiB in
 * all) that the 50 MB L2 cache cannot serve repeats; times from CUDA events over many launches.
 * GEMV bandwidth = bytes read (qweight, qzeros, scales, x) / time; copy bandwidth = bytes read and
 * written (2 × the same bytes) / time, the DRAM traffic of a copy. The GPU times are taken behind
 * a stall kernel ({@link DeviceOps#stall}), so that all launches are queued before the first runs
 * and the events measure the GPU alone; the "from Java" column is the plain rate of launching from
 * this thread, one call after another (bound by the host's launch cost for small shapes). Prints
 * a table and a {@code RESULT|w4a16 NxK|...} line per shape for scripts/device-bench.sh. A
 * benchmark, not a test.
 *
 * <pre>java -cp 'lib/*' dev.shrink.kernels.cuda.W4a16Bench</pre>
 */
public final class W4a16Bench {
    /** Launches timed behind one stall (a few dozen: the driver queues only so many before the host blocks). */
    private static final int GPU_REPS = 48;

    private W4a16Bench() {
    }

    public static void main(String[] args) {
        int[][] shapes = {{4096, 4096}, {11008, 4096}, {4096, 11008}}; // N, K: q/k/v/o, gate/up, down
        int group = 128;
        try (CudaOps ops = CudaOps.open(0); W4a16Gemv g = new W4a16Gemv(ops.device())) {
            CudaDevice dev = ops.device();
            System.out.printf(Locale.ROOT, "W4A16 GEMV on %s, w4 g%d, one token; buffers rotated over >= 1 GiB%n",
                    dev.describe(), group);
            System.out.printf(Locale.ROOT, "%-16s %7s %9s %10s %9s %10s %7s %14s%n", "shape N x K", "MB", "gemv us",
                    "gemv GB/s", "copy us", "copy GB/s", "ratio", "from Java us");
            for (int[] s : shapes) {
                run(ops.deviceOps(), g, s[0], s[1], group);
            }
        }
    }

    private static void run(DeviceOps ops, W4a16Gemv g, int N, int K, int group) {
        CudaDevice dev = ops.device();
        int G = K / group;
        long qw = (long) K / 8 * N * 4, qz = (long) G * N / 8 * 4, sc = (long) G * N * 2, xb = K * 2L;
        long bytes = qw + qz + sc + xb;
        int sets = (int) Math.max(2, (1L << 30) / bytes + 1);
        List<DeviceBuffer[]> bufs = new ArrayList<>();
        SplittableRandom r = new SplittableRandom(N * 31L + K);
        try (DeviceBuffer x = dev.alloc(xb); DeviceBuffer y = dev.alloc(N * 4L)) {
            short[] xh = new short[K];
            for (int k = 0; k < K; k++) {
                xh[k] = Float.floatToFloat16((float) r.nextGaussian());
            }
            dev.upload(MemorySegment.ofArray(xh), x, 0);
            int[] words = new int[(int) (qw / 4)];
            short[] scales = new short[G * N];
            for (int i = 0; i < scales.length; i++) {
                scales[i] = Float.floatToFloat16(0.01f + 0.001f * (i % 7));
            }
            int[] zeros = new int[G * N / 8];
            for (int i = 0; i < zeros.length; i++) {
                zeros[i] = 0x77777777;
            }
            for (int i = 0; i < sets; i++) {
                for (int w = 0; w < words.length; w++) {
                    words[w] = r.nextInt();
                }
                DeviceBuffer a = dev.alloc(qw), b = dev.alloc(qz), c = dev.alloc(sc), d = dev.alloc(bytes);
                dev.upload(MemorySegment.ofArray(words), a, 0);
                dev.upload(MemorySegment.ofArray(zeros), b, 0);
                dev.upload(MemorySegment.ofArray(scales), c, 0);
                bufs.add(new DeviceBuffer[] {a, b, c, d});
            }
            int reps = Math.max(200, 2 * sets);
            Step gemvStep = i -> {
                DeviceBuffer[] s = bufs.get(i % sets);
                g.gemv(s[0], s[1], s[2], x, y, K, N, group, true);
            };
            Step copyStep = i -> {
                DeviceBuffer[] s = bufs.get(i % sets), t = bufs.get((i + 1) % sets);
                dev.copy(s[3], 0, t[3], 0, bytes); // different source and destination buffers
            };
            double javaUs = time(ops, reps, gemvStep, false);
            // behind the stall, few enough launches that all fit the driver's queue before it ends
            double gemvUs = time(ops, GPU_REPS, gemvStep, true);
            double copyUs = time(ops, GPU_REPS, copyStep, true);
            double gemvGBs = bytes / gemvUs / 1e3, copyGBs = 2.0 * bytes / copyUs / 1e3;
            String shape = N + " x " + K;
            System.out.printf(Locale.ROOT, "%-16s %7.1f %9.2f %10.0f %9.2f %10.0f %6.0f%% %14.1f%n", shape, bytes / 1e6,
                    gemvUs, gemvGBs, copyUs, copyGBs, 100 * gemvGBs / copyGBs, javaUs);
            System.out.printf(Locale.ROOT, "RESULT|w4a16 %s|%.2f|%.0f|%.0f|%.0f|%.1f%n", shape, gemvUs, gemvGBs, copyGBs,
                    100 * gemvGBs / copyGBs, javaUs);
        } finally {
            for (DeviceBuffer[] s : bufs) {
                for (DeviceBuffer b : s) {
                    b.close();
                }
            }
        }
    }

    @FunctionalInterface
    private interface Step {
        void run(int i);
    }

    /**
     * Microseconds per step: a warm-up pass, then {@code reps} steps between two events; with
     * {@code gpuOnly} behind a stall long enough for all of them to be queued first.
     */
    private static double time(DeviceOps ops, int reps, Step step, boolean gpuOnly) {
        CudaDevice dev = ops.device();
        for (int i = 0; i < Math.max(reps / 2, 100); i++) {
            step.run(i);
        }
        dev.synchronize();
        try (CudaEvent a = dev.event(); CudaEvent b = dev.event()) {
            if (gpuOnly) {
                ops.stall(reps * 200_000L); // 200 us of queueing time per step
            }
            a.record();
            for (int i = 0; i < reps; i++) {
                step.run(i);
            }
            b.record();
            return b.millisSince(a) * 1e3 / reps;
        }
    }
}
