package dev.shrink.core.synth;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.shrink.core.ShrinkException;
import dev.shrink.core.forward.BlockWeights;
import dev.shrink.core.forward.WeightSource;
import dev.shrink.core.model.ArchitectureSpec;
import dev.shrink.core.model.ModelConfig;
import dev.shrink.core.model.ModelDir;
import dev.shrink.core.safetensors.TensorInfo;
import dev.shrink.core.tensor.DType;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@link SyntheticModel}: the folder loads with our loaders, shapes and dtypes are right, values as specified, seeded. */
class SyntheticModelTest {
    @TempDir
    Path tmp;

    private static final SyntheticModel.Shape SHAPE = new SyntheticModel.Shape(64, 160, 3, 4, 2, 300, 256);

    private static SyntheticModel.Options opts(DType dtype, long seed, long shard) {
        return new SyntheticModel.Options(SHAPE, dtype, seed, shard, null, null);
    }

    @Test
    void shardedFolderLoadsWithTheRightShapes() throws IOException {
        Path out = tmp.resolve("m");
        SyntheticModel.Summary s = SyntheticModel.write(out, opts(DType.BF16, 3, 64 << 10), false, null);
        assertTrue(s.files() > 1, "sharded: " + s.files());
        assertTrue(Files.isRegularFile(out.resolve("model.safetensors.index.json")));
        assertEquals(SHAPE.parameters() * 2, s.bytes());
        try (Stream<Path> l = Files.list(tmp)) {
            assertEquals(List.of(out), l.toList(), "no temporary folder left beside it");
        }
        try (ModelDir dir = ModelDir.open(out)) {
            ModelConfig c = dir.config();
            assertEquals(64, c.hidden());
            assertEquals(160, c.intermediate());
            assertEquals(3, c.layers());
            assertEquals(4, c.heads());
            assertEquals(2, c.kvHeads());
            assertEquals(16, c.headDim());
            assertEquals(300, c.vocab());
            assertFalse(c.tiedEmbeddings());
            ArchitectureSpec spec = dir.spec();
            long params = 0;
            for (String n : dir.weights().names()) {
                TensorInfo t = dir.weights().info(n);
                assertEquals(DType.BF16, t.dtype(), n);
                params += t.numel();
            }
            assertEquals(SHAPE.parameters(), params);
            assertEquals(3 * 9 + 3, dir.weights().names().size());
            WeightSource src = WeightSource.of(dir.weights());
            for (int l = 0; l < 3; l++) {
                BlockWeights w = BlockWeights.load(src, c, spec, l); // checks every shape against the config
                assertArrayEquals(new int[] {64, 64}, w.shape("self_attn.q_proj"));
                assertArrayEquals(new int[] {32, 64}, w.shape("self_attn.k_proj"));
                assertArrayEquals(new int[] {64, 160}, w.shape("mlp.down_proj"));
            }
            assertArrayEquals(new long[] {300, 64}, dir.weights().info("lm_head.weight").shape());
            // linears ~ N(0, 0.02²), norms near 1
            float[] up = src.floats("model.layers.1.mlp.up_proj.weight");
            double mean = 0, sq = 0;
            for (float v : up) {
                mean += v;
                sq += (double) v * v;
            }
            mean /= up.length;
            double std = Math.sqrt(sq / up.length - mean * mean);
            assertEquals(0, mean, 1e-3, "mean");
            assertEquals(0.02, std, 1e-3, "std");
            for (float v : src.floats("model.layers.2.input_layernorm.weight")) {
                assertTrue(v > 0.89f && v < 1.11f, "norm weight " + v);
            }
        }
        JsonNode tok = new ObjectMapper().readTree(out.resolve("tokenizer.json").toFile());
        assertEquals(300, tok.path("model").path("vocab").size(), "the generated tokenizer covers the vocabulary");
        assertEquals("WordLevel", tok.path("model").path("type").asText());
    }

    @Test
    void sameSeedSameBytesOtherSeedOthers() throws IOException {
        Path a = tmp.resolve("a"), b = tmp.resolve("b"), c = tmp.resolve("c");
        SyntheticModel.write(a, opts(DType.F16, 7, 1L << 30), false, null);
        SyntheticModel.write(b, opts(DType.F16, 7, 1L << 30), false, null);
        SyntheticModel.write(c, opts(DType.F16, 8, 1L << 30), false, null);
        byte[] wa = Files.readAllBytes(a.resolve("model.safetensors")), wb = Files.readAllBytes(b.resolve("model.safetensors"));
        assertArrayEquals(wa, wb, "same seed, same bytes");
        assertFalse(java.util.Arrays.equals(wa, Files.readAllBytes(c.resolve("model.safetensors"))), "another seed");
        try (ModelDir dir = ModelDir.open(a)) {
            assertEquals(DType.F16, dir.weights().info("model.embed_tokens.weight").dtype());
            assertEquals("float16", dir.config().raw().path("torch_dtype").asText());
            assertEquals(7, dir.config().raw().path("shrink").path("synthetic").path("seed").asLong());
        }
    }

