package dev.shrink.kernels.cuda;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;

/**
 * Bandwidth of {@link W4a16Gemv} on Llama-2-7B's linear shapes (w4 g128, one token) against a
 * device-to-device copy of the same bytes, measured so that neither launch latency nor the L2
 * cache decides the result:
 * <ul>
 * <li>each GEMV (and each copy) reads a different weight set, rotating over sets that add up to
 *     ≥ 1 GiB (20× the 50 MB L2), so every byte comes from DRAM;</li>
 * <li>R launches back to back are captured once into a CUDA graph, and each replay of the graph is
 *     timed with events: the GPU's own time per launch, with the gaps a decode loop would also
 *     have between kernels but none of the host's launch cost; 9 replays give a median and the
 *     spread (min–max).</li>
 * </ul>
 * GEMV bandwidth = bytes read (qweight, qzeros, scales, x) / time; copy bandwidth = bytes read
 * and written (2 × the same bytes) / time, the DRAM traffic of a copy. Two more columns explain
 * the rest: "1 launch" (one GEMV alone between two events: what a lone launch costs end to end)
 * and "L2-hot" (the same weights every launch: what the GPU does when L2 holds them). Every kernel
 * variant is timed (the first, FMA kernel with its K-sliced ticket reduction, the tensor-core
 * kernel at several warps per block, and the split kernel, "+=" adding into y and "=" writing it after
 * a zeroing of y). Shapes include the fused q|k|v (12288 × 4096) and gate|up
 * (22016 × 4096) products; "T" marks the tiled weight layout ({@link W4a16Gemv#tile}), "probe" the
 * kernel's loads without its arithmetic, "read stream" a plain linear read of the same bytes. Prints a table and {@code RESULT|w4a16 ...} lines for
 * scripts/device-bench.sh. A benchmark, not a test.
 *
 * <p>Programmatic dependent launch ({@link W4a16Gemv.Pdl}): the default tiled shape of every shape is
 * also timed with the GEMVs launched programmatically (each may start while the one before drains),
 * trigger after the loads ("pdl") and at the start ("pdl@start"): the three graphs are replayed in
 * turn in one loop (plain, pdl, pdl@start, plain, ...), so that drift hits all three alike, and a
 * table puts them side by side. {@code --pdl} times only that (with the copy and the read stream).
 *
 * <pre>java -cp 'lib/*' dev.shrink.kernels.cuda.W4a16Bench [--pdl]</pre>
 */
public final class W4a16Bench {
    private static final int TRIALS = 9;
    private static final int GROUP = 128;

    private W4a16Bench() {
    }

    /** One weight set: qweight | qzeros | scales in one allocation (256-byte aligned parts), and a copy target. */
    private record WSet(DeviceBuffer buf, DeviceBuffer dst, DeviceBuffer tiled) {
    }

    /**
     * tc and split null: the sliced kernel; split: the split kernel (tiled), adding into y ({@code acc})
     * or writing it (a zeroing first); tc: the tensor-core kernel (adding into y where it splits K).
     */
    private record Variant(String label, W4a16Gemv.Tc tc, W4a16Gemv.Split split, boolean acc, boolean probe,
                           boolean tiled) {
        Variant(String label, W4a16Gemv.Tc tc, boolean probe, boolean tiled) {
            this(label, tc, null, tc != null && tc.splits() > 1, probe, tiled);
        }
    }

    private static void report(String shape, String label, long bytes, double[] us, double copyGBs, double one,
                               double hot) {
        double gbs = bytes / median(us) / 1e3;
        System.out.printf(Locale.ROOT, "%-14s %-16s %6.1f %24s %8.0f %10s %6.0f%% %9.2f %9.2f%n", shape, label,
                bytes / 1e6, spread(us), gbs, "", 100 * gbs / copyGBs, one, hot);
        System.out.printf(Locale.ROOT, "RESULT|w4a16 %s|%s|%.2f|%.2f|%.2f|%.0f|%.0f|%.0f|%.2f|%.2f%n", shape, label,
                median(us), min(us), max(us), gbs, copyGBs, 100 * gbs / copyGBs, one, hot);
    }

