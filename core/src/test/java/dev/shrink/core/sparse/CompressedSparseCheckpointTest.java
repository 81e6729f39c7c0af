package dev.shrink.core.sparse;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.shrink.core.ShrinkException;
import dev.shrink.core.model.ModelDir;
import dev.shrink.core.safetensors.SafetensorsWriter;
import dev.shrink.core.safetensors.TensorData;
import dev.shrink.core.safetensors.WeightStore;
import dev.shrink.core.sparse.CompressedSparse.Format;
import dev.shrink.core.tensor.DType;
import java.io.IOException;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@link CompressedSparseCheckpoint} on a tiny hand-made LLaMA folder: what is compressed decodes to
 * the given values, everything else is copied byte for byte, config.json keeps every key and gains the
 * compressed-tensors sparsity config, and refused inputs leave nothing behind.
 */
class CompressedSparseCheckpointTest {

    @TempDir
    Path tmp;

    private static final ObjectMapper JSON = new ObjectMapper();

    private static final String[] LINEARS = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
        "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"};

    /** hidden 8, intermediate 16, 2 layers, 2 heads of 4, 1 KV head, vocab 16, untied head; BF16 weights. */
    private Path tinyModel(String name, boolean withQuantConfig) throws IOException {
        Path dir = tmp.resolve(name);
        Files.createDirectories(dir);
        String qc = withQuantConfig ? ", \"quantization_config\": {\"quant_method\": \"gptq\", \"bits\": 4}" : "";
        Files.writeString(dir.resolve("config.json"), """
                {"architectures": ["LlamaForCausalLM"], "hidden_size": 8, "intermediate_size": 16,
                 "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 16,
                 "rms_norm_eps": 1e-5, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
                 "shrink": {"pruning": {"method": "magnitude", "pattern": "2:4"}}, "custom_key": [1, 2]%s}
                """.formatted(qc));
        Files.writeString(dir.resolve("tokenizer.json"), "{\"stand-in\": true}");
        Random rnd = new Random(3);
        List<TensorData> t = new ArrayList<>();
        t.add(bf16("model.embed_tokens.weight", rnd, 16, 8));
        for (int i = 0; i < 2; i++) {
            String p = "model.layers." + i + ".";
            t.add(bf16(p + "input_layernorm.weight", rnd, 8));
            t.add(bf16(p + "self_attn.q_proj.weight", rnd, 8, 8));
            t.add(bf16(p + "self_attn.k_proj.weight", rnd, 4, 8));
            t.add(bf16(p + "self_attn.v_proj.weight", rnd, 4, 8));
            t.add(bf16(p + "self_attn.o_proj.weight", rnd, 8, 8));
            t.add(bf16(p + "post_attention_layernorm.weight", rnd, 8));
            t.add(bf16(p + "mlp.gate_proj.weight", rnd, 16, 8));
            t.add(bf16(p + "mlp.up_proj.weight", rnd, 16, 8));
            t.add(bf16(p + "mlp.down_proj.weight", rnd, 8, 16));
        }
        t.add(bf16("model.norm.weight", rnd, 8));
        t.add(bf16("lm_head.weight", rnd, 16, 8));
        SafetensorsWriter.writeModel(dir, t, 1L << 30, null);
        return dir;
    }

    private static TensorData bf16(String name, Random rnd, long... shape) {
        int n = 1;
        for (long d : shape) {
            n *= (int) d;
        }
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            v[i] = (float) rnd.nextGaussian();
        }
        return TensorData.ofFloats(name, shape, v, DType.BF16);
    }

    /** Every decoder linear pruned 2:4 by magnitude (the two largest |w| of each 4 inputs kept). */
    private static Map<String, float[]> pruneTwoFour(ModelDir m) {
        Map<String, float[]> out = new HashMap<>();
        for (int i = 0; i < m.config().layers(); i++) {
            for (String l : LINEARS) {
                String name = "model.layers." + i + "." + l + ".weight";
                float[] W = m.weights().floats(name);
                for (int g = 0; g < W.length; g += 4) {
                    for (int drop = 0; drop < 2; drop++) {
                        int min = -1;
                        for (int j = 0; j < 4; j++) {
                            if (W[g + j] != 0f && (min < 0 || Math.abs(W[g + j]) < Math.abs(W[g + min]))) {
                                min = j;
                            }
                        }
                        W[g + min] = 0f;
                    }
                }
                out.put(name, W);
            }
        }
        return out;
    }

    @Test
    void writesTwoFourFolderThatDecodesToThePrunedWeights() throws IOException {
        Path src = tinyModel("src", false);
        Path out = tmp.resolve("out24");
        try (ModelDir m = ModelDir.open(src)) {
            Map<String, float[]> pruned = pruneTwoFour(m);
            var written = CompressedSparseCheckpoint.write(m, out, pruned, pruned.keySet(), "sparse-24-bitmask",
                    Map.of("stage", "test"), false);
            assertEquals(14, written.compressed());

            try (WeightStore w = WeightStore.open(out)) {
                for (String name : m.weights().names()) {
                    if (pruned.containsKey(name)) {
                        String x = name.substring(0, name.length() - ".weight".length());
                        assertFalse(w.has(name), name);
                        assertArrayEquals(pruned.get(name), CompressedSparse.read(w, x, Format.SPARSE_24_BITMASK), name);
                        assertEquals(DType.BF16, w.info(x + ".compressed").dtype());
                        assertFalse(w.has(x + ".row_offsets"));
                    } else {
                        assertEquals(m.weights().info(name).dtype(), w.info(name).dtype());
                        assertArrayEquals(m.weights().data(name).toArray(ValueLayout.JAVA_BYTE),
                                w.data(name).toArray(ValueLayout.JAVA_BYTE), name + " copied byte for byte");
                    }
                }
                assertEquals(written.weightBytes(), w.totalBytes());
            }

            JsonNode cfg = JSON.readTree(out.resolve("config.json").toFile());
            JsonNode srcCfg = m.config().raw();
            srcCfg.properties().forEach(e -> assertEquals(e.getValue(), cfg.get(e.getKey()), e.getKey()));
            assertEquals("magnitude", cfg.at("/shrink/pruning/method").asText());
            JsonNode qc = cfg.get("quantization_config");
            assertEquals("compressed-tensors", qc.get("quant_method").asText());
            JsonNode sc = qc.get("sparsity_config");
            assertEquals("sparse-24-bitmask", sc.get("format").asText());
            assertEquals("2:4", sc.get("sparsity_structure").asText());
            assertEquals(List.of("Linear"), JSON.convertValue(sc.get("targets"), List.class));
            assertEquals(List.of("lm_head"), JSON.convertValue(sc.get("ignore"), List.class));
            // half of the 2 × 576 decoder-linear elements are zero; the 16·8·2 + 2·2·8 + 8 others are not
            long linear = 2L * (8 * 8 + 4 * 8 + 4 * 8 + 8 * 8 + 3 * 16 * 8);
            long other = 16 * 8 * 2 + 2 * 2 * 8 + 8;
            assertEquals((double) (linear / 2) / (linear + other), sc.get("global_sparsity").asDouble(), 1e-12);

            assertTrue(Files.isRegularFile(out.resolve("tokenizer.json")));
            assertEquals("test", JSON.readTree(out.resolve("shrink-report.json").toFile()).get("stage").asText());
        }
    }

    @Test
    void bitmaskFolderCompressesSomeAndRewritesOthersDense() throws IOException {
        Path src = tinyModel("src", false);
        Path out = tmp.resolve("outbm");
        try (ModelDir m = ModelDir.open(src)) {
            Map<String, float[]> pruned = pruneTwoFour(m);
            String kept = "model.layers.1.mlp.down_proj.weight"; // replaced but stored dense
            Set<String> compress = new LinkedHashSet<>(pruned.keySet());
            compress.remove(kept);
            compress.add("lm_head.weight"); // compressed from the source values (not replaced)
            CompressedSparseCheckpoint.write(m, out, pruned, compress, "sparse-bitmask", null, false);

            try (WeightStore w = WeightStore.open(out)) {
                assertArrayEquals(pruned.get(kept), w.floats(kept));
                assertEquals(DType.BF16, w.info(kept).dtype());
                assertArrayEquals(m.weights().floats("lm_head.weight"), CompressedSparse.read(w, "lm_head", Format.SPARSE_BITMASK));
                String q = "model.layers.0.self_attn.q_proj";
                assertArrayEquals(pruned.get(q + ".weight"), CompressedSparse.read(w, q, Format.SPARSE_BITMASK));
                assertEquals(DType.I64, w.info(q + ".row_offsets").dtype());
            }
            JsonNode sc = JSON.readTree(out.resolve("config.json").toFile()).at("/quantization_config/sparsity_config");
            assertEquals("sparse-bitmask", sc.get("format").asText());
            // lm_head is dense-random: not every compressed weight is 2:4
            assertEquals("unstructured", sc.get("sparsity_structure").asText());
            assertEquals(List.of("model.layers.1.mlp.down_proj"), JSON.convertValue(sc.get("ignore"), List.class));
            assertFalse(Files.exists(out.resolve("shrink-report.json")));
        }
    }

    @Test
    void aWeightThatIsNotTwoFourIsRefusedByNameAndNothingIsWritten() throws IOException {
        Path src = tinyModel("src", false);
        Path out = tmp.resolve("refused");
        try (ModelDir m = ModelDir.open(src)) {
            Map<String, float[]> pruned = pruneTwoFour(m);
            Set<String> compress = new LinkedHashSet<>(pruned.keySet());
            compress.add("lm_head.weight"); // dense: 4 non-zeros per group
            var e = assertThrows(ShrinkException.class,
                    () -> CompressedSparseCheckpoint.write(m, out, pruned, compress, "sparse-24-bitmask", null, false));
            assertTrue(e.getMessage().contains("'lm_head.weight' is not 2:4 sparse: row 0, inputs 0..3 hold 4 non-zeros"), e.getMessage());
            assertFalse(Files.exists(out));
            try (Stream<Path> s = Files.list(tmp)) {
                assertEquals(List.of("src"), s.map(p -> p.getFileName().toString()).toList(), "no temporary folder left");
            }
        }
    }

    @Test
    void badArgumentsAreRefused() throws IOException {
        Path src = tinyModel("src", false);
        try (ModelDir m = ModelDir.open(src)) {
            var f = assertThrows(ShrinkException.class, () -> CompressedSparseCheckpoint.write(m, tmp.resolve("o1"), Map.of(),
                    Set.of("lm_head.weight"), "sparse-42", null, false));
            assertTrue(f.getMessage().contains("unknown compressed-tensors sparse format 'sparse-42' (known: sparse-bitmask, sparse-24-bitmask)"),
                    f.getMessage());
            var n = assertThrows(IllegalArgumentException.class, () -> CompressedSparseCheckpoint.write(m, tmp.resolve("o2"),
                    Map.of(), Set.of("model.norm.weight"), "sparse-bitmask", null, false));
            assertTrue(n.getMessage().contains("'model.norm.weight' is not the weight of a Linear module"), n.getMessage());
            var len = assertThrows(IllegalArgumentException.class, () -> CompressedSparseCheckpoint.write(m, tmp.resolve("o3"),
                    Map.of("lm_head.weight", new float[3]), Set.of(), "sparse-bitmask", null, false));
            assertTrue(len.getMessage().contains("'lm_head.weight' has 3 values"), len.getMessage());
        }
        Path quantized = tinyModel("quantized", true);
        try (ModelDir m = ModelDir.open(quantized)) {
            var q = assertThrows(ShrinkException.class, () -> CompressedSparseCheckpoint.write(m, tmp.resolve("o4"), Map.of(),
                    Set.of(), "sparse-bitmask", null, false));
            assertTrue(q.getMessage().startsWith(quantized.resolve("config.json").toString()), q.getMessage());
            assertTrue(q.getMessage().contains("already has a quantization_config"), q.getMessage());
        }
    }
}