    @Test
    void refusesBadInputWithOneLine() throws IOException {
        Path out = tmp.resolve("m");
        SyntheticModel.write(out, opts(DType.BF16, 1, 1L << 30), false, null);
        ShrinkException e = assertThrows(ShrinkException.class,
                () -> SyntheticModel.write(out, opts(DType.BF16, 1, 1L << 30), false, null));
        assertTrue(e.getMessage().startsWith(out.toString()), e.getMessage());
        // a tokenizer whose ids do not fit the vocabulary
        Path tokDir = tmp.resolve("tok");
        Files.createDirectories(tokDir);
        Files.writeString(tokDir.resolve("tokenizer.json"), SyntheticModel.wordLevelTokenizer(1000).toString());
        SyntheticModel.Options big = new SyntheticModel.Options(SHAPE, DType.BF16, 1, 1L << 30, tokDir, null);
        ShrinkException t = assertThrows(ShrinkException.class, () -> SyntheticModel.write(tmp.resolve("t"), big, false, null));
        assertTrue(t.getMessage().contains("outside the model's vocabulary of 300"), t.getMessage());
        assertFalse(Files.exists(tmp.resolve("t")));
        assertThrows(ShrinkException.class, () -> SyntheticModel.write(tmp.resolve("u"),
                new SyntheticModel.Options(SHAPE, DType.BF16, 1, 1L << 30, tmp.resolve("none"), null), false, null));
        // a copied tokenizer that fits
        Files.writeString(tokDir.resolve("tokenizer.json"), SyntheticModel.wordLevelTokenizer(300).toString());
        Files.writeString(tokDir.resolve("tokenizer_config.json"), "{}");
        SyntheticModel.write(tmp.resolve("v"), new SyntheticModel.Options(SHAPE, DType.BF16, 1, 1L << 30, tokDir, null),
                false, null);
        assertEquals("{}", Files.readString(tmp.resolve("v/tokenizer_config.json")));
        // shapes that cannot be a LLaMA
        assertThrows(IllegalArgumentException.class, () -> new SyntheticModel.Shape(64, 128, 2, 5, 5, 100, 64));
        assertThrows(IllegalArgumentException.class, () -> new SyntheticModel.Shape(64, 128, 2, 4, 3, 100, 64));
        assertThrows(IllegalArgumentException.class, () -> SyntheticModel.preset("gpt-5"));
        assertThrows(IllegalArgumentException.class, () -> SyntheticModel.dtype("fp32"));
        IllegalArgumentException m = assertThrows(IllegalArgumentException.class,
                () -> SyntheticModel.shape(null, 64, null, 2, 4, null, 100, null));
        assertTrue(m.getMessage().contains("give --preset (llama2-7b, llama2-13b, qwen3-8b, qwen3-30b-a3b)"), m.getMessage());
        // families: a preset's own, experts only for a mixture, a mixture needs its three numbers
        IllegalArgumentException fam = assertThrows(IllegalArgumentException.class, () -> SyntheticModel.shape("qwen3-8b",
                new SyntheticModel.Dims("llama", null, null, null, null, null, null, null, null, null, null, null)));
        assertTrue(fam.getMessage().contains("--preset qwen3-8b is a qwen3 model"), fam.getMessage());
        assertThrows(IllegalArgumentException.class, () -> SyntheticModel.shape(null,
                new SyntheticModel.Dims("qwen3", 64, 128, 2, 4, 2, 16, 100, null, 8, null, null)));
        IllegalArgumentException moe = assertThrows(IllegalArgumentException.class, () -> SyntheticModel.shape(null,
                new SyntheticModel.Dims("qwen3-moe", 64, 128, 2, 4, 2, 16, 100, null, 8, null, null)));
        assertTrue(moe.getMessage().contains("needs --experts, --experts-per-token and --moe-intermediate"), moe.getMessage());
        assertThrows(IllegalArgumentException.class, () -> new SyntheticModel.Shape(SyntheticModel.Family.QWEN3_MOE,
                64, 64, 2, 4, 2, 16, 100, 64, 4, 5, 32), "5 experts per token of 4");
        assertThrows(IllegalArgumentException.class, () -> SyntheticModel.Family.parse("gemma"));
    }

