package dev.shrink.awq;

import static dev.shrink.awq.AwqTestSupport.fixture;
import static dev.shrink.awq.AwqTestSupport.shared;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.shrink.core.safetensors.TokenWindows;
import dev.shrink.core.forward.CausalLM;
import dev.shrink.core.forward.WeightSource;
import dev.shrink.core.model.ModelDir;
import dev.shrink.core.ops.Backends;
import dev.shrink.core.ops.Ops;
import dev.shrink.core.quant.QuantizedLinear;
import dev.shrink.eval.Perplexity;
import dev.shrink.eval.WeightSources;
import dev.shrink.kernels.cpu.ReferenceOps;
import dev.shrink.kernels.cuda.Cuda;
import dev.shrink.kernels.cuda.CudaAwq;
import dev.shrink.kernels.cuda.CudaOps;
import dev.shrink.kernels.cuda.DeviceBuffer;
import dev.shrink.kernels.cuda.DeviceOps;
import dev.shrink.kernels.cuda.GemmMath;
import java.io.IOException;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestMethodOrder;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * AWQ on the GPU ({@link DeviceAwq}, awq.cu) against AWQ on the CPU ({@link AwqStage}'s host loop),
 * which is the reference:
 * <ul>
 * <li>the kernels on random weights: the scale search's candidates Q(W·s)/s and plain Q(W) equal
 *     {@link ScaleSearch#scaledQuantized} / {@link AwqQuantizer#pseudoQuantize} bit for bit; round to
 *     nearest gives {@link AwqQuantizer#quantize}'s codes, scales and zeros exactly; the clip search
 *     chooses {@link ClipSearch#search}'s step for ≥ 99% of (row, group) (the rest are near-ties of
 *     losses summed in another order: the test prints how many);</li>
 * <li>the whole stage, float32 GEMMs: on a small random model without GQA and with q/k/v biases
 *     (every mapping kind: attention, v → o and up → down from the Gram matrix, MLP), and on
 *     fixture-llama-14m with 16 of the reference's calibration windows: every ratio's loss to 1e-3,
 *     the same ratio chosen for every mapping except at near-ties (the CPU's losses of both choices
 *     within 1e-4; each is printed), ≤ 1% of clip steps differing, ≥ 99.8% identical codes (see
 *     below), and (fixture) perplexity on heldout windows within 0.1% of the CPU's.</li>
 * </ul>
 *
 * <p>Why not every clip step and code: the fixture's weights are bf16, so after AWQ's scaling many
 * w / s of a group land exactly on a rounding tie (half-to-even) or on the group's clamp. The CPU's
 * own choices are that sensitive: moving every weight of block 0 by one ulp changes the clip step of
 * 3.4–4.0% of its (row, group)s (123 of 3456 for down_proj, 46 of 1152 for o_proj; measured with the
 * CPU's ClipSearch on 4 windows), while 1e-6 relative noise on the inputs changes none; on the small
 * random float32 model below, moving every third weight by one ulp changes 8 of its 2048 clip steps
 * (the GPU run differs in 6). On the GPU, the activations (cuBLAS summation order)
 * and so x_mean, s and W·s differ from the CPU's in the last bit here and there, which flips such ties:
 * measured on an H100 with 16 windows, 0 of 18 ratios and 276 of 71,424 clip steps (0.39%) differ,
 * 99.827% of the codes are identical, and the heldout perplexity differs by +0.0017%. The bounds
 * below (≤ 1% of clip steps, ≥ 99.8% of codes on the fixture, ≥ 99.5% on the small random models
 * whose groups are 32 wide, perplexity to 0.1%) sit just outside those measurements; a real error in
 * a kernel moves them by far more (a wrong clip or scale changes whole groups of codes).
 *
 * <p>Skipped with the reason where there is no GPU (CI).
 */
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
class CudaAwqParityTest {
    private static CudaOps cuda;
    private static String skipReason;

    @TempDir
    Path tmp;

    @BeforeAll
    static void open() {
        Cuda.Availability a = Cuda.availability();
        if (!a.available()) {
            skipReason = "no CUDA device: " + a.reason();
            System.out.println("CudaAwqParityTest skipped: " + skipReason);
            return;
        }
        cuda = CudaOps.open(0);
    }

    @BeforeEach
    void needsCuda() {
        assumeTrue(cuda != null, skipReason);
        cuda.setMath(GemmMath.FP32);
    }

    @AfterAll
    static void close() {
        if (cuda != null) {
            cuda.close();
        }
    }

    /** Weights with a few outliers per row, as in real models. */
    private static float[] weights(int N, int K, Random rnd) {
        float[] W = new float[N * K];
        for (int i = 0; i < W.length; i++) {
            W[i] = (float) (rnd.nextGaussian() * 0.05 * (i % 97 == 5 ? 8 : 1));
        }
        return W;
    }

    @ParameterizedTest(name = "N={0} K={1} g{2}")
    @Order(1)
    @CsvSource({"48, 256, 64", "40, 384, 128", "24, 160, -1"})
    void quantizerKernelsMatchCpuExactly(int N, int K, int gs) {
        Random rnd = new Random(7L * N + K);
        float[] W = weights(N, K, rnd);
        int R = 4;
        float[] xMean = new float[K];
        for (int k = 0; k < K; k++) {
            xMean[k] = (float) Math.abs(rnd.nextGaussian()) * (k % 13 == 0 ? 10 : 1);
        }
        float[] wMean = ScaleSearch.wMean(List.of(W), K, gs);
        float[][] s = new float[R][];
        for (int r = 0; r < R; r++) {
            s[r] = ScaleSearch.scales(xMean, wMean, 0.05 + 0.3 * r);
        }
        DeviceOps d = cuda.deviceOps();
        int len = AwqQuantizer.groupLength(K, gs), G = K / len;
        try (CudaAwq awq = new CudaAwq(d.device()); DeviceBuffer dW = d.device().alloc(4L * N * K);
             DeviceBuffer ds = d.device().alloc(4L * R * K); DeviceBuffer out = d.device().alloc(4L * R * N * K);
             DeviceBuffer codes = d.device().alloc((long) N * K); DeviceBuffer sc = d.device().alloc(4L * G * N);
             DeviceBuffer z = d.device().alloc(4L * G * N)) {
            d.upload(W, dW);
            for (int r = 0; r < R; r++) {
                d.upload(s[r], 0, K, ds, (long) r * K);
            }
            d.device().fill32(out, 0x7fc00000, (long) R * N * K); // poisoned with NaN
            awq.scaledQdq(dW.address(), ds.address(), out.address(), R, N, K, len);
            float[] got = d.downloadFloats(out, 0, R * N * K);
            for (int r = 0; r < R; r++) {
                float[] want = ScaleSearch.scaledQuantized(W, N, K, s[r], gs);
                for (int i = 0; i < N * K; i++) {
                    assertEquals(Float.floatToIntBits(want[i]), Float.floatToIntBits(got[r * N * K + i]),
                            "candidate " + r + " element " + i + ": " + want[i] + " vs " + got[r * N * K + i]);
                }
            }
            awq.scaledQdq(dW.address(), 0, out.address(), 1, N, K, len);
            assertArrayEquals(AwqQuantizer.pseudoQuantize(W, N, K, gs), d.downloadFloats(out, 0, N * K), 0f, "Q(W)");

            QuantizedLinear cpu = AwqQuantizer.quantize("w", W, N, K, gs, null);
            awq.quantize(dW.address(), 0, codes.address(), sc.address(), z.address(), out.address(), N, K, len);
            byte[] cb = new byte[N * K];
            d.device().download(codes, 0, java.lang.foreign.MemorySegment.ofArray(cb));
            int[] zi = new int[G * N];
            d.device().download(z, 0, java.lang.foreign.MemorySegment.ofArray(zi));
            for (int i = 0; i < N * K; i++) {
                assertEquals(cpu.codes()[i], cb[i] & 0xff, "code " + i);
            }
            assertArrayEquals(cpu.scales(), d.downloadFloats(sc, 0, G * N), 0f, "scales");
            assertArrayEquals(cpu.zeros(), zi, "zeros");
            assertArrayEquals(cpu.dequantize(), d.downloadFloats(out, 0, N * K), 0f, "dequantized");
        }
    }

    @ParameterizedTest(name = "N={0} K={1} g{2} T={3}")
    @Order(2)
    @CsvSource({"64, 256, 64, 96", "32, 384, 128, 200", "16, 96, -1, 50"})
    void clipSearchMatchesCpu(int N, int K, int gs, int T) {
        Random rnd = new Random(11L * N + K + T);
        float[] W = weights(N, K, rnd);
        float[] X = new float[T * K];
        for (int i = 0; i < X.length; i++) {
            X[i] = (float) (rnd.nextGaussian() * (i % K % 17 == 3 ? 6 : 1));
        }
        ClipPlan cpu = ClipSearch.search("w", W, N, K, X, T, gs, new ReferenceOps());
        DeviceOps d = cuda.deviceOps();
        ClipPlan gpu;
        DeviceAwq.Quantized q;
        try (CudaAwq awq = new CudaAwq(d.device()); DeviceBuffer dW = d.device().alloc(4L * N * K);
             DeviceBuffer dX = d.device().alloc(4L * T * K)) {
            d.upload(W, dW);
            d.upload(X, dX);
            gpu = DeviceAwq.clipSearch(d, awq, "w", dW, N, K, dX, T, gs);
            q = DeviceAwq.quantize(d, awq, dW, gpu, N, K, dX, T, gs);
        }
        int same = 0, total = cpu.steps().length;
        for (int i = 0; i < total; i++) {
            if (cpu.steps()[i] == gpu.steps()[i]) {
                same++;
                assertEquals(cpu.maxVal()[i], gpu.maxVal()[i], 0f, "maxVal of (row, group) " + i);
            }
        }
        System.out.printf("clip N=%d K=%d g%d T=%d: %d of %d (row, group) steps as the CPU's; error %.6g -> %.6g (cpu %.6g -> %.6g)%n",
                N, K, gs, T, same, total, gpu.errorBefore(), gpu.errorAfter(), cpu.errorBefore(), cpu.errorAfter());
        assertTrue(same >= 0.99 * total, same + " of " + total + " clip steps as the CPU's");
        assertEquals(cpu.errorBefore(), gpu.errorBefore(), 1e-4 * cpu.errorBefore(), "error before clipping");
        assertEquals(cpu.errorAfter(), gpu.errorAfter(), 1e-3 * cpu.errorAfter(), "error after clipping");
        // the codes of the clipped weights: the CPU quantizer on the GPU's plan
        float[] clipped = W.clone();
        AwqApply.clip(clipped, gpu);
        QuantizedLinear want = AwqQuantizer.quantize("w", clipped, N, K, gs, null);
        assertArrayEquals(want.codes(), q.codes(), "codes of the clipped weights");
        assertArrayEquals(want.scales(), q.scales(), 0f, "scales of the clipped weights");
    }

    /**
     * The clip search holds no device memory once it returns: 20 calls after 3 of warm-up leave the
     * GPU's memory in use (cuMemGetInfo) within 32 MiB of where it was. It once took a new cuBLAS handle
     * per GEMM and never closed it: two handles per call, each with its own workspace, which on a
     * 7B-shaped model came to ~3.8 GiB per block and ran the GPU out of memory at block 13.
     */
    @Test
    @Order(2)
    void clipSearchHoldsNoDeviceMemory() {
        int N = 256, K = 1024, gs = 128, T = 256;
        Random rnd = new Random(5);
        float[] W = weights(N, K, rnd);
        float[] X = new float[T * K];
        for (int i = 0; i < X.length; i++) {
            X[i] = (float) rnd.nextGaussian();
        }
        DeviceOps d = cuda.deviceOps();
        try (CudaAwq awq = new CudaAwq(d.device()); DeviceBuffer dW = d.device().alloc(4L * N * K);
             DeviceBuffer dX = d.device().alloc(4L * T * K)) {
            d.upload(W, dW);
            d.upload(X, dX);
            for (int i = 0; i < 3; i++) {
                DeviceAwq.clipSearch(d, awq, "w", dW, N, K, dX, T, gs);
            }
            d.device().synchronize();
            long before = d.device().usedMemory();
            for (int i = 0; i < 20; i++) {
                DeviceAwq.clipSearch(d, awq, "w", dW, N, K, dX, T, gs);
            }
            d.device().synchronize();
            long grew = d.device().usedMemory() - before;
            System.out.printf("clip search: device memory in use changed by %.1f MiB over 20 calls%n", grew / 1048576.0);
            assertTrue(grew < 32L << 20, "20 clip searches left " + grew / 1048576 + " MiB more in use on the GPU");
        }
    }

    /** A small LLaMA-shaped model without GQA (the v → o mapping applies) and a Qwen2 one (q/k/v biases). */
    @ParameterizedTest(name = "{0}, {1} kv heads")
    @Order(3)
    @CsvSource({"LlamaForCausalLM, 4", "Qwen2ForCausalLM, 4", "LlamaForCausalLM, 2"})
    void syntheticStageMatchesCpu(String arch, int kvHeads) throws IOException {
        Path model = AwqTestSupport.syntheticModel(tmp.resolve(arch + kvHeads), arch, kvHeads, 5);
        int[][] windows = AwqTestSupport.randomWindows(24, 48, 9);
        AwqStage.Config cfg = new AwqStage.Config(AwqTestSupport.GROUP, true, true, false, 8);
        Compared c = compare(model, windows, cfg);
        assertTrue(c.clipStepsDiffer <= 0.01 * c.clipSteps, c.clipStepsDiffer + " of " + c.clipSteps + " clip steps differ");
        // measured on an H100: 99.76% (Llama, 4 kv heads: 6 of 2048 clip steps differ, each changing a group of 32), 99.92%, 99.95%
        assertTrue(c.codes >= 0.995, "codes identical: " + c.codes);
    }

    /**
     * The fixture with the first 16 of the reference's calibration windows (-Dshrink.awq.parityWindows=128
     * for all: the CPU reference takes about a second per window on the GPU machine's 16 cores, and that
     * machine's time is scarce), w4 g128, clip, the CPU's default options (AutoAWQ's duo scaling). Ratio
     * choices and clip steps may differ only at near-ties of their losses (summed in another order); the
     * codes must agree to 99.8% (see the class comment) and the perplexity on 16 heldout windows to 0.1%.
     */
    @Test
    @Order(4)
    void fixtureStageMatchesCpu() {
        int[][] all = TokenWindows.read(shared().resolve("golden/fixture-llama-14m.calib-c4-128x512.safetensors"));
        int n = Integer.getInteger("shrink.awq.parityWindows", 16);
        int[][] windows = java.util.Arrays.copyOf(all, Math.min(n, all.length));
        AwqStage.Config cfg = new AwqStage.Config(128, true, true, false, 8);
        Compared c = compare(fixture(), windows, cfg);
        int[] ids = heldoutIds();
        ids = java.util.Arrays.copyOf(ids, Math.min(ids.length, 512 * Integer.getInteger("shrink.awq.parityPplWindows", 16)));
        double pCpu = ppl(c.cpuDir, ids), pGpu = ppl(c.gpuDir, ids);
        System.out.printf("fixture AWQ w4 g128: heldout ppl (%d windows) cpu %.5f gpu %.5f (%+.4f%%)%n", ids.length / 512,
                pCpu, pGpu, 100 * (pGpu / pCpu - 1));
        assertTrue(c.clipStepsDiffer <= 0.01 * c.clipSteps, c.clipStepsDiffer + " of " + c.clipSteps + " clip steps differ");
        // measured on an H100: 99.827% (276 of 71,424 clip steps differ; every ratio the same); see the class comment
        assertTrue(c.codes >= 0.998, "codes identical: " + c.codes);
        assertTrue(Math.abs(pGpu / pCpu - 1) <= 1e-3, "ppl gpu " + pGpu + " vs cpu " + pCpu);
    }

    private record Compared(int ratiosDiffer, int clipStepsDiffer, long clipSteps, double codes, Path cpuDir, Path gpuDir) {
    }

    private Compared compare(Path model, int[][] windows, AwqStage.Config cfg) {
        Ops cpuOps = Backends.select("cpu", 0);
        AwqStage.Result cpu, gpu;
        Path cpuDir = tmp.resolve("cpu-" + model.getFileName()), gpuDir = tmp.resolve("gpu-" + model.getFileName());
        try (ModelDir dir = ModelDir.open(model)) {
            WeightSource src = WeightSource.of(dir.weights());
            cpu = AwqStage.run(dir, src, windows, cfg, cpuOps, true);
            gpu = AwqStage.run(dir, src, windows, cfg, cuda, true);
            AwqCheckpoint.write(dir, cpuDir, cpu.quantized(), cpu.modified(), cfg.groupSize(), AwqCheckpoint.Export.GEMM, null,
                    false);
            AwqCheckpoint.write(dir, gpuDir, gpu.quantized(), gpu.modified(), cfg.groupSize(), AwqCheckpoint.Export.GEMM, null,
                    false);
        }
        assertEquals(cpu.quantized().keySet(), gpu.quantized().keySet());
        assertEquals(cpu.scalePlans().size(), gpu.scalePlans().size(), "scale plans");
        assertEquals(cpu.clipPlans().size(), gpu.clipPlans().size(), "clip plans");
        int ratiosDiffer = 0;
        for (int i = 0; i < cpu.scalePlans().size(); i++) {
            ScalePlan a = cpu.scalePlans().get(i), b = gpu.scalePlans().get(i);
            assertEquals(a.previous() + a.consumers(), b.previous() + b.consumers());
            for (int r = 0; r < a.losses().length; r++) {
                assertEquals(a.losses()[r], b.losses()[r], 1e-3 * Math.abs(a.losses()[r]) + 1e-12,
                        "layer " + a.layer() + " " + a.previous() + " loss at ratio " + r);
            }
            if (a.best() != b.best()) {
                // only a near-tie may go the other way: the CPU's own losses at both ratios agree to 1e-4
                double gap = Math.abs(a.losses()[b.best()] - a.loss());
                assertTrue(gap <= 1e-4 * a.loss(), "layer " + a.layer() + " " + a.previous() + ": gpu ratio " + b.ratio()
                        + " where the cpu's loss is " + a.losses()[b.best()] + ", cpu ratio " + a.ratio() + " loss " + a.loss());
                ratiosDiffer++;
                System.out.printf("  layer %d %s: cpu ratio %.2f (loss %.8g), gpu %.2f (loss %.8g; cpu's loss there %.8g)%n",
                        a.layer(), a.previous(), a.ratio(), a.loss(), b.ratio(), b.loss(), a.losses()[b.best()]);
            }
        }
        int clipDiffer = 0;
        long clipSteps = 0;
        for (int i = 0; i < cpu.clipPlans().size(); i++) {
            int[] a = cpu.clipPlans().get(i).steps(), b = gpu.clipPlans().get(i).steps();
            for (int j = 0; j < a.length; j++) {
                clipDiffer += a[j] != b[j] ? 1 : 0;
            }
            clipSteps += a.length;
        }
        long same = 0, total = 0;
        for (Map.Entry<String, QuantizedLinear> e : cpu.quantized().entrySet()) {
            int[] x = e.getValue().codes(), y = gpu.quantized().get(e.getKey()).codes();
            for (int i = 0; i < x.length; i++) {
                same += x[i] == y[i] ? 1 : 0;
            }
            total += x.length;
        }
        double codes = same / (double) total;
        System.out.printf("%s: %d of %d mappings chose another ratio, %d of %d clip steps differ, codes identical %.6f;"
                        + " cpu %.1f s, gpu %.1f s%n", model.getFileName(), ratiosDiffer, cpu.scalePlans().size(), clipDiffer,
                clipSteps, codes, cpu.seconds(), gpu.seconds());
        return new Compared(ratiosDiffer, clipDiffer, clipSteps, codes, cpuDir, gpuDir);
    }

    private static double ppl(Path dir, int[] ids) {
        try (ModelDir m = ModelDir.open(dir)) {
            CausalLM lm = CausalLM.load(WeightSources.forModel(m), m.config(), m.spec(), Backends.select("cpu", 0));
            return Perplexity.evaluate(lm, "heldout", ids, 512, 0, true).ppl();
        }
    }

    /** Heldout token windows (-Dshrink.cuda.heldoutTokens: the GPU machine has no tokenizer library). */
    private static int[] heldoutIds() {
        String file = System.getProperty("shrink.gptq.heldoutTokens", System.getProperty("shrink.cuda.heldoutTokens"));
        assumeTrue(file != null && !file.isBlank(), "no heldout token windows given (-Dshrink.cuda.heldoutTokens)");
        int[][] w = TokenWindows.read(Path.of(file));
        int[] ids = new int[w.length * w[0].length];
        for (int i = 0; i < w.length; i++) {
            System.arraycopy(w[i], 0, ids, i * w[0].length, w[0].length);
        }
        return ids;
    }
}