    public static void main(String[] args) {
        boolean pdlOnly = false;
        for (String a : args) {
            if (a.equals("--pdl")) {
                pdlOnly = true;
            } else {
                System.err.println("W4a16Bench: unknown option " + a + " (--pdl: only the default tiled shape, with and"
                        + " without programmatic dependent launch)");
                System.exit(2);
            }
        }
        int[][] shapes = {{4096, 4096}, {12288, 4096}, {11008, 4096}, {22016, 4096}, {4096, 11008}}; // N, K
        try (CudaOps ops = CudaOps.open(0); W4a16Gemv g = new W4a16Gemv(ops.device());
             CudaModule fills = ops.device().module("decode.cu")) {
            CudaDevice dev = ops.device();
            System.out.printf(Locale.ROOT, "W4A16 GEMV on %s (%d SMs), w4 g%d, one token; weights rotated over >= 1 GiB;"
                    + " graph of back-to-back launches, %d replays: median [min-max]%n", dev.describe(),
                    dev.multiprocessors(), GROUP, TRIALS);
            System.out.printf(Locale.ROOT, "%-14s %-16s %6s %24s %8s %10s %7s %9s %9s%n", "shape N x K", "kernel", "MB",
                    "us per launch", "GB/s", "copy GB/s", "of copy", "1 launch", "L2-hot");
            String why = g.pdlUnsupported();
            if (why != null) {
                System.out.println("programmatic dependent launch unavailable (" + why + "): the pdl rows are plain launches");
            }
            List<String> pdlRows = new ArrayList<>();
            for (int[] s : shapes) {
                run(ops.deviceOps(), g, fills, s[0], s[1], pdlOnly, pdlRows);
            }
            System.out.println();
            System.out.println("W4A16 GEMV, default tiled shape, plain launch vs programmatic dependent launch"
                    + " (graph replays interleaved; us per launch median [min-max], GB/s, % of the d2d copy's GB/s)");
            System.out.printf(Locale.ROOT, "%-14s %-16s %-34s %-34s %-34s%n", "shape N x K", "kernel", "plain",
                    "pdl (trigger after loads)", "pdl@start (trigger at start)");
            pdlRows.forEach(System.out::println);
        }
    }

