package dev.shrink.awq;

import static dev.shrink.awq.AwqTestSupport.GROUP;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.shrink.core.ShrinkException;
import dev.shrink.core.forward.CausalLM;
import dev.shrink.core.forward.Taps;
import dev.shrink.core.forward.WeightSource;
import dev.shrink.core.model.ModelDir;
import dev.shrink.core.ops.Backends;
import dev.shrink.core.ops.Ops;
import dev.shrink.core.quant.AwqPacking;
import dev.shrink.core.quant.QuantizedLinear;
import dev.shrink.core.safetensors.SafetensorsWriter;
import dev.shrink.core.safetensors.TensorData;
import dev.shrink.core.tensor.DType;
import dev.shrink.eval.AwqWeightSource;
import dev.shrink.eval.WeightSources;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The AutoAWQ GEMM folder: layout, config, what the eval reader makes of it, the fake export, refusals. */
class AwqCheckpointTest {
    @TempDir
    Path tmp;

    private final Ops ops = Backends.select("cpu", 0);

    private AwqStage.Result quantize(ModelDir m) {
        return AwqStage.run(m, WeightSource.of(m.weights()), AwqTestSupport.randomWindows(3, 16, 5),
                new AwqStage.Config(GROUP, true, true, false, 8), ops, true);
    }

    @Test
    void gemmFolderReadsBackAsTheQuantizedModel() throws IOException {
        Path dir = AwqTestSupport.syntheticModel(tmp.resolve("src"), "Qwen2ForCausalLM", 4, 21);
        Path out = tmp.resolve("awq");
        Path fake = tmp.resolve("fake");
        try (ModelDir m = ModelDir.open(dir)) {
            AwqStage.Result r = quantize(m);
            AwqCheckpoint.write(m, out, r.quantized(), r.modified(), GROUP, AwqCheckpoint.Export.GEMM,
                    Map.of("stage", "awq"), false);
            AwqCheckpoint.write(m, fake, r.quantized(), r.modified(), GROUP, AwqCheckpoint.Export.FAKE, null, false);

            JsonNode cfg = new ObjectMapper().readTree(out.resolve("config.json").toFile());
            JsonNode qc = cfg.get("quantization_config");
            assertEquals("{\"quant_method\":\"awq\",\"bits\":4,\"group_size\":32,\"zero_point\":true,\"version\":\"gemm\","
                    + "\"modules_to_not_convert\":null}", qc.toString());
            assertEquals("float16", cfg.get("torch_dtype").asText());
            assertEquals(64, cfg.get("hidden_size").asInt(), "the source's keys are kept");
            assertTrue(Files.exists(out.resolve("tokenizer.json")) && Files.exists(out.resolve("shrink-report.json")));
            assertFalse(new ObjectMapper().readTree(fake.resolve("config.json").toFile()).has("quantization_config"));
            try (Stream<Path> s = Files.list(tmp)) {
                assertEquals(0, s.filter(p -> p.getFileName().toString().contains(".tmp-")).count(), "no temp folder left");
            }

            try (ModelDir q = ModelDir.open(out); ModelDir f = ModelDir.open(fake)) {
                assertInstanceOf(AwqWeightSource.class, WeightSources.forModel(q));
                AwqWeightSource src = (AwqWeightSource) WeightSources.forModel(q);
                String v = "model.layers.1.self_attn.v_proj";
                assertEquals(DType.I32, q.weights().info(v + ".qweight").dtype());
                assertArrayEquals(new long[] {64, 64 / 8}, q.weights().info(v + ".qweight").shape(), "[K, N/8]");
                assertArrayEquals(new long[] {2, 64 / 8}, q.weights().info(v + ".qzeros").shape(), "[K/group, N/8]");
                assertArrayEquals(new long[] {2, 64}, q.weights().info(v + ".scales").shape(), "[K/group, N]");
                assertEquals(DType.F16, q.weights().info(v + ".scales").dtype());
                assertFalse(q.weights().has(v + ".weight"));
                for (QuantizedLinear ql : r.quantized().values()) {
                    QuantizedLinear back = src.linear(ql.name());
                    assertArrayEquals(ql.codes(), back.codes(), ql.name());
                    assertArrayEquals(ql.zeros(), back.zeros(), ql.name());
                    float[] expected = AwqCheckpoint.dequantizeFp16Scales(ql);
                    assertArrayEquals(expected, src.floats(ql.name() + ".weight"), ql.name());
                    // the fake export holds the same weights, rounded to fp16
                    float[] fw = f.weights().floats(ql.name() + ".weight");
                    for (int i = 0; i < fw.length; i++) {
                        assertEquals(Float.float16ToFloat(Float.floatToFloat16(expected[i])), fw[i], 0f);
                    }
                }
                // the v bias was divided by the v -> o scales, and written with its layer (fp16)
                float[] vb = r.modified().get(v + ".bias");
                float[] vbBack = q.weights().floats(v + ".bias");
                for (int i = 0; i < vb.length; i++) {
                    assertEquals(vb[i], vbBack[i], Math.abs(vb[i]) * 1e-3 + 1e-6);
                }
                assertTrue(Math.abs(vb[0] - m.weights().floats(v + ".bias")[0]) > 1e-6, "the bias was scaled");
                // norms were scaled; the F32 source keeps them F32
                String ln = "model.layers.0.input_layernorm.weight";
                assertEquals(DType.F32, q.weights().info(ln).dtype());
                assertArrayEquals(r.modified().get(ln), q.weights().floats(ln));

                // GEMM and fake folders compute the same model
                CausalLM a = CausalLM.load(WeightSources.forModel(q), q.config(), q.spec(), ops);
                CausalLM b = CausalLM.load(WeightSources.forModel(f), f.config(), f.spec(), ops);
                int[] tokens = AwqTestSupport.randomWindows(1, 16, 6)[0];
                float[] ha = a.hidden(tokens, 1, 16, null, Taps.NONE);
                float[] hb = b.hidden(tokens, 1, 16, null, Taps.NONE);
                assertTrue(AwqTestSupport.relDiff(hb, ha) < 1e-2, "fake vs GEMM: " + AwqTestSupport.relDiff(hb, ha));
            }
        }
    }

