package dev.shrink.kernels.bench;

import dev.shrink.core.ops.Ops;
import dev.shrink.kernels.cpu.ReferenceOps;
import dev.shrink.kernels.cpu.VectorOps;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.TreeMap;
import jdk.incubator.vector.FloatVector;

/**
 * GEMM throughput of {@link VectorOps} (and, once, of {@link ReferenceOps}) in GF/s: square
 * sizes in the NN and NT (linear) layouts and the shapes the model uses. Each case is warmed up
 * for a second, then timed {@code --reps} times (at least 7); it prints the median with the min
 * and max, and the median as a share of the machine's peak: from the /proc/cpuinfo clock as
 * asked, and from the clock measured while running (VMs report their nominal clock).
 *
 * <pre>
 * java --add-modules jdk.incubator.vector -cp kernels/target/classes:core/target/classes \
 *      dev.shrink.kernels.bench.GemmBench [--threads 1,2] [--sizes 1024,2048,4096] [--reps 7]
 * </pre>
 */
public final class GemmBench {
    /** FMA pipes per core assumed by the peak estimate (Zen 3/4 and Intel server cores have 2). */
    private static final int FMA_UNITS = 2;
    /** Minimum time spent warming up one case. */
    private static final long WARMUP_NANOS = 1_000_000_000L;

    private GemmBench() {
    }

    /** One GEMM problem: C[M, N] = op(A) · op(B) with op(A): [M, K], op(B): [K, N]. */
    private record Shape(String label, boolean transA, boolean transB, int M, int N, int K) {
        double flops() {
            return 2.0 * M * N * K;
        }
    }