    private static void run(DeviceOps ops, W4a16Gemv g, CudaModule fills, int N, int K, boolean pdlOnly,
                            List<String> pdlRows) {
        CudaDevice dev = ops.device();
        int G = K / GROUP;
        long qw = (long) K / 8 * N * 4, qz = (long) G * N / 8 * 4, sc = (long) G * N * 2, xb = K * 2L;
        long qwA = align(qw), qzA = align(qz);
        long bytes = qw + qz + sc + xb;              // what one GEMV reads
        long setBytes = qwA + qzA + sc;
        int sets = (int) Math.max(4, (1L << 30) / setBytes + 1);
        List<WSet> ws = new ArrayList<>();
        CudaKernel fu = fills.kernel("fill_u32"), fh = fills.kernel("fill_f16");
        try (DeviceBuffer x = dev.alloc(xb); DeviceBuffer y = dev.alloc(N * 4L)) {
            fh.launch(blocks(K), 1, 256, 0, x, (long) K, 7, -1f, 1f);
            for (int i = 0; i < sets; i++) {
                DeviceBuffer b = dev.alloc(setBytes), d = dev.alloc(setBytes);
                fu.launch(blocks(qw / 4), 1, 256, 0, b, qw / 4, 1000 + i);
                fu.launch(blocks(qz / 4), 1, 256, 0, b.address() + qwA, qz / 4, 5000 + i);
                fh.launch(blocks(sc / 2), 1, 256, 0, b.address() + qwA + qzA, sc / 2, 9000 + i, 0.005f, 0.02f);
                DeviceBuffer tq = dev.alloc(W4a16Gemv.tiledBytes(K, N));
                g.tile(b, tq, K, N);
                ws.add(new WSet(b, d, tq));
            }
            dev.synchronize();
            int reps = Math.min(512, Math.max(64, 2 * sets));
            // the copy: set i's weights to set i+1's target (different source and destination each time)
            double[] copyUs = graphTime(dev, reps, i -> {
                WSet s = ws.get(i % sets), t = ws.get((i + 1) % sets);
                dev.copy(s.buf(), 0, t.dst(), 0, setBytes);
            });
            double copyGBs = 2.0 * setBytes / median(copyUs) / 1e3;
            String shape = N + " x " + K;
            System.out.printf(Locale.ROOT, "%-14s %-16s %6.1f %24s %8s %10.0f %7s%n", shape, "d2d copy", setBytes / 1e6,
                    spread(copyUs), "", copyGBs, "");
            System.out.printf(Locale.ROOT, "RESULT|w4a16 %s|d2d copy|%.2f|%.2f|%.2f|%.0f|%.0f|100|-|-%n", shape,
                    median(copyUs), min(copyUs), max(copyUs), copyGBs, copyGBs);
            // a plain read stream of the same bytes (read GB/s: the most a reader can hope for)
            long sink = y.address();
            double[] streamUs = graphTime(dev, reps, i -> g.probeStream(ws.get(i % sets).buf().address(), setBytes / 16 * 16,
                    sink));
            report(shape, "read stream", setBytes, streamUs, copyGBs, Double.NaN, Double.NaN);
            List<W4a16Gemv.Tc> shapes = new ArrayList<>();
            for (int[] c : W4a16Gemv.compiled()) {
                for (int w : new int[] {4, 8, 16}) {
                    for (int k : new int[] {1, 2, 4}) {
                        int blocks = (N + 32 * c[1] - 1) / (32 * c[1]);
                        if (k == 1 || blocks * k <= 4 * dev.multiprocessors()) {
                            shapes.add(new W4a16Gemv.Tc(c[0], c[1], w, k));
                        }
                    }
                }
            }
            W4a16Gemv.Tc def = g.defaultTc(N, K), defT = g.defaultTiledTc(N, K);
            List<Variant> variants = new ArrayList<>();
            variants.add(new Variant("sliced (first)", null, false, false));
            variants.add(new Variant("probe u4 c1 w8", new W4a16Gemv.Tc(4, 1, 8, 1), true, false));
            variants.add(new Variant("probe u4 c1 w8 T", new W4a16Gemv.Tc(4, 1, 8, 1), true, true));
            variants.add(new Variant("probe u4 c4 w8 k2", new W4a16Gemv.Tc(4, 4, 8, 2), true, false));
            for (W4a16Gemv.Tc c : shapes) {
                variants.add(new Variant(c.toString(), c, false, false));
                variants.add(new Variant(c + " T", c, false, true));
            }
            variants.add(new Variant("default " + def, def, false, false));
            variants.add(new Variant("tc default " + defT + " T", defT, false, true));
            for (W4a16Gemv.Split sp : new W4a16Gemv.Split[] {new W4a16Gemv.Split(4, 4), new W4a16Gemv.Split(8, 2),
                    new W4a16Gemv.Split(8, 4), new W4a16Gemv.Split(4, 2)}) {
                variants.add(new Variant(sp + " T +=", null, sp, true, false, true));
                variants.add(new Variant(sp + " T =", null, sp, false, false, true));
            }
            variants.add(new Variant("default " + g.describeTiled(N, K, GROUP) + " T +=", null, null, true, false, true));
            variants.add(new Variant("default " + g.describeTiled(N, K, GROUP) + " T =", null, null, false, false, true));
            if (pdlOnly) {
                variants.clear();
            }
            for (Variant v : variants) {
                boolean acc = v.acc();
                Step gemv = i -> {
                    WSet s = ws.get(i % sets);
                    long b = s.buf().address();
                    if (v.split() != null) {
                        g.gemvSplit(v.split(), s.tiled().address(), b + qwA, b + qwA + qzA, x.address(), y.address(), K, N,
                                GROUP, true, acc);
                    } else if (v.tc() == null && v.tiled()) {
                        g.gemvTiled(s.tiled().address(), b + qwA, b + qwA + qzA, x.address(), y.address(), K, N, GROUP,
                                true, acc);
                    } else if (v.tc() == null) {
                        g.gemvSliced(b, b + qwA, b + qwA + qzA, x.address(), y.address(), K, N, GROUP, true);
                    } else {
                        g.gemv(v.tc(), v.tiled(), v.probe(), v.tiled() ? s.tiled().address() : b, b + qwA,
                                b + qwA + qzA, x.address(), y.address(), K, N, GROUP, true, acc);
                    }
                };
                double[] us = graphTime(dev, reps, gemv);
                double one = oneLaunch(dev, gemv, sets);
                double[] hot = graphTime(dev, 64, i -> gemv.run(0));
                report(shape, v.label(), bytes, us, copyGBs, one, median(hot));
            }
            // the default tiled shape, plain vs programmatic launches: three graphs replayed in turn
            W4a16Gemv.Pdl[] modes = W4a16Gemv.Pdl.values();
            List<Step> steps = new ArrayList<>();
            for (W4a16Gemv.Pdl m : modes) {
                steps.add(i -> {
                    WSet s = ws.get(i % sets);
                    long b = s.buf().address();
                    W4a16Gemv.Pdl old = g.pdl();
                    g.pdl(m);
                    try {   // y += (a residual stream: no zeroing between the GEMVs)
                        g.gemvTiled(s.tiled().address(), b + qwA, b + qwA + qzA, x.address(), y.address(), K, N, GROUP,
                                true, true);
                    } finally {
                        g.pdl(old);
                    }
                });
            }
            double[][] us = graphTimeInterleaved(dev, reps, steps);
            String defName = g.describeTiled(N, K, GROUP);
            StringBuilder row = new StringBuilder(String.format(Locale.ROOT, "%-14s %-16s", shape, defName + " T +="));
            for (int m = 0; m < modes.length; m++) {
                String label = "default " + defName + " T +=" + (m == 0 ? " plain" : m == 1 ? " pdl" : " pdl@start");
                double gbs = bytes / median(us[m]) / 1e3;
                report(shape, label, bytes, us[m], copyGBs, Double.NaN, Double.NaN);
                row.append(String.format(Locale.ROOT, " %-34s", spread(us[m]) + String.format(Locale.ROOT, " %4.0f %3.0f%%",
                        gbs, 100 * gbs / copyGBs)));
            }
            pdlRows.add(row.toString());
        } finally {
            for (WSet s : ws) {
                s.buf().close();
                s.dst().close();
                s.tiled().close();
            }
        }
    }