    @Test
    void skippedLayersAreNamedForLoaders() throws IOException {
        Path dir = AwqTestSupport.syntheticModel(tmp.resolve("src"), "LlamaForCausalLM", 4, 22);
        Path out = tmp.resolve("awq");
        try (ModelDir m = ModelDir.open(dir)) {
            AwqStage.Result r = AwqStage.run(m, WeightSource.of(m.weights()), AwqTestSupport.randomWindows(2, 8, 5),
                    new AwqStage.Config(128, true, true, true, 8), ops, true);
            AwqCheckpoint.write(m, out, r.quantized(), r.modified(), 128, AwqCheckpoint.Export.GEMM, null, false);
            JsonNode qc = new ObjectMapper().readTree(out.resolve("config.json").toFile()).get("quantization_config");
            JsonNode skip = qc.get("modules_to_not_convert");
            // six linears of each of the two layers, then the fused q|k|v and gate|up that vLLM looks up
            assertEquals(2 * (6 + 2), skip.size(), skip.toString());
            assertEquals("model.layers.0.self_attn.q_proj", skip.get(0).asText());
            assertEquals("model.layers.0.self_attn.qkv_proj", skip.get(6).asText());
            assertEquals("model.layers.0.mlp.gate_up_proj", skip.get(7).asText());
            try (ModelDir q = ModelDir.open(out)) {
                // the unquantized but scaled up_proj is written as floats; down_proj is packed
                assertTrue(q.weights().has("model.layers.0.mlp.up_proj.weight"));
                assertArrayEquals(r.modified().get("model.layers.0.mlp.up_proj.weight"),
                        q.weights().floats("model.layers.0.mlp.up_proj.weight"));
                assertTrue(q.weights().has("model.layers.0.mlp.down_proj.qweight"));
                CausalLM lm = CausalLM.load(WeightSources.forModel(q), q.config(), q.spec(), ops);
                float[] h = lm.hidden(new int[] {1, 5, 9, 3}, 1, 4, null, Taps.NONE);
                for (float v : h) {
                    assertTrue(Float.isFinite(v));
                }
            }
        }
    }

