package dev.shrink.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.shrink.calib.SharedData;
import dev.shrink.core.safetensors.SafetensorsWriter;
import dev.shrink.core.safetensors.TensorData;
import dev.shrink.core.safetensors.WeightStore;
import dev.shrink.core.tensor.DType;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;
import java.util.function.UnaryOperator;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Inputs that used to give a wrong answer with exit 0 (issue 15 §3): non-finite perplexity from
 * config values or weights, a tied head that differs from the checkpoint's lm_head, compare
 * creating its work dir before checking the model, and outputs too large for their disk.
 */
class SilentlyWrongTest {
    @TempDir
    Path tmp;

    final BadInputTest bad = new BadInputTest();

    Path model() throws IOException {
        bad.tmp = tmp.resolve("m" + System.nanoTime());
        return bad.modelCopy();
    }

    static void editConfig(Path model, Consumer<ObjectNode> edit) throws IOException {
        ObjectNode cfg = (ObjectNode) new ObjectMapper().readTree(model.resolve("config.json").toFile());
        edit.accept(cfg);
        Files.writeString(model.resolve("config.json"), cfg.toString());
    }

    /** Rewrites model.safetensors (float32) with {@code edit} applied to each tensor's values; extra tensors added. */
    static void editWeights(Path model, java.util.function.BiFunction<String, float[], float[]> edit,
                            Map<String, UnaryOperator<float[]>> add) throws IOException {
        List<TensorData> tensors = new ArrayList<>();
        Path f = model.resolve("model.safetensors");
        try (WeightStore w = WeightStore.open(model)) {
            for (String n : w.names()) {
                float[] v = edit.apply(n, w.floats(n)); // null: dropped
                if (v != null) {
                    tensors.add(TensorData.ofFloats(n, w.info(n).shape(), v, DType.F32));
                }
            }
            for (var e : add.entrySet()) {
                String from = "model.embed_tokens.weight";
                tensors.add(TensorData.ofFloats(e.getKey(), w.info(from).shape(), e.getValue().apply(w.floats(from)),
                        DType.F32));
            }
        }
        Files.delete(f);
        SafetensorsWriter.write(f, tensors, Map.of());
    }

    BadInputTest.Run eval(Path m) {
        return BadInputTest.shrink("eval", "--model", m.toString(), "--dataset", "tinystories", "--max-windows", "2",
                "--seqlen", "64", "-q");
    }

    @Test
    void ropeThetaZeroIsRefused() throws IOException {
        Path m = model();
        editConfig(m, c -> ((ObjectNode) c.get("rope_parameters")).put("rope_theta", 0.0));
        bad.assertOneLineError(eval(m), "config.json", "rope_theta' must be a positive number, found 0.0");
    }

    @Test
    void negativeRmsNormEpsIsRefused() throws IOException {
        Path m = model();
        editConfig(m, c -> c.put("rms_norm_eps", -1.0));
        bad.assertOneLineError(eval(m), "config.json", "'rms_norm_eps' must be a positive number, found -1.0");
    }

    @Test
    void nanWeightIsNamed() throws IOException {
        Path m = model();
        editWeights(m, (n, w) -> {
            if (n.equals("model.layers.1.mlp.down_proj.weight")) {
                w[17] = Float.NaN;
            }
            return w;
        }, Map.of());
        BadInputTest.Run r = eval(m);
        bad.assertOneLineError(r, m.resolve("model.safetensors").toString(),
                "tensor 'model.layers.1.mlp.down_proj.weight' holds NaN (element 17 of");
        bad.assertOneLineError(BadInputTest.shrink("generate", "--model", m.toString(), "--prompt", "Once",
                "--max-new-tokens", "3"), "model.safetensors", "holds NaN");
    }

    /**
     * Finite weights whose product overflows float32: o_proj of block 2 scaled to ~1e38. The
     * perplexity (NaN before) is an error naming the first op that went non-finite, for eval and
     * generate alike.
     */
    @Test
    void overflowInTheForwardNamesTheFirstOp() throws IOException {
        Path m = model();
        editWeights(m, (n, w) -> {
            if (n.equals("model.layers.2.self_attn.o_proj.weight")) {
                for (int i = 0; i < w.length; i++) {
                    w[i] = Math.signum(w[i]) * 3e38f;
                }
            }
            return w;
        }, Map.of());
        String where = "first at layer 2 self_attn.o_proj (linear model.layers.2.self_attn.o_proj)";
        BadInputTest.Run r = eval(m);
        bad.assertOneLineError(r, m.toString(), "tinystories window 0 (perplexity): non-finite output");
        assertTrue(r.err().contains(where), r.err());
        BadInputTest.Run g = BadInputTest.shrink("generate", "--model", m.toString(), "--prompt", "Once upon a time",
                "--max-new-tokens", "3");
        bad.assertOneLineError(g, m.toString(), "generation step 0: non-finite output");
        assertTrue(g.err().contains(where), g.err());
    }

    static String pplLine(BadInputTest.Run r) {
        assertEquals(0, r.code(), r.err());
        String line = r.out().lines().filter(l -> l.startsWith("tinystories")).findFirst().orElseThrow();
        return line.substring(0, line.indexOf(" windows")); // "tinystories  ppl X  (seqlen 64, 2 of N"
    }

