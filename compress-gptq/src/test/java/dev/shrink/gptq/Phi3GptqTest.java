package dev.shrink.gptq;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shrink.core.forward.FusedLinears;
import dev.shrink.core.forward.WeightSource;
import dev.shrink.core.model.ModelDir;
import dev.shrink.core.ops.Backends;
import dev.shrink.core.ops.Ops;
import dev.shrink.core.quant.GptqPacking;
import dev.shrink.core.quant.QuantizedLinear;
import dev.shrink.core.safetensors.WeightStore;
import dev.shrink.eval.ArchFixtures;
import dev.shrink.eval.WeightSources;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * GPTQ of Phi-3 (arch/phi3, transformers' tiny random model, whose checkpoint stores q|k|v as
 * self_attn.qkv_proj and gate|up as mlp.gate_up_proj): the stage quantizes the parts apart from one
 * Hessian (act-order: one permutation), and the folder keeps the fused names, as GPTQModel writes them and
 * vLLM reads them: qkv_proj.qweight's columns are q's, k's and v's own packed words, qzeros and scales
 * likewise, one g_idx. Read back by Shrink's loader, it is exactly the stage's dequantized parts; its
 * logits are those of the source with the parts replaced, and near the source's.
 */
class Phi3GptqTest {
    @TempDir
    Path tmp;

    static int[][] windows(int n, int T, int vocab, long seed) {
        return ArchFixtures.randomWindows(n, T, 0, vocab, seed);
    }

    /** The layer's linear as the writer holds it: fp16 scales. */
    static float[] dequantizedFp16(QuantizedLinear q) {
        float[] s = q.scales().clone();
        for (int i = 0; i < s.length; i++) {
            s[i] = Float.float16ToFloat(Float.floatToFloat16(s[i]));
        }
        return new QuantizedLinear(q.name(), q.N(), q.K(), q.bits(), q.groupSize(), q.codes(), s, q.zeros(), q.gIdx(),
                q.bias()).dequantize();
    }

