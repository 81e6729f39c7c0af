package dev.shrink.kernels.cuda;

import dev.shrink.kernels.cpu.VectorOps;
import java.lang.foreign.MemorySegment;
import java.util.Arrays;
import java.util.Random;

/**
 * Timings of {@link CudaOps} on the GPU: each op through the Ops interface (heap arrays in and
 * out, so the copies included: "ops ms") against the same kernel or cuBLAS call on data already
 * on the device, timed with CUDA events ("device ms"); plus start-up (driver, NVRTC or the cubin
 * cache) and host↔device copy bandwidth. Medians of the repetitions after warm-up. A benchmark
 * for a person to read, not a test.
 *
 * <pre>java --enable-native-access=ALL-UNNAMED -cp 'lib/*' dev.shrink.kernels.cuda.CudaBench [--reps 7] [--cpu]</pre>
 * --cpu adds the Vector API backend's gemm 4096³ on all cores, for contrast.
 */
public final class CudaBench {
    private static final Random RND = new Random(1);

    private CudaBench() {
    }

    @FunctionalInterface
    private interface Body {
        void run();
    }

    public static void main(String[] args) {
        int reps = 7;
        boolean cpu = false;
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--reps" -> reps = Integer.parseInt(args[++i]);
                case "--cpu" -> cpu = true;
                default -> {
                    System.err.println("unknown option " + args[i] + "; usage: CudaBench [--reps N] [--cpu]");
                    System.exit(2);
                }
            }
        }
        long t0 = System.nanoTime();
        Cuda cuda = Cuda.get();
        double initMs = (System.nanoTime() - t0) / 1e6;
        t0 = System.nanoTime();
        try (CudaOps ops = CudaOps.open(0)) {
            double openMs = (System.nanoTime() - t0) / 1e6;
            CudaDevice dev = ops.device();
            System.out.printf("%s; %s; driver CUDA %s, NVRTC %s; %d SMs, %.1f GiB%n", ops.name(), cuda.libraries(),
                    cuda.driverVersion(), cuda.nvrtcVersion(), dev.multiprocessors(), dev.totalMemory() / (double) (1L << 30));
            System.out.printf("start-up: libraries + cuInit %.0f ms; device, cuBLAS and module %.0f ms (%s)%n", initMs,
                    openMs, ops.module().fromCache() ? "cubin from the cache"
                            : String.format("NVRTC compile %.0f ms", ops.module().compileMillis()));
            copyBandwidth(dev, reps);
            System.out.printf("%n%-12s %-34s %10s %10s %8s  %s%n", "op", "shape", "ops ms", "device ms", "copies", "device rate");
            gemm(ops, 4096, 4096, 4096, false, reps);
            gemm(ops, 2048, 11008, 4096, true, reps);   // a 7B MLP up/gate projection of 2048 tokens
            gemm(ops, 1, 11008, 4096, true, reps);      // one token (GEMV)
            attention(ops, 512, 6, 2, 64, reps);        // fixture-llama-14m, seqlen 512
            attention(ops, 2048, 32, 8, 128, reps);     // 7B-class GQA, 2048 tokens
            rmsNorm(ops, 2048, 4096, reps);
            swiglu(ops, 2048 * 11008, reps);
            crossEntropy(ops, 2048, 32000, reps);
            if (cpu) {
                int threads = Runtime.getRuntime().availableProcessors();
                VectorOps v = new VectorOps(threads);
                float[] a = rand(4096 * 4096), b = rand(4096 * 4096), c = new float[4096 * 4096];
                double ms = median(Math.min(reps, 3), () -> v.gemm(false, false, 4096, 4096, 4096, 1f, a, 0, 4096, b,
                        0, 4096, 0f, c, 0, 4096));
                System.out.printf("%-12s %-34s %10.2f %10s %8s  %.2f TFLOP/s (cpu, %d threads)%n", "gemm", "4096x4096x4096 NN",
                        ms, "-", "-", 2.0 * 4096 * 4096 * 4096 / ms / 1e9, threads);
            }
        }
    }

    private static void copyBandwidth(CudaDevice dev, int reps) {
        long n = 64L << 20; // 64 Mi floats = 256 MiB
        float[] host = rand((int) n);
        MemorySegment seg = MemorySegment.ofArray(host);
        try (DeviceBuffer d = dev.alloc(n * 4)) {
            double upHeap = median(reps, () -> {
                dev.upload(seg, d, 0);
                dev.synchronize();
            });
            double downHeap = median(reps, () -> dev.download(d, 0, seg));
            System.out.printf("copies of a 256 MiB Java float[]: host→device %.1f GB/s, device→host %.1f GB/s%n",
                    n * 4 / upHeap / 1e6, n * 4 / downHeap / 1e6);
            // the limits of any staging: the DMA from page-locked memory, and the Java-side copy into it
            MemorySegment pinned = dev.cuda.driver.memAllocHost(n * 4);
            try {
                double up = median(reps, () -> {
                    dev.upload(pinned, d, 0);
                    dev.synchronize();
                });
                double down = median(reps, () -> dev.download(d, 0, pinned));
                double java = median(reps, () -> MemorySegment.copy(seg, 0, pinned, 0, n * 4));
                System.out.printf("  limits: DMA from/to page-locked memory %.1f / %.1f GB/s; Java heap → native copy %.1f GB/s%n",
                        n * 4 / up / 1e6, n * 4 / down / 1e6, n * 4 / java / 1e6);
            } finally {
                dev.cuda.driver.memFreeHost(pinned);
            }
        }
    }

    private static void gemm(CudaOps ops, int M, int N, int K, boolean transB, int reps) {
        float[] a = rand(M * K), b = rand(K * N), c = new float[M * N];
        int ldb = transB ? K : N;
        double opsMs = median(reps, () -> ops.gemm(false, transB, M, N, K, 1f, a, 0, K, b, 0, ldb, 0f, c, 0, N));
        CudaDevice dev = ops.device();
        try (DeviceBuffer dA = dev.alloc(4L * M * K); DeviceBuffer dB = dev.alloc(4L * K * N);
             DeviceBuffer dC = dev.alloc(4L * M * N)) {
            dev.upload(MemorySegment.ofArray(a), dA, 0);
            dev.upload(MemorySegment.ofArray(b), dB, 0);
            double devMs = deviceMedian(dev, reps, () -> ops.gemmOnDevice(false, transB, M, N, K, 1f, dA, K, dB, ldb, 0f,
                    dC, N));
            double flops = 2.0 * M * N * K;
            row("gemm", M + "x" + N + "x" + K + (transB ? " NT" : " NN"), opsMs, devMs,
                    String.format("%.1f TFLOP/s (ops: %.1f)", flops / devMs / 1e9, flops / opsMs / 1e9));
        }
    }

    private static void attention(CudaOps ops, int T, int H, int Hkv, int D, int reps) {
        float[] q = rand(T * H * D), k = rand(T * Hkv * D), v = rand(T * Hkv * D), out = new float[T * H * D];
        double opsMs = median(reps, () -> ops.attention(q, k, v, T, T, H, Hkv, D, out));
        CudaDevice dev = ops.device();
        try (DeviceBuffer dq = dev.alloc(4L * q.length); DeviceBuffer dk = dev.alloc(4L * k.length);
             DeviceBuffer dv = dev.alloc(4L * v.length); DeviceBuffer dout = dev.alloc(4L * out.length)) {
            dev.upload(MemorySegment.ofArray(q), dq, 0);
            dev.upload(MemorySegment.ofArray(k), dk, 0);
            dev.upload(MemorySegment.ofArray(v), dv, 0);
            double devMs = deviceMedian(dev, reps, () -> ops.attentionOnDevice(dq, dk, dv, T, T, H, Hkv, D, 0, dout));
            double flops = 4.0 * H * D * (T * (T + 1.0) / 2); // q·k and p·v over the causal half
            row("attention", "T=" + T + " H=" + H + " Hkv=" + Hkv + " D=" + D, opsMs, devMs,
                    String.format("%.1f TFLOP/s", flops / devMs / 1e9));
        }
    }

    private static void rmsNorm(CudaOps ops, int M, int C, int reps) {
        float[] x = rand(M * C), w = rand(C), y = new float[M * C];
        double opsMs = median(reps, () -> ops.rmsNorm(x, w, 1e-5f, M, C, y));
        CudaDevice dev = ops.device();
        try (DeviceBuffer dx = dev.alloc(4L * x.length); DeviceBuffer dw = dev.alloc(4L * C);
             DeviceBuffer dy = dev.alloc(4L * y.length)) {
            double devMs = deviceMedian(dev, reps, () -> ops.rmsNormOnDevice(dx, dw, 1e-5f, M, C, dy));
            row("rmsNorm", M + "x" + C, opsMs, devMs, String.format("%.0f GB/s", 8.0 * M * C / devMs / 1e6));
        }
    }

    private static void swiglu(CudaOps ops, int n, int reps) {
        float[] g = rand(n), u = rand(n), out = new float[n];
        double opsMs = median(reps, () -> ops.swiglu(g, u, n, out));
        CudaDevice dev = ops.device();
        try (DeviceBuffer dg = dev.alloc(4L * n); DeviceBuffer du = dev.alloc(4L * n); DeviceBuffer dout = dev.alloc(4L * n)) {
            double devMs = deviceMedian(dev, reps, () -> ops.swigluOnDevice(dg, du, n, dout));
            row("swiglu", "n=" + n, opsMs, devMs, String.format("%.0f GB/s", 12.0 * n / devMs / 1e6));
        }
    }

    private static void crossEntropy(CudaOps ops, int M, int V, int reps) {
        float[] logits = rand(M * V);
        int[] targets = new int[M];
        double[] nll = new double[M];
        double opsMs = median(reps, () -> ops.crossEntropy(logits, M, V, targets, nll));
        CudaDevice dev = ops.device();
        try (DeviceBuffer dl = dev.alloc(4L * logits.length); DeviceBuffer dt = dev.alloc(4L * M);
             DeviceBuffer dn = dev.alloc(8L * M)) {
            dev.upload(MemorySegment.ofArray(logits), dl, 0);
            dev.upload(MemorySegment.ofArray(targets), dt, 0);
            double devMs = deviceMedian(dev, reps, () -> ops.crossEntropyOnDevice(dl, M, V, dt, dn));
            row("crossEntropy", M + "x" + V, opsMs, devMs, String.format("%.0f GB/s", 4.0 * M * V / devMs / 1e6));
        }
    }

    private static void row(String op, String shape, double opsMs, double devMs, String rate) {
        System.out.printf("%-12s %-34s %10.3f %10.3f %7.0f%%  %s%n", op, shape, opsMs, devMs,
                100 * Math.max(0, opsMs - devMs) / opsMs, rate);
    }

    /** Median wall-clock milliseconds of {@code reps} runs after two warm-ups. */
    private static double median(int reps, Body body) {
        body.run();
        body.run();
        double[] ms = new double[reps];
        for (int i = 0; i < reps; i++) {
            long t0 = System.nanoTime();
            body.run();
            ms[i] = (System.nanoTime() - t0) / 1e6;
        }
        Arrays.sort(ms);
        return ms[reps / 2];
    }

    /** Median GPU milliseconds of {@code reps} launches (CUDA events around each) after two warm-ups. */
    private static double deviceMedian(CudaDevice dev, int reps, Body body) {
        body.run();
        body.run();
        dev.synchronize();
        double[] ms = new double[reps];
        try (CudaEvent start = dev.event(); CudaEvent end = dev.event()) {
            for (int i = 0; i < reps; i++) {
                start.record();
                body.run();
                end.record();
                ms[i] = end.millisSince(start);
            }
        }
        Arrays.sort(ms);
        return ms[reps / 2];
    }

    private static float[] rand(int n) {
        float[] x = new float[n];
        for (int i = 0; i < n; i++) {
            x[i] = RND.nextFloat() * 2 - 1;
        }
        return x;
    }
}