    @Test
    void refusesNonEmptyFoldersAndMismatchedLayers() throws IOException {
        Path dir = AwqTestSupport.syntheticModel(tmp.resolve("src"), "LlamaForCausalLM", 4, 23);
        Path busy = Files.createDirectories(tmp.resolve("busy"));
        Files.writeString(busy.resolve("keep.txt"), "mine");
        try (ModelDir m = ModelDir.open(dir)) {
            AwqStage.Result r = quantize(m);
            ShrinkException e = assertThrows(ShrinkException.class, () -> AwqCheckpoint.write(m, busy, r.quantized(),
                    r.modified(), GROUP, AwqCheckpoint.Export.GEMM, null, false));
            assertTrue(e.getMessage().contains("not empty"), e.getMessage());
            assertEquals("mine", Files.readString(busy.resolve("keep.txt")));
            assertThrows(ShrinkException.class, () -> AwqCheckpoint.write(m, dir, r.quantized(), r.modified(), GROUP,
                    AwqCheckpoint.Export.GEMM, null, true), "never over the source");
            assertThrows(IllegalArgumentException.class, () -> AwqCheckpoint.write(m, tmp.resolve("g"), r.quantized(),
                    r.modified(), 64, AwqCheckpoint.Export.GEMM, null, false), "group size differs from the layers'");
            assertFalse(Files.exists(tmp.resolve("g")));
        }
    }

    /**
     * A folder laid out the way AutoAWQ writes it (an older one: settings only in quant_config.json,
     * fp16 everywhere) is read by the eval module with FORMATS.md's dequantization, decoded here
     * independently of AwqPacking: w[n][k] = s[k/g][n] · (nibble(n) of qweight[k][n/8] − zero).
     */
    @Test
    void readsAnAutoAwqFolder() throws IOException {
        Path dir = tmp.resolve("autoawq");
        Files.createDirectories(dir);
        int N = 16, K = 64, g = 32, G = K / g;
        Random rnd = new Random(9);
        int[] qweight = new int[K * N / 8];
        int[] qzeros = new int[G * N / 8];
        for (int i = 0; i < qweight.length; i++) {
            qweight[i] = rnd.nextInt();
        }
        for (int i = 0; i < qzeros.length; i++) {
            qzeros[i] = rnd.nextInt();
        }
        float[] scales = new float[G * N];
        for (int i = 0; i < scales.length; i++) {
            scales[i] = Float.float16ToFloat(Float.floatToFloat16(0.001f + rnd.nextFloat() * 0.01f));
        }
        String x = "model.layers.0.mlp.down_proj";
        SafetensorsWriter.write(dir.resolve("model.safetensors"), List.of(
                TensorData.ofInts(x + ".qweight", new long[] {K, N / 8}, qweight),
                TensorData.ofInts(x + ".qzeros", new long[] {G, N / 8}, qzeros),
                TensorData.ofFloats(x + ".scales", new long[] {G, N}, scales, DType.F16)), null);
        Files.writeString(dir.resolve("quant_config.json"),
                "{\"zero_point\": true, \"q_group_size\": 32, \"w_bit\": 4, \"version\": \"GEMM\"}");
        int[] reverse = {0, 4, 1, 5, 2, 6, 3, 7}; // FORMATS.md: column 8c + j sits at nibble reverse[j]
        try (var store = dev.shrink.core.safetensors.WeightStore.open(dir)) {
            AwqWeightSource src = new AwqWeightSource(store, AwqWeightSource.settings(dir, null));
            assertArrayEquals(new long[] {N, K}, src.shape(x + ".weight"));
            float[] w = src.floats(x + ".weight");
            for (int n = 0; n < N; n++) {
                for (int k = 0; k < K; k++) {
                    int code = (qweight[k * N / 8 + n / 8] >>> (4 * reverse[n % 8])) & 15;
                    int zero = (qzeros[(k / g) * N / 8 + n / 8] >>> (4 * reverse[n % 8])) & 15;
                    assertEquals(scales[(k / g) * N + n] * (code - zero), w[n * K + k], 0f, "(" + n + ", " + k + ")");
                }
            }
            assertArrayEquals(AwqPacking.unpackQweight(qweight, N, K), src.linear(x).codes());
        }
        // unsupported settings name the file
        Files.writeString(dir.resolve("quant_config.json"), "{\"zero_point\": true, \"q_group_size\": 32, \"w_bit\": 4, \"version\": \"GEMV\"}");
        ShrinkException e = assertThrows(ShrinkException.class, () -> AwqWeightSource.settings(dir, null));
        assertTrue(e.getMessage().contains("quant_config.json") && e.getMessage().contains("GEMV"), e.getMessage());
        Files.writeString(dir.resolve("quant_config.json"), "{\"zero_point\": true, \"q_group_size\": 32, \"w_bit\": 3}");
        assertThrows(ShrinkException.class, () -> AwqWeightSource.settings(dir, null));
    }
}