    @ParameterizedTest
    @CsvSource({"cpu, true", "cpu-reference, false"})
    void foldersKeepTheFusedNamesAndReadBackAsTheStageQuantized(String backend, boolean actOrder) {
        Path src = ArchFixtures.path("phi3"), out = tmp.resolve("phi3-gptq");
        Ops ops = Backends.select(backend, 0);
        int bits = 4, group = 32;
        GptqStage.Config cfg = new GptqStage.Config("gptq", QuantScheme.of(bits, group, true), actOrder, false, true,
                0.01, 128, 4);
        GptqStage.Result r = GptqStage.compress(src, out, cfg, windows(8, 32, 256, 1), new LinkedHashMap<>(Map.of("stage", "gptq")),
                "shrink:test", ops, true, false);
        assertEquals(3 * 7, r.quantized().size(), "every part quantized apart");

        try (ModelDir source = ModelDir.open(src); ModelDir q = ModelDir.open(out)) {
            WeightStore store = q.weights();
            for (String name : store.names()) {
                for (String part : List.of("q_proj", "k_proj", "v_proj", "gate_proj", "up_proj")) {
                    assertFalse(name.contains("." + part + "."), "no part written apart: " + name);
                }
            }
            var qc = q.config().raw().get("quantization_config");
            assertEquals("gptq", qc.get("quant_method").asText());
            assertEquals(actOrder, qc.get("desc_act").asBoolean());
            assertEquals("gptq", qc.get("checkpoint_format").asText(), "symmetric 4-bit: v1");
            assertFalse(qc.has("modules_to_not_convert"), "everything quantized");

            int K = 64, G = K / group, perWord = 32 / bits;
            for (int layer = 0; layer < 3; layer++) {
                String p = "model.layers." + layer + ".";
                for (var fused : Map.of("self_attn.qkv_proj", List.of("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
                        "mlp.gate_up_proj", List.of("mlp.gate_proj", "mlp.up_proj")).entrySet()) {
                    String x = p + fused.getKey();
                    int N = fused.getValue().stream().mapToInt(part -> r.quantized().get(p + part).N()).sum();
                    assertEquals(fused.getKey().startsWith("mlp") ? 256 : 192, N);
                    assertArrayEquals(new long[] {K * bits / 32, N}, store.info(x + ".qweight").shape(), x);
                    assertArrayEquals(new long[] {G, N / perWord}, store.info(x + ".qzeros").shape(), x);
                    assertArrayEquals(new long[] {G, N}, store.info(x + ".scales").shape(), x);
                    assertArrayEquals(new long[] {K}, store.info(x + ".g_idx").shape(), x);
                    int[] qweight = store.ints(x + ".qweight"), qzeros = store.ints(x + ".qzeros"), gIdx = store.ints(x + ".g_idx");
                    float[] scales = store.floats(x + ".scales");
                    int n0 = 0;
                    for (String part : fused.getValue()) {
                        QuantizedLinear ql = r.quantized().get(p + part);
                        int n = ql.N();
                        // byte level: the fused tensors' column slices are the part packed on its own
                        assertArrayEquals(GptqPacking.packQweight(ql.codes(), n, K, bits),
                                columns(qweight, K * bits / 32, N, n0, n), part + " qweight");
                        assertArrayEquals(GptqPacking.packQzeros(ql.zeros(), G, n, bits, true),
                                columns(qzeros, G, N / perWord, n0 / perWord, n / perWord), part + " qzeros");
                        float[] s16 = ql.scales().clone();
                        for (int i = 0; i < s16.length; i++) {
                            s16[i] = Float.float16ToFloat(Float.floatToFloat16(s16[i]));
                        }
                        assertArrayEquals(s16, columns(scales, G, N, n0, n), part + " scales");
                        assertArrayEquals(ql.gIdx(), gIdx, part + ": the one g_idx");
                        n0 += n;
                    }
                }
            }

            // Shrink's loader: exactly the stage's dequantized parts; logits those of the source with them
            WeightSource back = WeightSources.forModel(q);
            Map<String, float[]> parts = new LinkedHashMap<>();
            r.quantized().forEach((x, ql) -> {
                parts.put(x + ".weight", dequantizedFp16(ql));
                assertArrayEquals(parts.get(x + ".weight"), back.floats(x + ".weight"), x);
            });
            int V = source.config().vocab();
            float[] got = ArchFixtures.logits(src, q, back, ops);
            float[] expected = ArchFixtures.logits(src, source, ArchFixtures.overlay(FusedLinears.of(source), parts), ops);
            assertArrayEquals(expected, got, 1e-5f * ArchFixtures.maxAbs(expected));
            double nllSrc = ArchFixtures.meanNll(src, ArchFixtures.logits(src, source, FusedLinears.of(source), ops), V);
            double nllQ = ArchFixtures.meanNll(src, got, V);
            System.out.printf("phi3 gptq w4 g32 %s act-order %s: NLL %.4f → %.4f%n", backend, actOrder, nllSrc, nllQ);
            assertTrue(Math.abs(nllQ - nllSrc) < 0.01 * nllSrc, nllSrc + " → " + nllQ);
            assertFalse(Arrays.equals(got, ArchFixtures.logits(src, source, FusedLinears.of(source), ops)), "quantized");
        }
    }


    /** Columns [c0, c0 + n) of a row-major [rows, cols] matrix. */
    static int[] columns(int[] m, int rows, int cols, int c0, int n) {
        int[] out = new int[rows * n];
        for (int r = 0; r < rows; r++) {
            System.arraycopy(m, r * cols + c0, out, r * n, n);
        }
        return out;
    }

    static float[] columns(float[] m, int rows, int cols, int c0, int n) {
        float[] out = new float[rows * n];
        for (int r = 0; r < rows; r++) {
            System.arraycopy(m, r * cols + c0, out, r * n, n);
        }
        return out;
    }
}