    @Test
    void presetAndOverrides() {
        SyntheticModel.Shape s = SyntheticModel.shape("llama2-7b", null, null, 2, null, null, null, null);
        assertEquals(new SyntheticModel.Shape(4096, 11008, 2, 32, 32, 32000, 4096), s);
        assertEquals(6_738_415_616L, SyntheticModel.preset("llama2-7b").parameters(), "Llama-2-7B's parameter count");
        assertEquals(8, SyntheticModel.shape("llama2-7b", null, null, null, null, 8, null, null).kvHeads());
    }

    private static final SyntheticModel.Shape QWEN3 = new SyntheticModel.Shape(SyntheticModel.Family.QWEN3,
            64, 128, 3, 4, 2, 32, 300, 256, 0, 0, 0); // head dim 32, not 64 / 4
    private static final SyntheticModel.Shape QWEN3_MOE = new SyntheticModel.Shape(SyntheticModel.Family.QWEN3_MOE,
            64, 64, 2, 4, 2, 16, 300, 256, 8, 2, 32);

    /** Writes {@code shape} sharded, opens it and checks every tensor the spec reads is there in shape, and nothing else. */
    private ModelDir writeAndOpen(SyntheticModel.Shape shape, String name) throws IOException {
        Path out = tmp.resolve(name);
        SyntheticModel.Summary s = SyntheticModel.write(out, new SyntheticModel.Options(shape, DType.BF16, 5, 64 << 10, null,
                null), false, null);
        assertTrue(s.files() > 1, "sharded: " + s.files());
        ModelDir dir = ModelDir.open(out);
        ModelConfig c = dir.config();
        assertEquals(shape.family().spec(), dir.spec());
        WeightSource src = WeightSource.of(dir.weights());
        java.util.Set<String> read = new java.util.HashSet<>(List.of("model.embed_tokens.weight", "model.norm.weight",
                "lm_head.weight"));
        long params = 0;
        for (String n : dir.weights().names()) {
            params += dir.weights().info(n).numel();
        }
        assertEquals(shape.parameters(), params);
        assertEquals(params, s.parameters());
        for (int l = 0; l < c.layers(); l++) {
            BlockWeights w = BlockWeights.load(src, c, dir.spec(), l); // checks every shape against the config
            assertEquals(c.headDim(), w.qNorm().length);
            assertEquals(c.headDim(), w.kNorm().length);
            for (String lin : w.linearNames()) {
                read.add(dir.spec().layer(l, lin) + ".weight");
            }
            for (String norm : new String[] {dir.spec().inputNorm(), dir.spec().postAttentionNorm(), dir.spec().qNorm(),
                dir.spec().kNorm()}) {
                read.add(dir.spec().layer(l, norm));
            }
            for (float v : w.qNorm()) {
                assertTrue(v > 0.89f && v < 1.11f, "q_norm weight " + v);
            }
        }
        assertEquals(read, new java.util.HashSet<>(dir.weights().names()), "the tensors are exactly those the loader reads");
        return dir;
    }

    @Test
    void qwen3FolderHasTheFamilysTensorsAndConfig() throws IOException {
        try (ModelDir dir = writeAndOpen(QWEN3, "qwen3")) {
            ModelConfig c = dir.config();
            assertEquals("Qwen3ForCausalLM", c.architecture());
            assertEquals("qwen3", c.raw().path("model_type").asText());
            assertEquals(32, c.headDim());
            assertEquals(128, c.qDim());
            assertEquals(64, c.kvDim());
            assertEquals(1e6, c.rope().theta());
            assertEquals(1e6, c.raw().path("rope_parameters").path("rope_theta").asDouble(), "transformers 5's place");
            assertEquals(1e-6, c.rmsNormEps());
            assertFalse(c.attentionBias());
            assertEquals(3, c.raw().path("layer_types").size());
            assertEquals(null, c.moe());
            assertArrayEquals(new long[] {128, 64}, dir.weights().info("model.layers.0.self_attn.q_proj.weight").shape());
            assertArrayEquals(new long[] {64, 128}, dir.weights().info("model.layers.2.self_attn.o_proj.weight").shape());
            assertArrayEquals(new long[] {32}, dir.weights().info("model.layers.1.self_attn.k_norm.weight").shape());
            assertArrayEquals(new long[] {128, 64}, dir.weights().info("model.layers.1.mlp.gate_proj.weight").shape());
        }
    }

