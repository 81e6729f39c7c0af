package dev.shrink.cli;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.shrink.core.model.ModelDir;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code --rotate} on `shrink gptq` and `shrink awq` (stories260K-hf, tied, C = 64), and its refusals. */
class RotateOptionTest {
    @TempDir
    Path tmp;

    private static BadInputTest.Run rtn(Path out, String... more) {
        String[] base = {"gptq", GptqCommandTest.stories().toString(), "--work-dir", out.toString(), "--method", "rtn",
            "--w-group-size", "32", "-q"};
        String[] args = java.util.Arrays.copyOf(base, base.length + more.length);
        System.arraycopy(more, 0, args, base.length, more.length);
        return BadInputTest.shrink(args);
    }

    @Test
    void rotatedRtnFolderIsAnOrdinaryUntiedCheckpointThatEvaluates() throws IOException {
        Path a = tmp.resolve("a"), b = tmp.resolve("b"), c = tmp.resolve("c");
        BadInputTest.Run r = rtn(a, "--rotate");
        assertEquals(0, r.code(), r.err());
        JsonNode cfg = new ObjectMapper().readTree(a.resolve("config.json").toFile());
        assertFalse(cfg.get("tie_word_embeddings").asBoolean(), "the tied head is written untied");
        assertEquals("gptq", cfg.at("/quantization_config/quant_method").asText());
        JsonNode rot = new ObjectMapper().readTree(a.resolve("shrink-report.json").toFile()).get("rotation");
        assertEquals(0, rot.get("seed").asLong());
        assertEquals("hadamard 1x64", rot.get("matrix").asText());
        try (ModelDir m = ModelDir.open(a); ModelDir src = ModelDir.open(GptqCommandTest.stories())) {
            assertTrue(m.weights().has("lm_head.weight"));
            assertTrue(m.weights().has("model.layers.0.self_attn.q_proj.qweight"));
            for (String norm : new String[] {"model.norm.weight", "model.layers.2.input_layernorm.weight",
                "model.layers.4.post_attention_layernorm.weight"}) {
                for (float v : m.weights().floats(norm)) {
                    assertEquals(1f, v, norm);
                }
            }
            // a linear left in float (in-features 172 do not fit g32) is written rotated, not copied
            String down = "model.layers.0.mlp.down_proj.weight";
            assertFalse(java.util.Arrays.equals(src.weights().floats(down), m.weights().floats(down)));
        }
        BadInputTest.Run e = BadInputTest.shrink("eval", "--model", a.toString(), "--dataset", "tinystories",
                "--max-windows", "4", "--json", "-q");
        assertEquals(0, e.code(), e.err());
        double ppl = new ObjectMapper().readTree(e.out()).at("/results/0/ppl").asDouble();
        assertTrue(ppl > 3.0 && ppl < 6.0, "tinystories ppl of a rotated 4-bit stories260K: " + ppl);

        // the same seed gives the same bytes; another seed other weights
        assertEquals(0, rtn(b, "--rotate").code());
        assertArrayEquals(Files.readAllBytes(a.resolve("model.safetensors")), Files.readAllBytes(b.resolve("model.safetensors")));
        assertEquals(0, rtn(c, "--rotate", "--rotate-seed", "9").code());
        assertFalse(java.util.Arrays.equals(Files.readAllBytes(a.resolve("model.safetensors")),
                Files.readAllBytes(c.resolve("model.safetensors"))));
        assertEquals(9, new ObjectMapper().readTree(c.resolve("shrink-report.json").toFile()).at("/rotation/seed").asLong());
    }

    @Test
    void awqRotatesTooWithHeadWiseRotation() throws IOException {
        Path out = tmp.resolve("awq");
        BadInputTest.Run r = BadInputTest.shrink("awq", GptqCommandTest.stories().toString(), "--work-dir", out.toString(),
                "--w-group-size", "32", "--skip-unfit", "--calib-dataset", "tinystories", "--calib-samples", "4",
                "--calib-seqlen", "64", "--rotate", "--rotate-heads", "-q");
        assertEquals(0, r.code(), r.err());
        JsonNode cfg = new ObjectMapper().readTree(out.resolve("config.json").toFile());
        assertFalse(cfg.get("tie_word_embeddings").asBoolean());
        assertEquals("awq", cfg.at("/quantization_config/quant_method").asText());
        assertEquals("hadamard 1x8", new ObjectMapper().readTree(out.resolve("shrink-report.json").toFile())
                .at("/rotation/heads").asText(), "head dim 8");
        BadInputTest.Run e = BadInputTest.shrink("eval", "--model", out.toString(), "--dataset", "tinystories",
                "--max-windows", "4", "--json", "-q");
        assertEquals(0, e.code(), e.err());
        double ppl = new ObjectMapper().readTree(e.out()).at("/results/0/ppl").asDouble();
        assertTrue(ppl > 3.0 && ppl < 6.0, "tinystories ppl of a rotated AWQ stories260K: " + ppl);
    }

    @Test
    void refusals() throws IOException {
        BadInputTest.Run seed = rtn(tmp.resolve("s"), "--rotate-seed", "3");
        assertEquals(2, seed.code());
        assertEquals(1, seed.err().strip().lines().count(), seed.err());
        assertTrue(seed.err().contains("--rotate-seed goes with --rotate"), seed.err());
        assertFalse(Files.exists(tmp.resolve("s")));
        BadInputTest.Run heads = rtn(tmp.resolve("h"), "--rotate-heads");
        assertEquals(2, heads.code());
        assertTrue(heads.err().contains("--rotate-heads goes with --rotate"), heads.err());

        // a pruned folder: the rotation would fill its zeros in
        Path pruned = tmp.resolve("p");
        assertEquals(0, BadInputTest.shrink("prune", GptqCommandTest.stories().toString(), "--work-dir", pruned.toString(),
                "--method", "magnitude", "--sparsity", "0.5", "-q").code());
        BadInputTest.Run onPruned = BadInputTest.shrink("gptq", pruned.toString(), "--work-dir", tmp.resolve("q3").toString(),
                "--method", "rtn", "--w-group-size", "32", "--rotate", "-q");
        assertEquals(2, onPruned.code());
        assertTrue(onPruned.err().startsWith("shrink: error: ") && onPruned.err().contains(pruned.resolve("config.json").toString())
                && onPruned.err().contains("pruned"), onPruned.err());
        assertEquals(1, onPruned.err().strip().lines().count(), onPruned.err());
        assertFalse(Files.exists(tmp.resolve("q3")));
    }
}
