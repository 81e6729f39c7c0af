package dev.shrink.kernels.cuda;

import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.shrink.core.quant.GptqPacking;
import java.lang.foreign.MemorySegment;
import java.util.Random;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * {@link W4a16Gemv} against a plain-Java GEMV over the dequantized weights: codes, zero points
 * and scales drawn at random, packed by {@link GptqPacking} (the writer's own packing, FORMATS.md),
 * fp16 scales and input; y must agree per element to 1e-5 of Σ|x·w| (float sums in another order).
 * Every kernel and many shapes of the tensor-core one (stages, columns per block, warps, K split
 * over blocks with atomic adds) and of the split one (steps per warp, warps per block; groups of 32,
 * 64, 128 inputs, groups spanning slices, a group it must refuse, a last slice shorter than the rest)
 * run on each case; y is poisoned with NaN first, so an element a kernel skips fails; the accumulating
 * form must add to what y held. The programmatic launches ({@link W4a16Gemv.Pdl}) run on every case
 * too, and on chains where each kernel reads what the one before wrote (x made by a kernel, y
 * accumulated launch after launch), eagerly and in a CUDA graph. Skipped without a GPU.
 */
class W4a16GemvTest {
    private static CudaDevice dev;
    private static W4a16Gemv gemv;
    private static String skipReason;

    @BeforeAll
    static void open() {
        Cuda.Availability a = Cuda.availability();
        if (!a.available()) {
            skipReason = "no CUDA device: " + a.reason();
            return;
        }
        dev = Cuda.get().open(0);
        gemv = new W4a16Gemv(dev);
    }

    @BeforeEach
    void needsCuda() {
        assumeTrue(dev != null, skipReason);
    }

    @AfterAll
    static void close() {
        if (dev != null) {
            gemv.close();
            dev.close();
        }
    }

    @ParameterizedTest(name = "N={0} K={1} group={2} v1={3}")
    @CsvSource({"64, 256, 128, true", "104, 384, 32, false", "40, 512, -1, true", "4096, 1024, 128, true",
                "8, 96, 32, false", "48, 4224, 128, false", "296, 11008, 128, true", "72, 2048, 64, true",
                "256, 2048, 256, false", "64, 384, 96, true"})
    void matchesDequantizedReference(int N, int K, int group, boolean v1) {
        Random r = new Random(N * 7919L + K);
        int gs = group == -1 ? K : group, G = K / gs;
        int[] codes = new int[N * K];
        for (int i = 0; i < codes.length; i++) {
            codes[i] = r.nextInt(16);
        }
        int[] zeros = new int[G * N];
        short[] scales = new short[G * N];
        for (int i = 0; i < zeros.length; i++) {
            zeros[i] = v1 ? 1 + r.nextInt(16) : r.nextInt(16); // v1 holds 1..16
            scales[i] = Float.floatToFloat16(0.001f + 0.02f * r.nextFloat());
        }
        short[] x = new short[K];
        for (int k = 0; k < K; k++) {
            x[k] = Float.floatToFloat16((float) r.nextGaussian());
        }
        int[] qweight = GptqPacking.packQweight(codes, N, K, 4);
        int[] qzeros = GptqPacking.packQzeros(zeros, G, N, 4, v1);
        double[] ref = new double[N], mag = new double[N];
        for (int n = 0; n < N; n++) {
            for (int k = 0; k < K; k++) {
                int g = k / gs;
                double w = Float.float16ToFloat(scales[g * N + n]) * (double) (codes[n * K + k] - zeros[g * N + n]);
                double t = Float.float16ToFloat(x[k]) * w;
                ref[n] += t;
                mag[n] += Math.abs(t);
            }
        }
        try (DeviceBuffer dq = dev.alloc(qweight.length * 4L); DeviceBuffer dz = dev.alloc(qzeros.length * 4L);
             DeviceBuffer ds = dev.alloc(scales.length * 2L); DeviceBuffer dx = dev.alloc(K * 2L);
             DeviceBuffer dy = dev.alloc(N * 4L); DeviceBuffer dt = dev.alloc(W4a16Gemv.tiledBytes(K, N))) {
            dev.upload(MemorySegment.ofArray(qweight), dq, 0);
            dev.upload(MemorySegment.ofArray(qzeros), dz, 0);
            dev.upload(MemorySegment.ofArray(scales), ds, 0);
            dev.upload(MemorySegment.ofArray(x), dx, 0);
            gemv.tile(dq, dt, K, N);
            // null: the sliced kernel; (stages, cols, warps, splits) of the tensor-core kernel otherwise
            java.util.List<W4a16Gemv.Tc> shapes = new java.util.ArrayList<>();
            shapes.add(null);
            for (int[] c : W4a16Gemv.compiled()) {
                for (int w : new int[] {1, 4, 16}) {
                    shapes.add(new W4a16Gemv.Tc(c[0], c[1], w, 1));
                }
            }
            shapes.add(new W4a16Gemv.Tc(4, 1, 8, 2));
            shapes.add(new W4a16Gemv.Tc(4, 4, 4, 3));
            shapes.add(new W4a16Gemv.Tc(2, 4, 8, 2));
            float[] base = new float[N];
            for (int n = 0; n < N; n++) {
                base[n] = (float) r.nextGaussian();
            }
            java.util.List<Object[]> runs = new java.util.ArrayList<>(); // {shape or null, accumulate}
            for (W4a16Gemv.Tc c : shapes) {
                if (c == null || c.splits() == 1) {
                    runs.add(new Object[] {c, false});
                }
                if (c != null && c.splits() <= K / 32) {
                    runs.add(new Object[] {c, true});
                }
            }
            runs.add(new Object[] {"default", false});
            runs.add(new Object[] {"default", true});
            runs.add(new Object[] {"tiled", false});
            runs.add(new Object[] {"tiled", true});
            runs.add(new Object[] {"tiled u4 c4 w4 k2", true});
            for (int[] c : W4a16Gemv.compiled()) { // every kernel on the tiled layout (defaultTiledTc picks among them)
                runs.add(new Object[] {new Object[] {new W4a16Gemv.Tc(c[0], c[1], 16, 1)}, false});
            }
            // the split kernel in every shape that takes the group (gemvTiled's default where one does)
            W4a16Gemv.Split[] splits = {new W4a16Gemv.Split(4, 4), new W4a16Gemv.Split(8, 2), new W4a16Gemv.Split(4, 1),
                new W4a16Gemv.Split(8, 4)};
            for (W4a16Gemv.Split sp : splits) {
                if (W4a16Gemv.splitTakes(sp, gs)) {
                    runs.add(new Object[] {sp, false});
                    runs.add(new Object[] {sp, true});
                } else {
                    assertThrows(IllegalArgumentException.class, () -> gemv.gemvSplit(sp, dt.address(), dz.address(),
                            ds.address(), dx.address(), dy.address(), K, N, group, v1, true), sp + " refuses group " + gs);
                }
            }
            for (W4a16Gemv.Pdl m : new W4a16Gemv.Pdl[] {W4a16Gemv.Pdl.AFTER_LOADS, W4a16Gemv.Pdl.AT_START}) {
                if (W4a16Gemv.splitTakes(splits[1], gs)) {
                    runs.add(new Object[] {splits[1], true, m});
                    runs.add(new Object[] {splits[1], false, m});
                }
                runs.add(new Object[] {"tiled", false, m});
                runs.add(new Object[] {"tiled", true, m});
                runs.add(new Object[] {"default", true, m});
                runs.add(new Object[] {"tiled u4 c4 w4 k2", true, m});
            }
            for (Object[] run : runs) {
                boolean acc = (Boolean) run[1];
                W4a16Gemv.Pdl mode = run.length > 2 ? (W4a16Gemv.Pdl) run[2] : W4a16Gemv.Pdl.OFF;
                if (mode != W4a16Gemv.Pdl.OFF && gemv.pdlUnsupported() != null) {
                    continue; // the chain test below reports the skip
                }
                assertTrue(gemv.pdl(mode), "PDL mode " + mode);
                if (acc) {
                    dev.upload(MemorySegment.ofArray(base), dy, 0);
                } else {
                    dev.fill32(dy, 0xFFFFFFFF, N);
                }
                if (run[0] == null) {
                    gemv.gemvSliced(dq.address(), dz.address(), ds.address(), dx.address(), dy.address(), K, N, group,
                            v1);
                } else if (run[0] instanceof W4a16Gemv.Split sp) {
                    gemv.gemvSplit(sp, dt.address(), dz.address(), ds.address(), dx.address(), dy.address(), K, N,
                            group, v1, acc);
                } else if (run[0] instanceof W4a16Gemv.Tc c) {
                    gemv.gemv(c, false, false, dq.address(), dz.address(), ds.address(), dx.address(), dy.address(),
                            K, N, group, v1, acc);
                } else if (run[0].equals("tiled")) {
                    gemv.gemvTiled(dt.address(), dz.address(), ds.address(), dx.address(), dy.address(), K, N, group,
                            v1, acc);
                } else if (run[0] instanceof Object[] tiledShape) {
                    gemv.gemv((W4a16Gemv.Tc) tiledShape[0], true, false, dt.address(), dz.address(), ds.address(),
                            dx.address(), dy.address(), K, N, group, v1, acc);
                } else if (run[0].equals("tiled u4 c4 w4 k2")) {
                    gemv.gemv(new W4a16Gemv.Tc(4, 4, 4, 2), true, false, dt.address(), dz.address(), ds.address(),
                            dx.address(), dy.address(), K, N, group, v1, acc);
                } else {
                    gemv.gemv(dq, dz, ds, dx, dy, K, N, group, v1, acc); // the public form, default shape
                }
                gemv.pdl(W4a16Gemv.Pdl.OFF);
                String what = (run[0] == null ? "sliced" : run[0] instanceof Object[] o ? "tiled " + o[0]
                        : run[0].toString()) + (acc ? " accumulating" : "") + (mode != W4a16Gemv.Pdl.OFF ? " " + mode : "");
                float[] y = new float[N];
                dev.download(dy, 0, MemorySegment.ofArray(y));
                for (int n = 0; n < N; n++) {
                    double want = ref[n] + (acc ? base[n] : 0);
                    double bound = 1e-5 * (mag[n] + (acc ? Math.abs(base[n]) : 0)) + 1e-6;
                    int col = n;
                    assertTrue(Math.abs(y[n] - want) <= bound, () -> what + ": y[" + col + "] = " + y[col]
                            + ", reference " + want + " (bound " + bound + ")");
                }
            }
        }
    }

    /**
     * Programmatic launches in a chain where each kernel needs the previous one's output: x poisoned
     * (NaN), then written by a plain kernel (fill_f16), y set by a plain kernel (fill_f32), then R
     * accumulating GEMVs launched programmatically (default tiled shape, one K slice: y = base + R·x·Wᵀ,
     * each launch reading the y the one before wrote). A GEMV reading x or y before its predecessor had
     * finished would miss values or see NaN. Eagerly, then as a CUDA graph (stream capture keeps the
     * programmatic edges), replayed twice.
     */
    @ParameterizedTest(name = "{0}")
    @EnumSource(value = W4a16Gemv.Pdl.class, names = {"AFTER_LOADS", "AT_START"})
    void programmaticLaunchesWaitForThePreviousKernel(W4a16Gemv.Pdl mode) {
        assumeTrue(gemv.pdlUnsupported() == null, "programmatic dependent launch unavailable: " + gemv.pdlUnsupported());
        int N = 4096, K = 2048, group = 128, G = K / group, R = 6;
        float base = 0.5f;
        Random r = new Random(77);
        int[] codes = new int[N * K];
        for (int i = 0; i < codes.length; i++) {
            codes[i] = r.nextInt(16);
        }
        int[] zeros = new int[G * N];
        short[] scales = new short[G * N];
        for (int i = 0; i < zeros.length; i++) {
            zeros[i] = 1 + r.nextInt(16);
            scales[i] = Float.floatToFloat16(0.001f + 0.02f * r.nextFloat());
        }
        int[] qweight = GptqPacking.packQweight(codes, N, K, 4);
        int[] qzeros = GptqPacking.packQzeros(zeros, G, N, 4, true);
        try (CudaModule fills = dev.module("decode.cu"); DeviceBuffer dq = dev.alloc(qweight.length * 4L);
             DeviceBuffer dz = dev.alloc(qzeros.length * 4L); DeviceBuffer ds = dev.alloc(scales.length * 2L);
             DeviceBuffer dx = dev.alloc(K * 2L); DeviceBuffer dy = dev.alloc(N * 4L);
             DeviceBuffer dt = dev.alloc(W4a16Gemv.tiledBytes(K, N))) {
            dev.upload(MemorySegment.ofArray(qweight), dq, 0);
            dev.upload(MemorySegment.ofArray(qzeros), dz, 0);
            dev.upload(MemorySegment.ofArray(scales), ds, 0);
            gemv.tile(dq, dt, K, N);
            CudaKernel fillH = fills.kernel("fill_f16"), fillF = fills.kernel("fill_f32");
            int[] seed = {11};
            Runnable chain = () -> {
                dev.fill32(dx, 0xFFFFFFFF, K / 2);                              // NaN poison
                fillH.launch(4, 1, 256, 0, dx, (long) K, seed[0], -1f, 1f);     // x, by a kernel
                fillF.launch(4, 1, 256, 0, dy, (long) N, base);                // y = base, by a kernel
                for (int i = 0; i < R; i++) {
                    gemv.gemvTiled(dt.address(), dz.address(), ds.address(), dx.address(), dy.address(), K, N, group,
                            true, true);
                }
            };
            assertTrue(gemv.pdl(mode));
            try {
                chain.run();
                check(mode + " eager", dx, dy, codes, zeros, scales, N, K, group, R, base);
                seed[0] = 12;
                try (CudaGraph graph = CudaGraph.capture(dev, chain)) {
                    for (int rep = 0; rep < 2; rep++) {
                        dev.fill32(dy, 0, N);
                        graph.launch();
                        check(mode + " graph replay " + rep, dx, dy, codes, zeros, scales, N, K, group, R, base);
                    }
                }
            } finally {
                gemv.pdl(W4a16Gemv.Pdl.OFF);
            }
        }
    }

    /** y must be base + R · x · dequant(W)ᵀ for the x now on the device. */
    private static void check(String what, DeviceBuffer dx, DeviceBuffer dy, int[] codes, int[] zeros, short[] scales,
                              int N, int K, int group, int R, float base) {
        short[] x = new short[K];
        float[] y = new float[N];
        dev.download(dx, 0, MemorySegment.ofArray(x));
        dev.download(dy, 0, MemorySegment.ofArray(y));
        for (int n = 0; n < N; n++) {
            double ref = 0, mag = 0;
            for (int k = 0; k < K; k++) {
                int g = k / group;
                double t = Float.float16ToFloat(x[k]) * Float.float16ToFloat(scales[g * N + n])
                        * (double) (codes[n * K + k] - zeros[g * N + n]);
                ref += t;
                mag += Math.abs(t);
            }
            double want = base + R * ref, bound = 1e-5 * (R * mag + base) * R + 1e-6;
            int col = n;
            assertTrue(Math.abs(y[n] - want) <= bound, () -> what + ": y[" + col + "] = " + y[col] + ", want " + want
                    + " (bound " + bound + ")");
        }
    }

    @Test
    void refusesShapesItCannotRun() {
        try (DeviceBuffer b = dev.alloc(1 << 20)) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> gemv.gemv(b, b, b, b, b, 256, 60, 128, true));
            assertTrue(e.getMessage().contains("N % 8"), e.getMessage());
            assertThrows(IllegalArgumentException.class, () -> gemv.gemv(b, b, b, b, b, 256, 64, 48, true));
        }
    }
}
