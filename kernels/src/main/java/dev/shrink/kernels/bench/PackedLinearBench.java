package dev.shrink.kernels.bench;

import dev.shrink.core.quant.QuantizedLinear;
import dev.shrink.kernels.cpu.DenseLinear;
import dev.shrink.kernels.cpu.PackedLinear;
import dev.shrink.kernels.cpu.VectorOps;
import dev.shrink.kernels.cpu.WorkerPool;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import jdk.incubator.vector.FloatVector;

/**
 * {@link PackedLinear} (4-bit, kept packed) against the float32 linear of {@link VectorOps} on the
 * same weights dequantized, side by side: each repetition times one packed and one float32 product
 * back to back, so the per-repetition ratio sees the same machine load. Prints the median, min and
 * max time of each, and the median (min, max) of the per-repetition ratios float32 / packed (above
 * 1: packed is faster). Shapes: the fixture's linears (hidden 384, intermediate 1024) and 4096 × 4096, at
 * M = 1 (decoding) and M = 512 (prefill, perplexity windows); group 128, asymmetric zeros.
 * With {@code --dense}: {@link DenseLinear} (float32 laid out once) in place of the packed linear,
 * against the same float32 linear on the same weights (no act-order shape: it has no g_idx).
 *
 * <pre>
 * java --add-modules jdk.incubator.vector -cp kernels/target/classes:core/target/classes \
 *      dev.shrink.kernels.bench.PackedLinearBench [--dense] [--threads 2] [--reps 15] [--ms 1,512] [--only 4096]
 * </pre>
 */
public final class PackedLinearBench {
    private static final long WARMUP_NANOS = 1_000_000_000L;

    private PackedLinearBench() {
    }

    private record Shape(String label, int N, int K, boolean actOrder) {
    }

