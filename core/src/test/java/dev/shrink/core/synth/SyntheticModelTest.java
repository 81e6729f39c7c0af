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
        assertTrue(m.getMessage().contains("--preset llama2-7b"), m.getMessage());
    }

    @Test
    void presetAndOverrides() {
        SyntheticModel.Shape s = SyntheticModel.shape("llama2-7b", null, null, 2, null, null, null, null);
        assertEquals(new SyntheticModel.Shape(4096, 11008, 2, 32, 32, 32000, 4096), s);
        assertEquals(6_738_415_616L, SyntheticModel.preset("llama2-7b").parameters(), "Llama-2-7B's parameter count");
        assertEquals(8, SyntheticModel.shape("llama2-7b", null, null, null, null, 8, null, null).kvHeads());
    }
}
