package dev.shrink.gptq;

import static dev.shrink.gptq.GptqTestSupport.fixture;
import static dev.shrink.gptq.GptqTestSupport.quantizeAll;
import static dev.shrink.gptq.GptqTestSupport.withFp16Scales;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.shrink.core.ShrinkException;
import dev.shrink.core.model.ModelDir;
import dev.shrink.core.quant.QuantizedLinear;
import dev.shrink.core.safetensors.TensorInfo;
import dev.shrink.core.safetensors.WeightStore;
import dev.shrink.core.tensor.DType;
import dev.shrink.eval.GptqWeightSource;
import dev.shrink.eval.WeightSources;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** Writing GPTQ folders from the fixture model and reading them back through the eval reader. */
class GptqCheckpointTest {

    @TempDir
    Path tmp;

    private static final ObjectMapper JSON = new ObjectMapper();

    record Report(String method, int layers, double seconds) {
    }

    private static GptqFormat format(int bits, boolean sym, boolean actOrder) {
        return new GptqFormat(bits, 128, sym, actOrder, false, true, 0.01, "shrink:0.1.0");
    }

    private static JsonNode json(Path file) throws IOException {
        return JSON.readTree(Files.readString(file));
    }

    private static Set<String> names(Path dir) throws IOException {
        try (Stream<Path> s = Files.list(dir)) {
            Set<String> out = new TreeSet<>();
            s.forEach(p -> out.add(p.getFileName().toString()));
            return out;
        }
    }