    @Test
    void qwen3MoeFolderHasRouterAndExperts() throws IOException {
        try (ModelDir dir = writeAndOpen(QWEN3_MOE, "moe")) {
            ModelConfig c = dir.config();
            assertEquals("Qwen3MoeForCausalLM", c.architecture());
            assertEquals("qwen3_moe", c.raw().path("model_type").asText());
            assertEquals(8, c.moe().experts());
            assertEquals(2, c.moe().topK());
            assertEquals(32, c.moe().expertIntermediate());
            assertTrue(c.moe().normTopK());
            assertFalse(c.moe().sharedExpert());
            assertTrue(c.sparseLayer(0) && c.sparseLayer(1), "every block sparse");
            assertArrayEquals(new long[] {8, 64}, dir.weights().info("model.layers.0.mlp.gate.weight").shape());
            assertArrayEquals(new long[] {32, 64}, dir.weights().info("model.layers.1.mlp.experts.7.up_proj.weight").shape());
            assertArrayEquals(new long[] {64, 32}, dir.weights().info("model.layers.1.mlp.experts.0.down_proj.weight").shape());
            assertFalse(dir.weights().names().contains("model.layers.0.mlp.gate_proj.weight"), "no dense MLP");
            assertEquals(1 + 2 * (4 + 2 + 2 + 1 + 3 * 8) + 2, dir.weights().names().size());
        }
    }

    @Test
    void qwenPresetsAreThePublishedModels() {
        // Qwen3-8B's config.json and model card: 36 layers, 32 q / 8 kv heads of 128, 8.2 B parameters (6.95 B without embeddings)
        SyntheticModel.Shape q8 = SyntheticModel.preset("qwen3-8b");
        ModelConfig c = ModelConfig.parse(SyntheticModel.config(new SyntheticModel.Options(q8, DType.BF16, 0, 1, null,
                "qwen3-8b")), Path.of("config.json"));
        assertEquals("Qwen3ForCausalLM", c.architecture());
        assertEquals(List.of(4096, 12288, 36, 32, 8, 128, 151936, 40960), List.of(c.hidden(), c.intermediate(), c.layers(),
                c.heads(), c.kvHeads(), c.headDim(), c.vocab(), c.maxPositions()));
        assertEquals(1e6, c.rope().theta());
        assertEquals(1e-6, c.rmsNormEps());
        assertFalse(c.tiedEmbeddings());
        long embeddings = 2L * 151936 * 4096;
        assertEquals(8.2e9, q8.parameters(), 0.05e9);
        assertEquals(6.95e9, q8.parameters() - embeddings, 0.005e9);
        // Qwen3-30B-A3B's: 48 layers, 32 q / 4 kv heads of 128, 128 experts of 768, 8 per token; 30.5 B (29.9 B without embeddings)
        SyntheticModel.Shape moe = SyntheticModel.preset("qwen3-30b-a3b");
        ModelConfig m = ModelConfig.parse(SyntheticModel.config(new SyntheticModel.Options(moe, DType.BF16, 0, 1, null,
                "qwen3-30b-a3b")), Path.of("config.json"));
        assertEquals("Qwen3MoeForCausalLM", m.architecture());
        assertEquals(List.of(2048, 48, 32, 4, 128, 151936, 40960), List.of(m.hidden(), m.layers(), m.heads(), m.kvHeads(),
                m.headDim(), m.vocab(), m.maxPositions()));
        assertEquals(List.of(128, 8, 768), List.of(m.moe().experts(), m.moe().topK(), m.moe().expertIntermediate()));
        assertTrue(m.moe().normTopK());
        assertEquals(1e6, m.rope().theta());
        assertFalse(m.tiedEmbeddings());
        long moeEmbeddings = 2L * 151936 * 2048;
        assertEquals(30.5e9, moe.parameters(), 0.05e9);
        assertEquals(29.9e9, moe.parameters() - moeEmbeddings, 0.05e9);
        // --layers cuts a preset, keeping the rest
        SyntheticModel.Shape cut = SyntheticModel.shape("qwen3-30b-a3b",
                new SyntheticModel.Dims(null, null, null, 4, null, null, null, null, null, null, null, null));
        assertEquals(new SyntheticModel.Shape(SyntheticModel.Family.QWEN3_MOE, 2048, 6144, 4, 32, 4, 128, 151936, 40960,
                128, 8, 768), cut);
        // a Qwen3 preset keeps its head dim when the heads change; a LLaMA's follows hidden / heads
        assertEquals(128, SyntheticModel.shape("qwen3-8b",
                new SyntheticModel.Dims(null, null, null, null, 16, 8, null, null, null, null, null, null)).headDim());
        assertEquals(256, SyntheticModel.shape("llama2-7b", null, null, null, 16, null, null, null).headDim());
    }
}
