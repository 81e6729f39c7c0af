package dev.shrink.gptq;

import static dev.shrink.gptq.GptqTestSupport.fixture;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.shrink.calib.EvalText;
import dev.shrink.core.forward.CausalLM;
import dev.shrink.core.forward.KvCacheType;
import dev.shrink.core.forward.WeightSource;
import dev.shrink.core.model.ModelDir;
import dev.shrink.core.ops.Backends;
import dev.shrink.core.safetensors.TokenWindows;
import dev.shrink.eval.LoadedModel;
import dev.shrink.eval.Perplexity;
import dev.shrink.eval.PplResult;
import dev.shrink.eval.ResidentModel;
import dev.shrink.eval.WeightSources;
import dev.shrink.kernels.cuda.Cuda;
import dev.shrink.kernels.cuda.CudaOps;
import dev.shrink.kernels.cuda.GemmMath;
import java.nio.file.Path;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The GPU-resident evaluation ({@link ResidentModel}: the one forward over device buffers, NLL reduced
 * on the device) against the CPU's perplexity of the same folder, on fixture-llama-14m's first 8
 * heldout windows of 512: the bf16 fixture itself, and a GPTQ-packed w4 g128 folder of it (RTN
 * codes, written as the gptq command writes them). In fp32 math the figures agree to 1e-4 relative
 * (the weights are the same float32 values); in tf32 and fp16 math (fp16 weights, packed codes
 * dequantized on the GPU) to 1%. With an int8 KV cache, to 1e-3 (the device quantizes K and V as the
 * host does, bit for bit, but of inputs that differ by rounding). Skipped with the reason where
 * there is no GPU.
 */
class ResidentPerplexityParityTest {
    private static CudaOps cuda;
    private static String skipReason;

    @TempDir
    Path tmp;

    @BeforeAll
    static void open() {
        Cuda.Availability a = Cuda.availability();
        if (!a.available()) {
            skipReason = "no CUDA device: " + a.reason();
            return;
        }
        cuda = CudaOps.open(0);
    }

    @BeforeEach
    void needsCuda() {
        assumeTrue(cuda != null, skipReason);
    }

    @AfterAll
    static void close() {
        if (cuda != null) {
            cuda.setMath(GemmMath.FP32);
            cuda.close();
        }
    }

    @Test
    void denseFixtureMatchesCpu() {
        Path model = fixture();
        int[] ids = heldoutIds(model);
        double cpu = cpu(model, ids, KvCacheType.FP16);
        double fp32 = resident(model, ids, GemmMath.FP32, KvCacheType.FP16, 0);
        double tf32 = resident(model, ids, GemmMath.TF32, KvCacheType.FP16, 0);
        double fp16 = resident(model, ids, GemmMath.FP16, KvCacheType.FP16, 0);
        System.out.printf("fixture heldout 8x512: cpu %.6f, resident fp32 %.6f (%.2e), tf32 %.6f (%.2e), fp16 %.6f (%.2e)%n",
                cpu, fp32, rel(fp32, cpu), tf32, rel(tf32, cpu), fp16, rel(fp16, cpu));
        assertTrue(rel(fp32, cpu) < 1e-4, () -> "fp32 " + fp32 + " vs cpu " + cpu);
        assertTrue(rel(tf32, cpu) < 1e-2, () -> "tf32 " + tf32 + " vs cpu " + cpu);
        assertTrue(rel(fp16, cpu) < 1e-2, () -> "fp16 " + fp16 + " vs cpu " + cpu);
        double cpu8 = cpu(model, ids, KvCacheType.INT8);
        double gpu8 = resident(model, ids, GemmMath.FP32, KvCacheType.INT8, 0);
        System.out.printf("  int8 KV cache: cpu %.6f, resident fp32 %.6f (%.2e)%n", cpu8, gpu8, rel(gpu8, cpu8));
        assertTrue(rel(gpu8, cpu8) < 1e-3, () -> "int8 KV " + gpu8 + " vs cpu " + cpu8);
        assertTrue(cpu8 != cpu, "the int8 cache changes the figure");
    }