    public static void main(String[] args) {
        int threads = 2, reps = 15;
        int[] ms = {1, 512};
        String only = "";
        boolean dense = false;
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--threads" -> threads = Integer.parseInt(args[++i]);
                case "--reps" -> reps = Math.max(5, Integer.parseInt(args[++i]));
                case "--ms" -> ms = Arrays.stream(args[++i].split(",")).mapToInt(Integer::parseInt).toArray();
                case "--only" -> only = args[++i];
                case "--dense" -> dense = true;
                default -> {
                    System.err.println("usage: PackedLinearBench [--dense] [--threads 2] [--reps 15] [--ms 1,512] [--only LABEL-PART]");
                    System.exit(2);
                }
            }
        }
        List<Shape> shapes = new ArrayList<>(List.of(
                new Shape("q/k/v/o 384x384", 384, 384, false),
                new Shape("gate/up 1024x384", 1024, 384, false),
                new Shape("down 384x1024", 384, 1024, false),
                new Shape("4096x4096", 4096, 4096, false),
                new Shape("4096x4096 act-order", 4096, 4096, true)));
        System.out.printf("PackedLinearBench: %d threads, %d cores, vector species %s, Java %s, reps %d%n", threads,
                Runtime.getRuntime().availableProcessors(), FloatVector.SPECIES_PREFERRED, Runtime.version(), reps);
        String kind = dense ? "dense" : "packed";
        System.out.printf("%-22s %4s %10s %10s %10s | %10s %10s %10s | %7s %7s %7s | %s%n",
                dense ? "shape (float32)" : "shape (4-bit, g128)", "M", kind + " ms", "min", "max", "f32 ms", "min",
                "max", "ratio", "min", "max", "bytes " + kind + "/f32");
        VectorOps ops = new VectorOps(threads);
        WorkerPool pool = new WorkerPool(threads);
        List<Run> runs = new ArrayList<>();
        for (Shape s : shapes) {
            if (!s.label().contains(only) || (dense && s.actOrder())) {
                continue;
            }
            Random rnd = new Random(7);
            float[] w;
            Kernel p;
            long kernelBytes;
            if (dense) {
                w = new float[s.N() * s.K()];
                for (int i = 0; i < w.length; i++) {
                    w[i] = (rnd.nextFloat() * 2 - 1) * 0.05f;
                }
                DenseLinear d = DenseLinear.of(w, s.N(), s.K(), null);
                p = d::apply;
                kernelBytes = d.bytes();
            } else {
                QuantizedLinear q = random(rnd, s.N(), s.K(), s.actOrder());
                PackedLinear pl = PackedLinear.of(q);
                p = pl::apply;
                kernelBytes = pl.bytes();
                w = q.dequantize();
            }
            for (int M : ms) {
                if (s.actOrder() && M != 1) {
                    continue;
                }
                float[] x = new float[M * s.K()];
                for (int i = 0; i < x.length; i++) {
                    x[i] = rnd.nextFloat() * 2 - 1;
                }
                float[] y = new float[M * s.N()];
                runs.add(new Run(s.label(), M, kernelBytes, 4L * w.length,
                        () -> p.apply(x, M, y, pool), () -> ops.linear(x, M, s.K(), w, s.N(), y)));
            }
        }
        // warm-up of every case first (on a busy machine C2 compiles late), then again before each case
        for (Run r : runs) {
            warm(r, WARMUP_NANOS / 2);
        }
        for (Run r : runs) {
            warm(r, WARMUP_NANOS / 2);
            double[] tp = new double[reps], td = new double[reps], ratio = new double[reps];
            for (int i = 0; i < reps; i++) {
                tp[i] = time(r.packed());
                td[i] = time(r.dense());
                ratio[i] = td[i] / tp[i];
            }
            double[] a = stats(tp), b = stats(td), c = stats(ratio);
            System.out.printf("%-22s %4d %10.3f %10.3f %10.3f | %10.3f %10.3f %10.3f | %7.2f %7.2f %7.2f | %.1f MB / %.1f MB%n",
                    r.label(), r.M(), a[0], a[1], a[2], b[0], b[1], b[2], c[0], c[1], c[2],
                    r.packedBytes() / 1e6, r.denseBytes() / 1e6);
        }
    }

    /** The linear measured against VectorOps.linear: PackedLinear's or DenseLinear's apply. */
    @FunctionalInterface
    private interface Kernel {
        void apply(float[] x, int M, float[] y, WorkerPool pool);
    }

    /** One measured case: the packed (or dense) product and the float32 one on the same input. */
    private record Run(String label, int M, long packedBytes, long denseBytes, Runnable packed, Runnable dense) {
    }

    private static void warm(Run r, long nanos) {
        long end = System.nanoTime() + nanos;
        for (int i = 0; i < 3 || System.nanoTime() < end; i++) {
            r.packed().run();
            r.dense().run();
        }
    }

    /** A 4-bit, group-128 linear with random codes, scales and asymmetric zeros; act-order shuffles g_idx. */
    private static QuantizedLinear random(Random rnd, int N, int K, boolean actOrder) {
        int group = 128, G = QuantizedLinear.groups(K, group);
        int[] codes = new int[N * K];
        for (int i = 0; i < codes.length; i++) {
            codes[i] = rnd.nextInt(16);
        }
        float[] scales = new float[G * N];
        int[] zeros = new int[G * N];
        for (int i = 0; i < scales.length; i++) {
            scales[i] = 0.001f + 0.01f * rnd.nextFloat();
            zeros[i] = rnd.nextInt(16);
        }
        int[] gIdx = QuantizedLinear.sequentialGIdx(K, group);
        if (actOrder) {
            for (int i = K - 1; i > 0; i--) {
                int j = rnd.nextInt(i + 1), t = gIdx[i];
                gIdx[i] = gIdx[j];
                gIdx[j] = t;
            }
        }
        return new QuantizedLinear("bench", N, K, 4, group, codes, scales, zeros, gIdx, null);
    }

    private static double time(Runnable r) {
        long t0 = System.nanoTime();
        r.run();
        return (System.nanoTime() - t0) / 1e6;
    }

    /** Median, min, max. */
    private static double[] stats(double[] v) {
        double[] s = v.clone();
        Arrays.sort(s);
        double median = s.length % 2 == 1 ? s[s.length / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
        return new double[] {median, s[0], s[s.length - 1]};
    }
}
