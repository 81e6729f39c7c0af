package dev.shrink.pipeline;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.shrink.calib.SharedData;
import dev.shrink.core.io.SafeFiles;
import dev.shrink.core.safetensors.TokenWindows;
import dev.shrink.core.model.ModelDir;
import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Chained runs on stories260K-hf (1 MB, fast) with the real stages: AWQ with export fake (a float
 * model) composes with GPTQ/RTN; the shared AWQ prefix runs once; a second compare runs nothing;
 * a removed stage output (or one never written, as after an interruption) is the only one rerun.
 */
class CompareCachingTest {
    @TempDir
    Path tmp;

    /** Counts the real stages' runs. */
    static final class Counting implements StageExecutor {
        final List<String> runs = new ArrayList<>();
        RuntimeException failOn;
        String failKind;

        @Override
        public void run(StageSpec stage, Path input, Path output, int[][] windows, java.util.Map<String, Object> head,
                        dev.shrink.core.ops.Ops ops, boolean quiet) {
            if (failKind != null && stage.kind().equals(failKind)) {
                throw failOn;
            }
            runs.add(stage.kind() + " " + input.getFileName());
            Stages.run(stage, input, output, windows, head, ops, quiet);
        }
    }

    Path recipe() throws IOException {
        Path model = SharedData.root().map(s -> s.resolve("models/stories260K-hf")).orElse(Path.of("missing"));
        assumeTrue(Files.isDirectory(model), "shared fixtures not found");
        int vocab;
        try (ModelDir d = ModelDir.open(model)) {
            vocab = d.config().vocab();
        }
        Random rnd = new Random(1);
        int[][] windows = new int[4][32];
        for (int[] w : windows) {
            for (int i = 0; i < w.length; i++) {
                w[i] = 3 + rnd.nextInt(vocab - 3);
            }
        }
        TokenWindows.write(tmp.resolve("calib.safetensors"), windows);
        String text = Files.readString(SharedData.root().get().resolve("datasets/tinystories-valid-sample/tinystories_val.txt"));
        Files.writeString(tmp.resolve("eval.txt"), text.substring(0, 20_000));
        Path r = tmp.resolve("recipe.yaml");
        Files.writeString(r, """
                model: %s
                calibration: {tokens: calib.safetensors, samples: 4, seqlen: 32}
                evaluation:
                  datasets: [eval.txt]
                  seqlen: 64
                  max_windows: 2
                  kl: {windows: 1}
                  prompts: ["Once upon a time"]
                  max_new_tokens: 4
                  speed: {prefill_tokens: 8, decode_tokens: 2, repeats: 1}
                baseline: true
                pipelines:
                  - name: awqfake-rtn
                    stages: [{awq: {export: fake, group_size: 32, skip_unfit: true}}, {gptq: {method: rtn, group_size: 32}}]
                  - name: awqfake-gptq
                    stages: [{awq: {export: fake, group_size: 32, skip_unfit: true}}, {gptq: {group_size: 32}}]
                """.formatted(model));
        return r;
    }

    static CompareReport compare(Path recipe, Path work, StageExecutor exec, StringWriter log) {
        return Compare.run(RecipeParser.read(recipe), new Compare.Options(work, List.of(), "cpu", 1, true),
                new PrintWriter(log, true), exec);
    }