    public static void main(String[] args) {
        int[] threads = {1, 2};
        int[] sizes = {1024, 2048, 4096};
        int reps = 7;
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--threads" -> threads = parseInts(args[++i]);
                case "--sizes" -> sizes = parseInts(args[++i]);
                case "--reps" -> reps = Math.max(7, Integer.parseInt(args[++i]));
                default -> {
                    System.err.println("usage: GemmBench [--threads 1,2] [--sizes 1024,2048,4096] [--reps 7]");
                    System.exit(2);
                }
            }
        }

        int cores = Runtime.getRuntime().availableProcessors();
        int lanes = FloatVector.SPECIES_PREFERRED.length();
        double mhz = cpuMhz();
        boolean mhzKnown = !Double.isNaN(mhz);
        if (!mhzKnown) {
            mhz = 3000;
        }
        double peakPerCore = FMA_UNITS * lanes * 2 * mhz / 1000.0; // GF/s
        double measuredMhz = measureMhz();
        double measuredPeakPerCore = FMA_UNITS * lanes * 2 * measuredMhz / 1000.0;
        System.out.printf("GemmBench: %d cores, vector species %s (%d float lanes), Java %s%n",
                cores, FloatVector.SPECIES_PREFERRED, lanes, Runtime.version());
        System.out.printf("clock: %.0f MHz (%s)%n", mhz, mhzKnown
                ? "\"cpu MHz\" of /proc/cpuinfo; in a VM this is the nominal clock"
                : "/proc/cpuinfo has no \"cpu MHz\": ASSUMED");
        System.out.printf("peak estimate: %d cores x %d FMA units x %d lanes x 2 flops x %.3f GHz = %.1f GF/s"
                        + " (%.1f GF/s per core)%n",
                cores, FMA_UNITS, lanes, mhz / 1000, cores * peakPerCore, peakPerCore);
        System.out.printf("measured clock: %.0f MHz (a dependent chain of scalar FMAs, assuming 4 cycles each)"
                        + " -> peak %.1f GF/s per core, %.1f GF/s for %d cores%n",
                measuredMhz, measuredPeakPerCore, cores * measuredPeakPerCore, cores);
        System.out.println("load average at start: " + loadAverage() + " (other processes on these cores skew the numbers)");
        System.out.println("%all: of the peak estimate above (all cores, /proc/cpuinfo clock);"
                + " %used: of the cores used at the measured clock");
        System.out.printf("%-34s %3s %9s %9s %9s %6s %6s%n", "case (GF/s)", "thr", "median", "min", "max", "%all", "%used");

        List<Shape> shapes = new ArrayList<>();
        for (int s : sizes) {
            shapes.add(new Shape("NN " + s + "^3", false, false, s, s, s));
            shapes.add(new Shape("NT " + s + "^3 (linear layout)", false, true, s, s, s));
        }
        shapes.add(new Shape("linear M=4096 K=384 N=1152", false, true, 4096, 1152, 384));
        shapes.add(new Shape("linear M=4096 K=384 N=8192", false, true, 4096, 8192, 384));
        shapes.add(new Shape("linear M=512 K=64 N=172", false, true, 512, 172, 64));
        shapes.add(new Shape("hessian X^T X K=384 M=4096", true, false, 384, 384, 4096));

        Map<Integer, Ops> backends = new TreeMap<>();
        for (int t : threads) {
            backends.put(t, new VectorOps(t));
        }
        for (Shape shape : shapes) {
            for (int t : threads) {
                double[] gf = measure(backends.get(t), shape, reps);
                print(shape.label(), t, gf, peakPerCore * cores, measuredPeakPerCore * Math.min(t, cores));
            }
        }
        Shape ref = new Shape("reference NN 1024^3 (1 run)", false, false, 1024, 1024, 1024);
        double[] refGf = {timeOnce(new ReferenceOps(), ref, new Problem(ref))};
        print(ref.label(), 1, refGf, peakPerCore * cores, measuredPeakPerCore);
        System.out.println("load average at end: " + loadAverage());
    }

    /** The 1, 5 and 15 minute load averages of /proc/loadavg, or "unknown". */
    private static String loadAverage() {
        try {
            String[] f = Files.readString(Path.of("/proc/loadavg")).trim().split("\\s+");
            return f[0] + " " + f[1] + " " + f[2];
        } catch (IOException | RuntimeException e) {
            return "unknown";
        }
    }

    private static void print(String label, int threads, double[] gf, double peakAll, double peakUsed) {
        double[] s = gf.clone();
        Arrays.sort(s);
        double median = s.length % 2 == 1 ? s[s.length / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
        System.out.printf("%-34s %3d %9.1f %9.1f %9.1f %5.0f%% %5.0f%%%n", label, threads, median,
                s[0], s[s.length - 1], 100 * median / peakAll, 100 * median / peakUsed);
    }

    /** Random operands of one shape, stored as the transpose flags say. */
    private static final class Problem {
        final float[] a, b, c;
        final int lda, ldb;

        Problem(Shape s) {
            Random rnd = new Random(42);
            a = random(rnd, (long) s.M() * s.K());
            b = random(rnd, (long) s.K() * s.N());
            c = new float[s.M() * s.N()];
            lda = s.transA() ? s.M() : s.K();
            ldb = s.transB() ? s.K() : s.N();
        }

        private static float[] random(Random rnd, long n) {
            float[] x = new float[Math.toIntExact(n)];
            for (int i = 0; i < x.length; i++) {
                x[i] = rnd.nextFloat() * 2 - 1;
            }
            return x;
        }
    }

    /** Warms up for about a second, then returns the GF/s of {@code reps} timed runs. */
    private static double[] measure(Ops ops, Shape s, int reps) {
        Problem p = new Problem(s);
        long warmEnd = System.nanoTime() + WARMUP_NANOS;
        int warm = 0;
        while (warm < 2 || System.nanoTime() < warmEnd) {
            timeOnce(ops, s, p);
            warm++;
        }
        double[] gf = new double[reps];
        for (int r = 0; r < reps; r++) {
            gf[r] = timeOnce(ops, s, p);
        }
        return gf;
    }

    private static double timeOnce(Ops ops, Shape s, Problem p) {
        long t0 = System.nanoTime();
        ops.gemm(s.transA(), s.transB(), s.M(), s.N(), s.K(), 1f, p.a, 0, p.lda, p.b, 0, p.ldb, 0f, p.c, 0, s.N());
        long t1 = System.nanoTime();
        return s.flops() / (t1 - t0); // flops per ns = GF/s
    }

    /**
     * The clock while running, in MHz: the time of a chain of dependent scalar FMAs, each of which
     * takes 4 cycles on current x86 cores (Zen 2-4, Skylake and later). Best of a few tries.
     */
    private static double measureMhz() {
        long n = 50_000_000L;
        double best = 0, sink = 0;
        for (int r = 0; r < 5; r++) {
            long t0 = System.nanoTime();
            sink += fmaChain(n, 1.0 + r);
            long t1 = System.nanoTime();
            best = Math.max(best, 4.0 * n / (t1 - t0) * 1000);
        }
        return sink == 42 ? best + 1 : best; // keep the chain alive
    }

    private static double fmaChain(long n, double d) {
        for (long i = 0; i < n; i++) {
            d = Math.fma(d, 0.9999999, 1e-9);
        }
        return d;
    }

    /** The first "cpu MHz" line of /proc/cpuinfo, or NaN. */
    private static double cpuMhz() {
        try {
            for (String line : Files.readAllLines(Path.of("/proc/cpuinfo"))) {
                if (line.startsWith("cpu MHz")) {
                    return Double.parseDouble(line.substring(line.indexOf(':') + 1).trim());
                }
            }
        } catch (IOException | RuntimeException e) {
            return Double.NaN;
        }
        return Double.NaN;
    }

    private static int[] parseInts(String csv) {
        return Arrays.stream(csv.split(",")).map(String::trim).filter(x -> !x.isEmpty())
                .mapToInt(Integer::parseInt).toArray();
    }
}