    @ParameterizedTest(name = "{0}-bit sym={1} act-order={2} -> {3}")
    @CsvSource({
        "4, true, false, gptq",
        "4, true, true, gptq",
        "8, true, false, gptq",
        "8, false, true, gptq_v2",
        "4, false, false, gptq_v2",
        "3, false, true, gptq_v2",
        "2, false, false, gptq_v2"})
    void writesAndReadsBack(int bits, boolean sym, boolean actOrder, String expectedFormat) throws IOException {
        Path out = tmp.resolve("out-gptq");
        try (ModelDir src = ModelDir.open(fixture())) {
            Map<String, QuantizedLinear> q = quantizeAll(src, bits, 128, sym, actOrder, 7);
            assertEquals(6 * 7, q.size());
            GptqFormat f = format(bits, sym, actOrder);
            assertEquals(expectedFormat, GptqCheckpoint.checkpointFormat(f, q));
            GptqCheckpoint.write(src, out, q, f, new Report("rtn", q.size(), 1.5));

            // the folder: weights, configs, report, the source's other files; nothing left beside it
            assertEquals(Set.of("out-gptq"), names(tmp), "no temp folder left");
            assertEquals(new TreeSet<>(List.of("config.json", "quantize_config.json", "shrink-report.json",
                    "model.safetensors", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                    "training.json")), names(out));
            for (String copied : List.of("tokenizer.json", "tokenizer_config.json", "generation_config.json", "training.json")) {
                assertArrayEquals(Files.readAllBytes(src.dir().resolve(copied)), Files.readAllBytes(out.resolve(copied)), copied);
            }

            JsonNode cfg = json(out.resolve("config.json"));
            JsonNode srcCfg = json(src.dir().resolve("config.json"));
            for (var e : srcCfg.properties()) {
                if (!e.getKey().equals("dtype")) {
                    assertEquals(e.getValue(), cfg.get(e.getKey()), "source key " + e.getKey() + " kept");
                }
            }
            assertEquals("float16", cfg.get("torch_dtype").asText());
            assertEquals("float16", cfg.get("dtype").asText());
            JsonNode qc = cfg.get("quantization_config");
            assertEquals("gptq", qc.get("quant_method").asText());
            assertEquals(bits, qc.get("bits").asInt());
            assertTrue(qc.get("bits").isInt());
            assertEquals(128, qc.get("group_size").asInt());
            assertEquals(actOrder, qc.get("desc_act").asBoolean());
            assertEquals(sym, qc.get("sym").asBoolean());
            assertTrue(qc.get("sym").isBoolean());
            assertFalse(qc.get("static_groups").asBoolean());
            assertTrue(qc.get("true_sequential").asBoolean());
            assertEquals(0.01, qc.get("damp_percent").asDouble());
            assertEquals(expectedFormat, qc.get("checkpoint_format").asText());
            assertFalse(qc.get("lm_head").asBoolean());
            assertTrue(qc.get("lm_head").isBoolean());
            assertEquals("int32", qc.get("pack_dtype").asText());
            assertEquals("shrink:0.1.0", qc.at("/meta/quantizer/0").asText());
            assertEquals(1, qc.at("/meta/quantizer").size());
            assertEquals(qc, json(out.resolve("quantize_config.json")), "quantize_config.json = quantization_config");

            JsonNode report = json(out.resolve("shrink-report.json"));
            assertEquals("rtn", report.get("method").asText());
            assertEquals(42, report.get("layers").asInt());
            assertEquals(1.5, report.get("seconds").asDouble());

            try (WeightStore ws = WeightStore.open(out)) {
                Set<String> expectedNames = new TreeSet<>();
                for (String name : src.weights().names()) {
                    String x = name.substring(0, name.length() - ".weight".length());
                    if (q.containsKey(x)) {
                        for (String part : List.of(".qweight", ".qzeros", ".scales", ".g_idx")) {
                            expectedNames.add(x + part);
                        }
                    } else {
                        expectedNames.add(name);
                        TensorInfo a = src.weights().info(name), b = ws.info(name);
                        assertEquals(a.dtype(), b.dtype(), name);
                        assertArrayEquals(a.shape(), b.shape(), name);
                        assertEquals(DType.BF16, b.dtype(), name + " keeps its dtype");
                        assertEquals(-1, src.weights().data(name).mismatch(ws.data(name)), name + " bytes copied");
                    }
                }
                assertEquals(expectedNames, new TreeSet<>(ws.names()));

                for (QuantizedLinear layer : q.values()) {
                    String x = layer.name();
                    int N = layer.N(), K = layer.K(), G = K / 128;
                    check(ws.info(x + ".qweight"), DType.I32, K * bits / 32, N);
                    check(ws.info(x + ".qzeros"), DType.I32, G, N * bits / 32);
                    check(ws.info(x + ".scales"), DType.F16, G, N);
                    check(ws.info(x + ".g_idx"), DType.I32, K);
                    assertArrayEquals(layer.gIdx(), ws.ints(x + ".g_idx"));
                }
                if (sym && bits == 4) {
                    for (int word : ws.ints("model.layers.3.mlp.down_proj.qzeros")) {
                        assertEquals(0x77777777, word, "sym 4-bit v1 zeros");
                    }
                }

                // read back as the eval module does
                GptqWeightSource reader = new GptqWeightSource(ws, GptqWeightSource.settings(out,
                        json(out.resolve("config.json")).get("quantization_config")));
                assertEquals(expectedFormat.equals("gptq"), reader.settings().v1());
                for (QuantizedLinear layer : q.values()) {
                    String x = layer.name();
                    assertTrue(reader.has(x + ".weight"));
                    assertArrayEquals(new long[] {layer.N(), layer.K()}, reader.shape(x + ".weight"));
                    float[] expected = withFp16Scales(layer).dequantize();
                    assertArrayEquals(expected, reader.floats(x + ".weight"), x);
                    QuantizedLinear back = reader.linear(x);
                    assertArrayEquals(layer.codes(), back.codes(), x + " codes");
                    assertArrayEquals(layer.zeros(), back.zeros(), x + " zeros");
                    assertArrayEquals(layer.gIdx(), back.gIdx(), x + " g_idx");
                }
                assertTrue(reader.has("model.norm.weight"));
                assertArrayEquals(src.weights().floats("model.embed_tokens.weight"), reader.floats("model.embed_tokens.weight"));
                assertFalse(reader.has("model.layers.0.self_attn.q_proj.bias"));
            }
            if (actOrder) {
                QuantizedLinear any = q.get("model.layers.0.self_attn.q_proj");
                assertNotEquals(java.util.Arrays.toString(QuantizedLinear.sequentialGIdx(any.K(), 128)),
                        java.util.Arrays.toString(any.gIdx()), "act-order g_idx is not the trivial one");
            }
        }
        // and through the model loader's dispatch
        try (ModelDir m = ModelDir.open(out)) {
            assertInstanceOf(GptqWeightSource.class, WeightSources.forModel(m));
        }
    }