    @Test
    void sharedPrefixRunsOnceAndARerunRunsNothing() throws IOException {
        Path recipe = recipe();
        Path work = tmp.resolve("work");
        Counting c = new Counting();
        StringWriter log = new StringWriter();
        CompareReport r = compare(recipe, work, c, log);
        assertEquals(3, c.runs.size(), "awq once (shared by both pipelines), then rtn and gptq: " + c.runs);
        assertEquals(1, c.runs.stream().filter(s -> s.startsWith("awq")).count(), c.runs.toString());
        assertEquals(List.of("baseline", "awqfake-rtn", "awqfake-gptq"), r.results().stream().map(CompareReport.Row::name).toList());
        assertTrue(r.results().stream().allMatch(CompareReport.Row::ok), log.toString());
        assertEquals(1, r.results().get(2).stagesCached(), "the second pipeline took the AWQ output from the cache");
        assertTrue(log.toString().contains("[awqfake-gptq] stage 1/2 awq: cached"), log.toString());
        // the chain really chained: the second stage read the first's folder
        assertTrue(c.runs.get(1).startsWith("gptq ") && !c.runs.get(1).endsWith("stories260K-hf"), c.runs.toString());
        assertEquals(0.0, r.results().get(0).measures().kl().mean(), "the baseline against itself");
        assertTrue(r.results().get(1).measures().kl().mean() > 0, "a quantized model differs from the baseline");
        for (String f : List.of("report.json", "report.md", "report.html")) {
            assertTrue(Files.size(work.resolve(f)) > 500, f);
        }

        Counting again = new Counting();
        StringWriter log2 = new StringWriter();
        CompareReport r2 = compare(recipe, work, again, log2);
        assertEquals(List.of(), again.runs, "everything cached: " + log2);
        assertTrue(r2.results().stream().allMatch(CompareReport.Row::measuresCached), log2.toString());
        assertEquals(r.results().get(2).measures(), r2.results().get(2).measures(), "the cached measurements");
        assertEquals(r.results().get(2).compressSeconds(), r2.results().get(2).compressSeconds(), 1e-9,
                "cached stages keep their original time");

        // remove one pipeline's last stage: only it runs again
        String last = ((List<?>) ((java.util.Map<?, ?>) r.settings().get("stage_keys")).get("awqfake-gptq")).get(1).toString();
        deleteTree(work.resolve("stages").resolve(last));
        // debris of a killed run (its process is gone) is removed; a live run's is kept
        Process gone = new ProcessBuilder("true").start();
        try {
            gone.waitFor();
        } catch (InterruptedException e) {
            throw new AssertionError(e);
        }
        Path stale = Files.createDirectories(work.resolve("stages").resolve(last + ".tmp-" + SafeFiles.token(gone.pid())));
        Path live = Files.createDirectories(work.resolve("stages").resolve(last + ".tmp-" + SafeFiles.token(ProcessHandle.current().pid())));
        Counting third = new Counting();
        compare(recipe, work, third, new StringWriter());
        assertEquals(1, third.runs.size(), third.runs.toString());
        assertTrue(third.runs.get(0).startsWith("gptq"));
        assertFalse(Files.exists(stale), "a dead run's partial stage folder is cleaned");
        assertTrue(Files.isDirectory(live), "a live run's is kept");
    }

    @Test
    void anInterruptedCompareResumesWhereItStopped() throws IOException {
        Path recipe = recipe();
        Path work = tmp.resolve("work");
        Counting interrupted = new Counting();
        interrupted.failKind = "gptq";
        interrupted.failOn = new IllegalStateException("killed");
        assertThrows(IllegalStateException.class, () -> compare(recipe, work, interrupted, new StringWriter()));
        assertEquals(1, interrupted.runs.size(), "AWQ finished before the interruption");
        try (Stream<Path> s = Files.list(work.resolve("stages"))) {
            assertEquals(1, s.filter(Files::isDirectory).count(), "one complete stage folder, no partial one");
        }
        Counting resumed = new Counting();
        StringWriter log = new StringWriter();
        CompareReport r = compare(recipe, work, resumed, log);
        assertEquals(2, resumed.runs.size(), "AWQ is not rerun: " + resumed.runs);
        assertFalse(resumed.runs.stream().anyMatch(s -> s.startsWith("awq")), resumed.runs.toString());
        assertNotNull(r.results().get(1).measures());
    }

    @Test
    void aStageThatFailsIsReportedAndTheOthersGoOn() throws IOException {
        Path recipe = recipe();
        Counting c = new Counting();
        c.failKind = "gptq";
        c.failOn = new dev.shrink.core.ShrinkException("model.layers.0.mlp.down_proj: not positive definite");
        StringWriter log = new StringWriter();
        CompareReport r = compare(recipe, tmp.resolve("work"), c, log);
        assertEquals(3, r.results().size());
        assertTrue(r.results().get(0).ok());
        assertEquals("model.layers.0.mlp.down_proj: not positive definite", r.results().get(1).error());
        assertTrue(log.toString().contains("[awqfake-rtn] failed: model.layers.0.mlp.down_proj: not positive definite"), log.toString());
    }

    static void deleteTree(Path dir) throws IOException {
        try (Stream<Path> s = Files.walk(dir)) {
            for (Path p : s.sorted(java.util.Comparator.reverseOrder()).toList()) {
                Files.delete(p);
            }
        }
    }
}