    @FunctionalInterface
    interface Step {
        void run(int i);
    }

    /**
     * Microseconds per step: {@code reps} steps captured into one graph, replayed {@link #TRIALS}
     * times after a warm-up replay, each replay timed by events; one value per replay.
     */
    static double[] graphTime(CudaDevice dev, int reps, Step step) {
        step.run(0); // lazy set-up (workspaces) outside the capture
        dev.synchronize();
        try (CudaGraph graph = CudaGraph.capture(dev, () -> {
            for (int i = 0; i < reps; i++) {
                step.run(i);
            }
        }); CudaEvent a = dev.event(); CudaEvent b = dev.event()) {
            graph.launch();
            dev.synchronize();
            double[] us = new double[TRIALS];
            for (int t = 0; t < TRIALS; t++) {
                a.record();
                graph.launch();
                b.record();
                us[t] = b.millisSince(a) * 1e3 / reps;
            }
            return us;
        }
    }

    /**
     * {@link #graphTime} for several steps at once: each captured into its own graph, then the graphs
     * replayed in turn ({@link #TRIALS} rounds after a warm-up round), each replay timed; [step][round].
     */
    static double[][] graphTimeInterleaved(CudaDevice dev, int reps, List<Step> steps) {
        List<CudaGraph> graphs = new ArrayList<>();
        try (CudaEvent a = dev.event(); CudaEvent b = dev.event()) {
            for (Step step : steps) {
                step.run(0);
                dev.synchronize();
                graphs.add(CudaGraph.capture(dev, () -> {
                    for (int i = 0; i < reps; i++) {
                        step.run(i);
                    }
                }));
            }
            for (CudaGraph gr : graphs) {
                gr.launch();
            }
            dev.synchronize();
            double[][] us = new double[steps.size()][TRIALS];
            for (int t = 0; t < TRIALS; t++) {
                for (int k = 0; k < graphs.size(); k++) {
                    a.record();
                    graphs.get(k).launch();
                    b.record();
                    us[k][t] = b.millisSince(a) * 1e3 / reps;
                }
            }
            return us;
        } finally {
            for (CudaGraph gr : graphs) {
                gr.close();
            }
        }
    }

    /** Median over 21 single launches (each on a different weight set) of the time between two events around it. */
    private static double oneLaunch(CudaDevice dev, Step step, int sets) {
        double[] us = new double[21];
        try (CudaEvent a = dev.event(); CudaEvent b = dev.event()) {
            for (int t = 0; t < us.length; t++) {
                dev.synchronize();
                a.record();
                step.run((t * 7 + 3) % sets);
                b.record();
                us[t] = b.millisSince(a) * 1e3;
            }
        }
        return median(us);
    }

    static double median(double[] v) {
        double[] s = v.clone();
        Arrays.sort(s);
        return s.length % 2 == 1 ? s[s.length / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
    }

    static double min(double[] v) {
        return Arrays.stream(v).min().orElse(Double.NaN);
    }

    static double max(double[] v) {
        return Arrays.stream(v).max().orElse(Double.NaN);
    }

    /** "12.34 [12.10-12.80]". */
    static String spread(double[] v) {
        return String.format(Locale.ROOT, "%.2f [%.2f-%.2f]", median(v), min(v), max(v));
    }

    private static long align(long b) {
        return (b + 255) & ~255L;
    }

    static int blocks(long n) {
        return (int) Math.max(1, Math.min(1L << 16, (n + 255) / 256));
    }
}
