package dev.shrink.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shrink.cli.BadInputTest.Run;
import dev.shrink.core.model.ModelDir;
import dev.shrink.core.tensor.DType;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code shrink synth} from the command line: a folder that `shrink inspect` and the loaders read; one-line errors. */
class SynthCommandTest {
    @TempDir
    Path tmp;

    @Test
    void writesAFolderThatLoads() throws Exception {
        Path out = tmp.resolve("tiny");
        Run r = BadInputTest.shrink("synth", out.toString(), "--hidden", "64", "--intermediate", "96", "--layers", "2",
                "--heads", "4", "--kv-heads", "2", "--vocab", "500", "--dtype", "fp16", "--seed", "3", "--shard-mib", "1");
        assertEquals(0, r.code(), r.err());
        assertTrue(r.out().contains("wrote " + out), r.out());
        try (ModelDir d = ModelDir.open(out)) {
            assertEquals(2, d.config().kvHeads());
            assertEquals(DType.F16, d.weights().info("model.layers.1.mlp.down_proj.weight").dtype());
        }
        Run i = BadInputTest.shrink("inspect", "--model", out.toString());
        assertEquals(0, i.code(), i.err());
        assertTrue(i.out().contains("hidden 64, intermediate 96, layers 2, heads 4, kv heads 2 (GQA)"), i.out());
    }

    @Test
    void badInputIsOneLineAndExit2() throws Exception {
        Path out = tmp.resolve("x");
        Run noDims = BadInputTest.shrink("synth", out.toString(), "--hidden", "64");
        assertEquals(2, noDims.code());
        assertTrue(noDims.err().contains("give --preset (llama2-7b, llama2-13b, qwen3-8b, qwen3-30b-a3b)"), noDims.err());
        Run noExperts = BadInputTest.shrink("synth", out.toString(), "--family", "qwen3-moe", "--hidden", "64",
                "--intermediate", "64", "--layers", "1", "--heads", "4", "--vocab", "100");
        assertEquals(2, noExperts.code());
        assertTrue(noExperts.err().contains("--family qwen3-moe needs --experts"), noExperts.err());
        Run badFamily = BadInputTest.shrink("synth", out.toString(), "--preset", "qwen3-8b", "--family", "llama");
        assertEquals(2, badFamily.code());
        assertTrue(badFamily.err().contains("--preset qwen3-8b is a qwen3 model, not --family llama"), badFamily.err());
        Run badPreset = BadInputTest.shrink("synth", out.toString(), "--preset", "llama9");
        assertEquals(2, badPreset.code());
        assertTrue(badPreset.err().contains("unknown preset 'llama9'"), badPreset.err());
        Run badHeads = BadInputTest.shrink("synth", out.toString(), "--preset", "llama2-7b", "--kv-heads", "5");
        assertEquals(2, badHeads.code());
        assertTrue(badHeads.err().contains("not a multiple of the 5 kv heads"), badHeads.err());
        Run badDtype = BadInputTest.shrink("synth", out.toString(), "--preset", "llama2-7b", "--dtype", "fp8");
        assertEquals(2, badDtype.code());
        assertFalse(Files.exists(out));
        Files.createDirectories(out);
        Files.writeString(out.resolve("keep.txt"), "x");
        Run taken = BadInputTest.shrink("synth", out.toString(), "--hidden", "64", "--intermediate", "96", "--layers", "1",
                "--heads", "4", "--vocab", "100");
        assertEquals(2, taken.code());
        assertTrue(taken.err().startsWith("shrink: error: " + out), taken.err());
        assertEquals(1, taken.err().strip().lines().count(), taken.err());
    }

    /**
     * A tiny Qwen3-MoE and Qwen3 through the CLI: the family's folder, which inspect reads and
     * {@code shrink eval} scores with a finite perplexity (random weights: near the vocabulary's size).
     */
    @Test
    void qwenFamiliesWriteFoldersThatEvalReads() throws Exception {
        StringBuilder text = new StringBuilder();
        java.util.Random rnd = new java.util.Random(1);
        for (int i = 0; i < 200; i++) {
            text.append('w').append(3 + rnd.nextInt(297)).append(i % 20 == 19 ? "\n" : " ");
        }
        Path data = tmp.resolve("words.txt");
        Files.writeString(data, text);
        String[][] families = {
            {"qwen3-moe", "--kv-heads", "2", "--head-dim", "16", "--experts", "8", "--experts-per-token", "2",
                "--moe-intermediate", "32"},
            {"qwen3", "--kv-heads", "2", "--head-dim", "32"}};
        for (String[] f : families) {
            Path out = tmp.resolve(f[0]);
            java.util.List<String> args = new java.util.ArrayList<>(java.util.List.of("synth", out.toString(), "--family", f[0],
                    "--hidden", "64", "--intermediate", "128", "--layers", "2", "--heads", "4", "--vocab", "300", "-q"));
            args.addAll(java.util.Arrays.asList(f).subList(1, f.length));
            Run r = BadInputTest.shrink(args.toArray(String[]::new));
            assertEquals(0, r.code(), r.err());
            try (ModelDir d = ModelDir.open(out)) {
                assertEquals(f[0].equals("qwen3") ? "Qwen3ForCausalLM" : "Qwen3MoeForCausalLM", d.config().architecture());
                assertEquals(f[0].equals("qwen3") ? 32 : 16, d.config().headDim());
                assertTrue(d.weights().names().contains("model.layers.1.self_attn.q_norm.weight"));
                assertEquals(f[0].equals("qwen3"), d.weights().names().contains("model.layers.1.mlp.down_proj.weight"));
                assertEquals(!f[0].equals("qwen3"), d.weights().names().contains("model.layers.1.mlp.experts.7.down_proj.weight"));
            }
            Run e = BadInputTest.shrink("eval", out.toString(), "--dataset", data.toString(), "--seqlen", "32",
                    "--max-windows", "2", "--json", "-q");
            assertEquals(0, e.code(), e.err());
            double ppl = new com.fasterxml.jackson.databind.ObjectMapper().readTree(e.out()).at("/results/0/ppl").asDouble();
            // random weights predict near-uniformly over the 300 ids: finite, and near the vocabulary size
            assertTrue(Double.isFinite(ppl) && ppl > 100 && ppl < 1000, f[0] + ": perplexity " + ppl);
        }
    }

    @Test
    void helpListsThePresetsAndFamilies() throws Exception {
        Run h = BadInputTest.shrink("synth", "--help");
        assertEquals(0, h.code(), h.err());
        for (String p : dev.shrink.core.synth.SyntheticModel.PRESETS) {
            assertTrue(h.out().contains(p), p + " in: " + h.out());
        }
        assertTrue(h.out().contains("--family") && h.out().contains("qwen3-moe") && h.out().contains("--experts-per-token"),
                h.out());
    }
}
