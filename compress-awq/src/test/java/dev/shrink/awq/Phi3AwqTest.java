package dev.shrink.awq;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shrink.core.forward.FusedLinears;
import dev.shrink.core.forward.WeightSource;
import dev.shrink.core.model.ModelDir;
import dev.shrink.core.ops.Backends;
import dev.shrink.core.ops.Ops;
import dev.shrink.core.quant.AwqPacking;
import dev.shrink.core.quant.QuantizedLinear;
import dev.shrink.core.safetensors.WeightStore;
import dev.shrink.eval.ArchFixtures;
import dev.shrink.eval.WeightSources;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * AWQ of Phi-3 (arch/phi3: q|k|v stored as self_attn.qkv_proj, gate|up as mlp.gate_up_proj). The stage
 * scales the parts as LLaMA's: q/k/v from input_layernorm, gate/up from post_attention_layernorm, v → o
 * (v's rows only: what AutoAWQ's scale_fc_fc does to qkv_proj, whose last rows are v's) and up → down
 * (up's rows of gate_up_proj). The GEMM folder keeps the fused names: qkv_proj.qweight/qzeros are the
 * parts' own interleaved words side by side. Read back by Shrink's loader it is exactly the stage's
 * dequantized parts and scaled norms, and its perplexity stays near the source's.
 */
class Phi3AwqTest {
    @TempDir
    Path tmp;

    @ParameterizedTest
    @ValueSource(strings = {"cpu", "cpu-reference"})
    void gemmFolderKeepsTheFusedNamesAndReadsBackAsTheStageQuantized(String backend) {
        Path src = ArchFixtures.path("phi3"), out = tmp.resolve("phi3-awq");
        Ops ops = Backends.select(backend, 0);
        int group = 32, K = 64, G = K / group;
        AwqStage.Config cfg = new AwqStage.Config(group, true, true, true, 4);
        AwqStage.Result r = AwqStage.compress(src, out, cfg, AwqCheckpoint.Export.GEMM, AwqTestSupport.randomWindows(8, 32, 2),
                new LinkedHashMap<>(Map.of("stage", "awq")), ops, true, false);
        assertEquals(3 * 7, r.quantized().size(), "every part quantized apart");
        for (int layer = 0; layer < 3; layer++) {
            String p = "model.layers." + layer + ".";
            int layer_ = layer;
            List<String> searched = r.mappings().stream().filter(m -> m.layer() == layer_ && m.status().equals("searched"))
                    .map(AwqStage.MappingReport::previous).toList();
            assertEquals(List.of(p + "input_layernorm", p + "self_attn.v_proj", p + "post_attention_layernorm", p + "mlp.up_proj"),
                    searched,
                    "AutoAWQ's four pairs (no GQA in the fixture: v → o applies)");
            assertEquals(List.of(p + "input_layernorm.weight", p + "post_attention_layernorm.weight"),
                    r.modified().keySet().stream().filter(n -> n.startsWith(p)).toList(), "the norms; v and up are quantized");
        }

        try (ModelDir source = ModelDir.open(src); ModelDir q = ModelDir.open(out)) {
            WeightStore store = q.weights();
            for (String name : store.names()) {
                for (String part : List.of("q_proj", "k_proj", "v_proj", "gate_proj", "up_proj")) {
                    assertFalse(name.contains("." + part + "."), "no part written apart: " + name);
                }
            }
            var qc = q.config().raw().get("quantization_config");
            assertEquals("awq", qc.get("quant_method").asText());
            assertEquals("gemm", qc.get("version").asText());
            assertTrue(qc.get("modules_to_not_convert").isNull(), "everything quantized");
            for (int layer = 0; layer < 3; layer++) {
                String p = "model.layers." + layer + ".";
                for (var fused : Map.of("self_attn.qkv_proj", List.of("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
                        "mlp.gate_up_proj", List.of("mlp.gate_proj", "mlp.up_proj")).entrySet()) {
                    String x = p + fused.getKey();
                    int N = fused.getKey().startsWith("mlp") ? 256 : 192;
                    assertArrayEquals(new long[] {K, N / 8}, store.info(x + ".qweight").shape(), x);
                    assertArrayEquals(new long[] {G, N / 8}, store.info(x + ".qzeros").shape(), x);
                    assertArrayEquals(new long[] {G, N}, store.info(x + ".scales").shape(), x);
                    int[] qweight = store.ints(x + ".qweight"), qzeros = store.ints(x + ".qzeros");
                    int n0 = 0;
                    for (String part : fused.getValue()) {
                        QuantizedLinear ql = r.quantized().get(p + part);
                        int n = ql.N();
                        // byte level: the fused tensors' column slices are the part packed on its own
                        assertArrayEquals(AwqPacking.packQweight(ql.codes(), n, K), columns(qweight, K, N / 8, n0 / 8, n / 8),
                                part + " qweight");
                        assertArrayEquals(AwqPacking.packQzeros(ql.zeros(), G, n), columns(qzeros, G, N / 8, n0 / 8, n / 8),
                                part + " qzeros");
                        n0 += n;
                    }
                    assertEquals(N, n0);
                }
            }

            WeightSource back = WeightSources.forModel(q);
            Map<String, float[]> expected = new LinkedHashMap<>(r.modified());
            r.quantized().forEach((x, ql) -> {
                expected.put(x + ".weight", AwqCheckpoint.dequantizeFp16Scales(ql));
                assertArrayEquals(expected.get(x + ".weight"), back.floats(x + ".weight"), x);
            });
            r.modified().forEach((name, v) -> assertArrayEquals(v, back.floats(name), name));
            float[] got = ArchFixtures.logits(src, q, back, ops);
            float[] want = ArchFixtures.logits(src, source, ArchFixtures.overlay(FusedLinears.of(source), expected), ops);
            assertArrayEquals(want, got, 1e-5f * ArchFixtures.maxAbs(want));
            int V = source.config().vocab();
            double nllSrc = ArchFixtures.meanNll(src, ArchFixtures.logits(src, source, FusedLinears.of(source), ops), V);
            double nllQ = ArchFixtures.meanNll(src, got, V);
            System.out.printf("phi3 awq w4 g32 %s: NLL %.4f → %.4f%n", backend, nllSrc, nllQ);
            assertTrue(nllQ != nllSrc && Math.abs(nllQ - nllSrc) < 0.01 * nllSrc, nllSrc + " → " + nllQ);
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
}
