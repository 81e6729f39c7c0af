package dev.shrink.gptq;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shrink.core.model.ArchitectureSpec;
import dev.shrink.core.model.ModelConfig;
import dev.shrink.core.sparse.SparsityPattern;
import dev.shrink.kernels.cuda.GemmMath;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * What runs where, without a GPU: which GPTQ options the GPU block loop takes (the others go to the
 * host loop), the spec's true-sequential groups mapped to its four stages in the spec's own order,
 * its memory estimate against the sizes of its buffers (and the 7B job's measured peak), and the
 * benchmark's in-memory random model (shapes, determinism, scale).
 */
class DeviceGptqPlanTest {
    private static GptqStage.Config cfg(String method, QuantScheme s, boolean trueSequential, int block,
                                        SparsityPattern prune) {
        return new GptqStage.Config(method, s, false, false, trueSequential, 0.01, block, 8, prune, null);
    }

    @Test
    void takesPlainGptqAndSaysWhatItDoesNotTake() {
        QuantScheme w4 = QuantScheme.of(4, 128, true);
        for (ArchitectureSpec spec : ArchitectureSpec.ALL) {
            // LLaMA's block runs on the device loop; the others (Qwen3, Gemma) say why not and take the host loop
            assertEquals(spec.plainLlamaBlock() ? null : spec.unlikeLlama(),
                    DeviceGptq.unsupported(cfg("gptq", w4, true, 128, null), spec), spec.family());
        }
        assertTrue(DeviceGptq.unsupported(cfg("gptq", w4, true, 128, null), ArchitectureSpec.GEMMA2).startsWith("gemma2's"));
        ArchitectureSpec llama = ArchitectureSpec.LLAMA;
        assertNull(DeviceGptq.unsupported(new GptqStage.Config("gptq", QuantScheme.of(3, -1, false), true, true, true,
                0.05, 64, 8), llama), "asym, per-row, act-order, static groups");
        assertEquals("--mse", DeviceGptq.unsupported(cfg("gptq", w4.withMse(true), true, 128, null), llama));
        assertEquals("--no-true-sequential", DeviceGptq.unsupported(cfg("gptq", w4, false, 128, null), llama));
        assertEquals("--block-size above 128", DeviceGptq.unsupported(cfg("gptq", w4, true, 256, null), llama));
        assertEquals("method sparsegpt", DeviceGptq.unsupported(cfg("sparsegpt", w4, true, 128,
                new SparsityPattern.NofM(2, 4)), llama));
    }

    @Test
    void stagesFollowTheSpecsOwnGroupOrder() {
        List<List<String>> g = DeviceGptq.stageGroups(ArchitectureSpec.LLAMA);
        assertEquals(ArchitectureSpec.LLAMA.sequentialGroups(), g);
        assertEquals(List.of("self_attn.k_proj", "self_attn.v_proj", "self_attn.q_proj"), g.get(0));
        assertEquals(List.of("mlp.down_proj"), g.get(3));
    }

    @Test
    void memoryEstimateCoversTheBuffers() {
        ModelConfig mc = GptqDeviceBench.config(32, 4096, 11008, 32, 32, 32000);
        long rows = 128L * 2048;
        long activations = rows * (4096 + 4096 + 11008) * 4;           // X, A, U
        long need = DeviceGptq.bytesNeeded(mc, 128, 2048, false);
        assertTrue(need > activations + 4L * 202_375_168, "activations and one block's float weights: " + need);
        // the 7B job measured 24.44 GiB of allocations at its peak on an H200 (device-bench.sh)
        double gib = need / (double) (1L << 30);
        assertTrue(gib > 24.4 && gib < 30, "estimate " + gib + " GiB");
        assertTrue(DeviceGptq.bytesNeeded(mc, 128, 2048, true) > need, "act-order needs permuted copies");
        assertEquals(8, DeviceGptq.chunkSequences(128, 2048));
        assertEquals(1, DeviceGptq.chunkSequences(3, 100_000));
    }

    @Test
    void randomModelHasTheShapesAndIsReproducible() {
        ModelConfig mc = GptqDeviceBench.config(2, 64, 160, 4, 2, 100);
        ArchitectureSpec spec = ArchitectureSpec.LLAMA;
        var a = new GptqDeviceBench.RandomWeights(mc, spec, 7);
        var b = new GptqDeviceBench.RandomWeights(mc, spec, 7);
        var c = new GptqDeviceBench.RandomWeights(mc, spec, 8);
        String down = spec.layer(1, "mlp.down_proj") + ".weight";
        assertArrayEquals(new long[] {64, 160}, a.shape(down));
        assertArrayEquals(new long[] {32, 64}, a.shape(spec.layer(0, "self_attn.k_proj") + ".weight"));
        float[] w = a.floats(down);
        assertArrayEquals(w, b.floats(down));
        assertTrue(!java.util.Arrays.equals(w, c.floats(down)), "another seed, other weights");
        double sum = 0, sq = 0;
        for (float v : w) {
            sum += v;
            sq += v * v;
        }
        double mean = sum / w.length, std = Math.sqrt(sq / w.length - mean * mean);
        assertTrue(Math.abs(mean) < 0.002 && Math.abs(std - 0.02) < 0.002, "N(0, 0.02²)-like: mean " + mean + ", std " + std);
        float[] norm = a.floats(spec.layer(0, spec.inputNorm()));
        for (float v : norm) {
            assertTrue(v > 0.9 && v < 1.1, "norm weight " + v);
        }
        assertThrows(IllegalArgumentException.class, () -> a.floats("no.such.tensor"));
    }

    @Test
    void gemmMathNames() {
        assertEquals(GemmMath.TF32, GemmMath.parse("TF32"));
        assertEquals("fp32", GemmMath.FP32.label());
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> GemmMath.parse("bf16"));
        assertEquals("unknown GEMM math 'bf16'; choose fp32, tf32 or fp16", e.getMessage());
    }
}
