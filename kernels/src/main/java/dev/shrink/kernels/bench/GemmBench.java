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
import java.util.Random;
import jdk.incubator.vector.FloatVector;

/**
 * GEMM throughput of {@link VectorOps} (and, once, of {@link ReferenceOps}) in GF/s: square
 * sizes in the NN and NT (linear) layouts and the shapes the model uses. Each case is warmed up,
 * then timed {@code --reps} times (at least 7); it prints the median with the min and max.
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
        System.out.printf("GemmBench: %d cores, vector species %s (%d float lanes), Java %s%n",
                cores, FloatVector.SPECIES_PREFERRED, lanes, Runtime.version());
        System.out.printf("clock: %.0f MHz (%s)%n", mhz, mhzKnown
                ? "\"cpu MHz\" of /proc/cpuinfo; a VM reports the nominal clock, turbo may run faster"
                : "/proc/cpuinfo has no \"cpu MHz\"; ASSUMED");
        System.out.printf("peak estimate: %d cores x %d FMA units x %d lanes x 2 flops x %.3f GHz = %.1f GF/s"
                        + " (%.1f GF/s per core)%n",
                cores, FMA_UNITS, lanes, mhz / 1000, cores * peakPerCore, peakPerCore);
        System.out.println("%peak: of the cores used (threads x per-core peak); %all: of all cores");
        System.out.printf("%-34s %3s %9s %9s %9s %7s %6s%n", "case", "thr", "median", "min", "max", "%peak", "%all");

        List<Shape> shapes = new ArrayList<>();
        for (int s : sizes) {
            shapes.add(new Shape("NN " + s + "^3", false, false, s, s, s));
            shapes.add(new Shape("NT " + s + "^3 (linear layout)", false, true, s, s, s));
        }
        shapes.add(new Shape("linear M=4096 K=384 N=1152", false, true, 4096, 1152, 384));
        shapes.add(new Shape("linear M=4096 K=384 N=8192", false, true, 4096, 8192, 384));
        shapes.add(new Shape("linear M=512 K=64 N=172", false, true, 512, 172, 64));
        shapes.add(new Shape("hessian X^T X K=384 M=4096", true, false, 384, 384, 4096));

        for (Shape shape : shapes) {
            for (int t : threads) {
                Ops ops = new VectorOps(t);
                double[] gf = measure(ops, shape, reps);
                print(shape.label(), t, gf, peakPerCore * Math.min(t, cores), peakPerCore * cores);
            }
        }
        Shape ref = new Shape("reference NN 1024^3 (1 run)", false, false, 1024, 1024, 1024);
        double[] refGf = {timeOnce(new ReferenceOps(), ref, new Problem(ref))};
        print(ref.label(), 1, refGf, peakPerCore, peakPerCore * cores);
    }

    private static void print(String label, int threads, double[] gf, double peakUsed, double peakAll) {
        double[] s = gf.clone();
        Arrays.sort(s);
        double median = s.length % 2 == 1 ? s[s.length / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
        System.out.printf("%-34s %3d %9.1f %9.1f %9.1f %6.0f%% %5.0f%%%n", label, threads, median,
                s[0], s[s.length - 1], 100 * median / peakUsed, 100 * median / peakAll);
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