    /**
     * tie_word_embeddings: true with an lm_head present: transformers 5 ties them only when they are
     * equal; different ones are kept apart (the checkpoint's lm_head is used) with a warning.
     */
    @Test
    void tiedConfigWithADifferentLmHeadUsesItAndWarnsOnce() throws IOException {
        Path m = model();
        String tiedPpl = pplLine(eval(m));
        editWeights(m, (n, w) -> w, Map.of("lm_head.weight", e -> {
            float[] h = e.clone();
            for (int i = 0; i < h.length; i++) {
                h[i] *= 0.5f;
            }
            return h;
        }));
        BadInputTest.Run warned = eval(m);
        String[] err = warned.err().strip().split("\n");
        assertEquals(1, err.length, warned.err());
        assertTrue(err[0].startsWith("shrink: warning: " + m.resolve("model.safetensors")
                + ": config.json sets tie_word_embeddings: true but 'lm_head.weight' differs from "
                + "'model.embed_tokens.weight'; using 'lm_head.weight' as transformers 5 does"), err[0]);
        String headPpl = pplLine(warned);
        assertFalse(headPpl.equals(tiedPpl), "the halved lm_head is used: " + headPpl + " vs " + tiedPpl);
        editConfig(m, c -> c.put("tie_word_embeddings", false));
        BadInputTest.Run untied = eval(m);
        assertEquals("", untied.err().strip());
        assertEquals(headPpl, pplLine(untied), "the same head as an untied config");
        // equal tensors: tied, no warning
        editConfig(m, c -> c.put("tie_word_embeddings", true));
        editWeights(m, (n, w) -> n.equals("lm_head.weight") ? null : w, Map.of("lm_head.weight", e -> e));
        BadInputTest.Run same = eval(m);
        assertEquals("", same.err().strip());
        assertEquals(tiedPpl, pplLine(same));
    }

    @Test
    void compareChecksTheModelBeforeCreatingItsWorkDir() throws IOException {
        Path noTokenizer = model();
        Files.delete(noTokenizer.resolve("tokenizer.json"));
        Path badConfig = model();
        editConfig(badConfig, c -> c.put("rms_norm_eps", 0));
        for (Path m : List.of(noTokenizer, badConfig)) {
            Path recipe = tmp.resolve("r.yaml");
            Files.writeString(recipe, """
                    model: %s
                    evaluation: {datasets: [tinystories], seqlen: 64, max_windows: 1}
                    pipelines:
                      - {name: rtn, stages: [{gptq: {method: rtn, bits: 4, group_size: 32}}]}
                    """.formatted(m));
            Path work = tmp.resolve("work");
            BadInputTest.Run r = BadInputTest.shrink("compare", recipe.toString(), "--work-dir", work.toString());
            assertEquals(2, r.code(), r.err());
            assertTrue(r.err().startsWith("shrink: error: " + m), r.err());
            assertFalse(Files.exists(work), "nothing created for a bad model: " + r.err());
        }
    }

    static boolean sh(String... cmd) {
        try {
            Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
            p.getInputStream().readAllBytes();
            return p.waitFor(20, TimeUnit.SECONDS) && p.exitValue() == 0;
        } catch (IOException e) {
            return false;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return false;
        }
    }

    /**
     * A 1 MiB disk (a real tmpfs; needs permission to mount one, skipped elsewhere): GPTQ of the
     * 27 MB fixture (an output of ~12 MB) and pruning of stories260K (1 MB dense) are refused before
     * any calibration, naming the output folder with the bytes needed and free; nothing is created.
     */
    @Test
    void outputsTooLargeForTheDiskAreRefusedFirst() throws IOException {
        Path mnt = Files.createDirectory(tmp.resolve("small-disk"));
        assumeTrue(System.getProperty("os.name").startsWith("Linux")
                && sh("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt.toString()), "cannot mount a tmpfs here");
        try {
            Path fixture = SharedData.root().map(s -> s.resolve("models/fixture-llama-14m")).orElse(Path.of("missing"));
            assumeTrue(Files.isDirectory(fixture), "shared fixtures not found");
            Path out = mnt.resolve("q");
            BadInputTest.Run g = BadInputTest.shrink("gptq", fixture.toString(), "--work-dir", out.toString(),
                    "--calib-dataset", "tinystories", "--calib-samples", "2", "--calib-seqlen", "32", "-q");
            bad.assertOneLineError(g, out.toString(), "not written: it needs about");
            assertTrue(g.err().contains("has 1,048,576 bytes"), g.err());
            Path p = mnt.resolve("p");
            BadInputTest.Run pr = BadInputTest.shrink("prune", model().toString(), "--work-dir", p.toString(),
                    "--method", "magnitude", "--sparsity", "0.5", "-q");
            bad.assertOneLineError(pr, p.toString(), "not written: it needs about");
            try (var s = Files.list(mnt)) {
                assertEquals(List.of(), s.toList(), "nothing created on the small disk");
            }
        } finally {
            sh("umount", mnt.toString());
        }
    }
}