    @Test
    void packedGptqFolderMatchesCpu() {
        Path model = fixture();
        int[] ids = heldoutIds(model);
        Path out = tmp.resolve("rtn-w4");
        GptqStage.Config cfg = new GptqStage.Config("rtn", QuantScheme.of(4, 128, true), false, false, true, 0.01, 128, 8);
        try (ModelDir dir = ModelDir.open(model)) {
            GptqStage.Result r = GptqStage.run(dir, WeightSource.of(dir.weights()), new int[][] {ids}, cfg,
                    Backends.select("cpu", 0), true);
            GptqCheckpoint.write(dir, out, r.quantized(), new GptqFormat(4, 128, true, false, false, true, 0.01,
                    "shrink:test"), null);
        }
        double cpu = cpu(out, ids, KvCacheType.FP16);
        double fp32 = resident(out, ids, GemmMath.FP32, KvCacheType.FP16, 0);
        int layers;
        try (ModelDir d = ModelDir.open(out)) {
            layers = d.config().layers();
        }
        double fp16 = resident(out, ids, GemmMath.FP16, KvCacheType.FP16, 7 * layers);
        System.out.printf("GPTQ-packed w4 g128 heldout 8x512: cpu %.6f, resident fp32 %.6f (%.2e), fp16 packed %.6f (%.2e)%n",
                cpu, fp32, rel(fp32, cpu), fp16, rel(fp16, cpu));
        assertTrue(rel(fp32, cpu) < 1e-4, () -> "fp32 " + fp32 + " vs cpu " + cpu);
        assertTrue(rel(fp16, cpu) < 1e-2, () -> "fp16 packed " + fp16 + " vs cpu " + cpu);
    }

    private static double rel(double a, double b) {
        return Math.abs(a / b - 1);
    }

    private static double cpu(Path dir, int[] ids, KvCacheType kv) {
        try (ModelDir m = ModelDir.open(dir)) {
            CausalLM lm = CausalLM.load(WeightSources.forModel(m), m.config(), m.spec(), Backends.select("cpu", 0));
            return Perplexity.evaluate(lm.withKvCache(kv), "heldout", ids, 512, 8, true).ppl();
        }
    }

    /** The resident model's perplexity; {@code packed} > 0: that many linears must stay packed on the GPU. */
    private static double resident(Path dir, int[] ids, GemmMath math, KvCacheType kv, int packed) {
        cuda.setMath(math);
        try (ModelDir m = ModelDir.open(dir); ResidentModel r = ResidentModel.load(m, cuda, kv, true)) {
            if (packed > 0) {
                assertTrue(r.weightsNote().contains(" " + packed + " packed"), r.weightsNote());
            }
            PplResult p = Perplexity.evaluate(r, "heldout", ids, 512, 8, true);
            assertEquals(8 * 511, p.predictions());
            assertTrue(p.backend().startsWith("cuda (" + math.label()), p.backend());
            return p.ppl();
        } finally {
            cuda.setMath(GemmMath.FP32);
        }
    }

    /** The first 8 heldout windows of 512: from -Dshrink.cuda.heldoutTokens on the GPU machine (no tokenizer library there). */
    private static int[] heldoutIds(Path model) {
        String file = System.getProperty("shrink.cuda.heldoutTokens");
        if (file != null && !file.isBlank()) {
            int[][] w = TokenWindows.read(Path.of(file));
            int[] ids = new int[8 * 512];
            for (int i = 0; i < 8; i++) {
                System.arraycopy(w[i], 0, ids, i * 512, 512);
            }
            return ids;
        }
        try (LoadedModel m = LoadedModel.open(model, Backends.select("cpu", 0))) {
            return java.util.Arrays.copyOf(m.tokenStream(EvalText.load("heldout").text()), 8 * 512);
        }
    }
}