    private static void check(TensorInfo t, DType dtype, long... shape) {
        assertEquals(dtype, t.dtype(), t.name());
        assertArrayEquals(shape, t.shape(), t.name());
    }

    /**
     * Linears kept in float are named the way GPTQModel writes them, so that vLLM and GPTQModel build
     * them unquantized (negative {@code dynamic} rules, regular expressions matched from the start of a
     * module name, as Python's re.match does) and transformers skips them (modules_to_not_convert).
     */
    @Test
    void linearsKeptInFloatAreExcludedForLoaders() throws IOException {
        Path out = tmp.resolve("partial");
        try (ModelDir src = ModelDir.open(fixture())) {
            Map<String, QuantizedLinear> q = new java.util.LinkedHashMap<>(quantizeAll(src, 4, 128, true, false, 7));
            Set<String> kept = Set.of("model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj",
                    "model.layers.0.self_attn.v_proj", "model.layers.1.mlp.down_proj", "model.layers.2.mlp.up_proj");
            kept.forEach(q::remove);
            GptqCheckpoint.write(src, out, q, format(4, true, false), null);

            JsonNode qc = json(out.resolve("config.json")).get("quantization_config");
            assertEquals(qc, json(out.resolve("quantize_config.json")));
            List<String> listed = new java.util.ArrayList<>();
            qc.get("modules_to_not_convert").forEach(n -> listed.add(n.asText()));
            // in model order, the fused q|k|v of layer 0 named after its parts (all three kept);
            // gate|up of layer 2 is not: only up is kept
            assertEquals(List.of("model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj",
                    "model.layers.0.self_attn.v_proj", "model.layers.0.self_attn.qkv_proj",
                    "model.layers.1.mlp.down_proj", "model.layers.2.mlp.up_proj"), listed);

            List<java.util.regex.Pattern> rules = new java.util.ArrayList<>();
            for (var e : qc.get("dynamic").properties()) {
                assertTrue(e.getKey().startsWith("-:"), e.getKey());
                assertEquals(0, e.getValue().size(), "a negative rule carries no overrides");
                rules.add(java.util.regex.Pattern.compile(e.getKey().substring(2)));
            }
            java.util.function.Predicate<String> excluded = name -> rules.stream().anyMatch(r -> r.matcher(name).lookingAt());
            try (ModelDir written = ModelDir.open(out)) {
                for (String x : src.spec().decoderLinears(src.config().layers())) {
                    assertEquals(kept.contains(x), excluded.test(x), x);
                    assertEquals(kept.contains(x), written.weights().has(x + ".weight"), "float weight of " + x);
                    assertEquals(!kept.contains(x), written.weights().has(x + ".qweight"), "qweight of " + x);
                }
            }
            assertTrue(excluded.test("model.layers.0.self_attn.qkv_proj"));
            assertFalse(excluded.test("model.layers.2.mlp.gate_up_proj"));
            assertFalse(excluded.test("model.layers.10.mlp.down_proj"), "layer 1's rule does not match layer 10");
        }
    }

    @Test
    void aFullyQuantizedFolderHasNoExclusions() throws IOException {
        Path out = tmp.resolve("full");
        try (ModelDir src = ModelDir.open(fixture())) {
            GptqCheckpoint.write(src, out, quantizeAll(src, 4, 128, true, false, 7), format(4, true, false), null);
            JsonNode qc = json(out.resolve("config.json")).get("quantization_config");
            assertFalse(qc.has("dynamic"));
            assertFalse(qc.has("modules_to_not_convert"));
        }
    }

    @Test
    void shardsWithAnIndexUnderASmallLimit() throws IOException {
        Path out = tmp.resolve("sharded");
        try (ModelDir src = ModelDir.open(fixture())) {
            Map<String, QuantizedLinear> q = quantizeAll(src, 4, 128, true, false, 1);
            GptqCheckpoint.write(src, out, q, format(4, true, false), null, false, 3_000_000);
        }
        Set<String> files = names(out);
        assertTrue(files.contains(WeightStore.INDEX_FILE), files.toString());
        assertFalse(files.contains("model.safetensors"));
        assertFalse(files.contains("shrink-report.json"), "no report when none is given");
        long shards = files.stream().filter(n -> n.matches("model-\\d{5}-of-\\d{5}\\.safetensors")).count();
        assertTrue(shards >= 3, "shards: " + files);
        try (ModelDir m = ModelDir.open(out)) {
            assertTrue(m.weights().has("model.layers.5.mlp.down_proj.qweight"));
            assertFalse(m.weights().has("model.layers.5.mlp.down_proj.weight"));
            assertTrue(WeightSources.forModel(m).has("model.layers.5.mlp.down_proj.weight"));
        }
    }

    @Test
    void refusesANonEmptyFolderUnlessOverwrite() throws IOException {
        Path out = Files.createDirectories(tmp.resolve("taken"));
        Files.writeString(out.resolve("keep.txt"), "mine");
        try (ModelDir src = ModelDir.open(fixture())) {
            Map<String, QuantizedLinear> q = quantizeAll(src, 4, 128, true, false, 1);
            GptqFormat f = format(4, true, false);
            ShrinkException e = assertThrows(ShrinkException.class, () -> GptqCheckpoint.write(src, out, q, f, null));
            assertTrue(e.getMessage().startsWith(out.toAbsolutePath().normalize().toString()), e.getMessage());
            assertTrue(e.getMessage().contains("not empty"), e.getMessage());
            assertEquals(Set.of("keep.txt"), names(out), "untouched");
            assertEquals(Set.of("taken"), names(tmp));

            // an empty folder is fine
            Path empty = Files.createDirectories(tmp.resolve("empty"));
            GptqCheckpoint.write(src, empty, q, f, null);
            assertTrue(Files.isRegularFile(empty.resolve("model.safetensors")));

            // overwrite replaces the old folder once the new one is complete
            GptqCheckpoint.write(src, out, q, f, null, true);
            Set<String> now = names(out);
            assertFalse(now.contains("keep.txt"), now.toString());
            assertTrue(now.contains("model.safetensors") && now.contains("config.json"), now.toString());
            assertEquals(Set.of("taken", "empty"), names(tmp), "no .tmp- or .old- folders left");

            // a file in the way is never replaced
            Path file = Files.writeString(tmp.resolve("a-file"), "x");
            ShrinkException fe = assertThrows(ShrinkException.class, () -> GptqCheckpoint.write(src, file, q, f, null, true));
            assertTrue(fe.getMessage().contains("not a folder"), fe.getMessage());
            assertEquals("x", Files.readString(file));

            // never into the source folder
            assertThrows(ShrinkException.class, () -> GptqCheckpoint.write(src, src.dir(), q, f, null, true));
        }
    }

    @Test
    void aFailureLeavesNothingBehindAndKeepsTheOldFolder() throws IOException {
        Path out = Files.createDirectories(tmp.resolve("old"));
        Files.writeString(out.resolve("keep.txt"), "mine");
        Path fresh = tmp.resolve("fresh");
        try (ModelDir src = ModelDir.open(fixture())) {
            Map<String, QuantizedLinear> q = quantizeAll(src, 4, 128, true, false, 1);
            GptqFormat f = format(4, true, false);
            Object unserializable = new Object(); // Jackson: no properties -> fails after the weights are written
            ShrinkException e = assertThrows(ShrinkException.class,
                    () -> GptqCheckpoint.write(src, out, q, f, unserializable, true));
            assertTrue(e.getMessage().startsWith(out.toAbsolutePath().normalize().toString()), e.getMessage());
            assertFalse(e.getMessage().contains("\n"), "one line");
            assertEquals(Set.of("keep.txt"), names(out), "the old folder is kept");

            assertThrows(ShrinkException.class, () -> GptqCheckpoint.write(src, fresh, q, f, unserializable));
            assertFalse(Files.exists(fresh));
            assertEquals(Set.of("old"), names(tmp), "temp folders deleted");
        }
    }

    @Test
    void rejectsLayersThatDoNotMatch() {
        try (ModelDir src = ModelDir.open(fixture())) {
            Map<String, QuantizedLinear> q = quantizeAll(src, 4, 128, true, false, 1);
            Path out = tmp.resolve("never");
            // bits differ from the format
            assertThrows(IllegalArgumentException.class,
                    () -> GptqCheckpoint.write(src, out, q, format(8, true, false), null));
            // a key that is not a linear of the source
            QuantizedLinear one = q.get("model.layers.0.self_attn.q_proj");
            Map<String, QuantizedLinear> wrong = new LinkedHashMap<>();
            wrong.put("model.layers.0.self_attn.nope", new QuantizedLinear("model.layers.0.self_attn.nope", one.N(), one.K(),
                    4, 128, one.codes(), one.scales(), one.zeros(), one.gIdx(), null));
            assertThrows(IllegalArgumentException.class, () -> GptqCheckpoint.write(src, out, wrong, format(4, true, false), null));
            // shape differs from the source weight ([384, 384] q_proj put under k_proj [128, 384])
            Map<String, QuantizedLinear> shape = new LinkedHashMap<>();
            shape.put("model.layers.0.self_attn.k_proj", new QuantizedLinear("model.layers.0.self_attn.k_proj", one.N(),
                    one.K(), 4, 128, one.codes(), one.scales(), one.zeros(), one.gIdx(), null));
            assertThrows(IllegalArgumentException.class, () -> GptqCheckpoint.write(src, out, shape, format(4, true, false), null));
            assertFalse(Files.exists(out));
        }
    }

    @Test
    void biasIsWrittenAsFp16() throws IOException {
        Path out = tmp.resolve("bias");
        try (ModelDir src = ModelDir.open(fixture())) {
            Map<String, QuantizedLinear> q = quantizeAll(src, 4, 128, true, false, 1);
            QuantizedLinear v = q.get("model.layers.2.self_attn.v_proj");
            float[] bias = new float[v.N()];
            for (int i = 0; i < bias.length; i++) {
                bias[i] = (i - 50) / 7f;
            }
            q.put(v.name(), new QuantizedLinear(v.name(), v.N(), v.K(), v.bits(), v.groupSize(), v.codes(), v.scales(),
                    v.zeros(), v.gIdx(), bias));
            GptqCheckpoint.write(src, out, q, format(4, true, false), null);
        }
        try (ModelDir m = ModelDir.open(out)) {
            TensorInfo b = m.weights().info("model.layers.2.self_attn.v_proj.bias");
            assertEquals(DType.F16, b.dtype());
            assertArrayEquals(new long[] {128}, b.shape());
            float[] read = WeightSources.forModel(m).floats("model.layers.2.self_attn.v_proj.bias");
            List<String> bad = new ArrayList<>();
            for (int i = 0; i < read.length; i++) {
                float expected = Float.float16ToFloat(Float.floatToFloat16((i - 50) / 7f));
                if (read[i] != expected) {
                    bad.add(i + ": " + read[i] + " != " + expected);
                }
            }
            assertTrue(bad.isEmpty(), bad.toString());
        }
    }
}
