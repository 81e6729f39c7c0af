package dev.shrink.pipeline;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.shrink.calib.SharedData;
import dev.shrink.core.ShrinkException;
import dev.shrink.core.model.ModelDir;
import dev.shrink.core.sparse.SparsityRecord;
import java.io.IOException;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The distill stage in recipes: its schema (defaults = the CLI's, the teacher = the recipe's model
 * unless named, strict keys), its cache key (the teacher by content), and prune → distill → gptq as
 * one pipeline on stories260K-hf with the real stages: the distilled model keeps the pruned zeros
 * and is what GPTQ quantizes; a second compare runs nothing.
 */
class DistillStageRecipeTest {
    static final Path FILE = Path.of("/tmp/recipes/recipe.yaml");

    @TempDir
    Path tmp;

    @Test
    void schema() {
        Recipe r = RecipeParser.parse("""
                model: ../models/teacher
                pipelines:
                  - {name: kd, stages: [{prune: {method: magnitude, pattern: "2:4"}}, {distill: {}}]}
                  - name: kd2
                    stages:
                      - distill: {teacher: other, steps: 20, batch: 4, micro_batch: 2, seqlen: 128, lr: 1.0e-3,
                                  loss: reverse-kl, alpha: 0.5, temperature: 2, data: "c4,train.txt", seed: 7}
                """, FILE);
        StageSpec.Distill d = assertInstanceOf(StageSpec.Distill.class, r.pipelines().get(0).stages().get(1));
        assertEquals(Path.of("/tmp/models/teacher"), d.teacher(), "the recipe's model by default");
        assertEquals(new StageSpec.Distill(Path.of("/tmp/models/teacher"), 400, 8, 8, 512, 3e-4, 20, 1.0, 0.01, 1.0, 1.0,
                "kl", 0, "c4,wikitext2-valid,ptb-valid", 0), d, "the golden protocol's defaults");
        assertEquals(null, d.calibration());
        StageSpec.Distill d2 = assertInstanceOf(StageSpec.Distill.class, r.pipelines().get(1).stages().get(0));
        assertEquals(Path.of("/tmp/recipes/other"), d2.teacher());
        assertEquals("c4,/tmp/recipes/train.txt", d2.data());
        assertEquals(List.of(20, 4, 2, 128), List.of(d2.steps(), d2.batch(), d2.microBatch(), d2.seqlen()));
        assertEquals("reverse-kl", d2.loss());
        assertEquals(7, d2.seed());

        ShrinkException unknown = assertThrows(ShrinkException.class, () -> RecipeParser.parse("""
                model: m
                pipelines: [{name: x, stages: [{distill: {stepz: 3}}]}]
                """, FILE));
        assertEquals(FILE + ": unknown key 'stepz' in stage distill of pipeline 'x' (allowed: teacher, steps, batch, "
                + "micro_batch, seqlen, lr, warmup, clip, weight_decay, temperature, alpha, loss, hidden_weight, data, seed)",
                unknown.getMessage());
        ShrinkException micro = assertThrows(ShrinkException.class, () -> RecipeParser.parse("""
                model: m
                pipelines: [{name: x, stages: [{distill: {batch: 8, micro_batch: 3}}]}]
                """, FILE));
        assertEquals(FILE + ": 'micro_batch' in stage distill of pipeline 'x' must divide batch 8, got 3", micro.getMessage());
        ShrinkException loss = assertThrows(ShrinkException.class, () -> RecipeParser.parse("""
                model: m
                pipelines: [{name: x, stages: [{distill: {loss: mse}}]}]
                """, FILE));
        assertTrue(loss.getMessage().contains("'loss' in stage distill of pipeline 'x' must be one of kl, reverse-kl"),
                loss.getMessage());
        ShrinkException after = assertThrows(ShrinkException.class, () -> RecipeParser.parse("""
                model: m
                pipelines: [{name: x, stages: [{gptq: {bits: 4}}, {distill: {}}]}]
                """, FILE));
        assertTrue(after.getMessage().contains("follows gptq, whose output is packed"), after.getMessage());
    }

    @Test
    void theShippedExampleParses() {
        Path file = Path.of(System.getProperty("user.dir")).resolve("../examples/distill.yaml").normalize();
        Recipe r = RecipeParser.read(file);
        assertEquals(List.of("prune24", "prune24-kd", "prune24-kd-gptq-w4"),
                r.pipelines().stream().map(Recipe.Pipeline::name).toList());
        List<StageSpec> chain = r.pipelines().get(2).stages();
        assertEquals(List.of("prune", "distill", "gptq"), chain.stream().map(StageSpec::kind).toList());
        StageSpec.Distill d = assertInstanceOf(StageSpec.Distill.class, chain.get(1));
        assertEquals(r.model(), d.teacher());
        assertEquals(40, d.steps());
        assertEquals(r.pipelines().get(1).stages().get(1), d, "the two pipelines share the distill stage");
    }

    @Test
    void theTeacherEntersTheKeyByContent() {
        StageSpec.Distill d = new StageSpec.Distill(Path.of("/a"), 4, 2, 2, 32, 1e-3, 0, 1, 0.01, 1, 1, "kl", 0, "c4", 0);
        StageSpec.Distill moved = new StageSpec.Distill(Path.of("/b"), 4, 2, 2, 32, 1e-3, 0, 1, 0.01, 1, 1, "kl", 0, "c4", 0);
        assertEquals(Keys.stageKey("in", d, null, "t1"), Keys.stageKey("in", moved, null, "t1"), "same teacher bytes elsewhere");
        assertNotEquals(Keys.stageKey("in", d, null, "t1"), Keys.stageKey("in", d, null, "t2"), "another teacher");
        StageSpec.Distill more = new StageSpec.Distill(Path.of("/a"), 5, 2, 2, 32, 1e-3, 0, 1, 0.01, 1, 1, "kl", 0, "c4", 0);
        assertNotEquals(Keys.stageKey("in", d, null, "t1"), Keys.stageKey("in", more, null, "t1"));
        StageSpec.Gptq g = new StageSpec.Gptq("rtn", 4, 128, true, false, false, true, 0.01, false, 128, 8, null);
        assertEquals(Keys.stageKey("in", g, null), Keys.stageKey("in", g, null, null), "other stages' keys unchanged");
    }

    @Test
    void pruneDistillGptqRunsAsOnePipeline() throws IOException {
        Path model = SharedData.root().map(s -> s.resolve("models/stories260K-hf")).orElse(Path.of("missing"));
        assumeTrue(Files.isDirectory(model), "shared fixtures not found");
        String c4 = String.join("\n\n", dev.shrink.distill.TrainText.documents("c4", null, false).subList(0, 30));
        Files.writeString(tmp.resolve("train.txt"), c4);
        String text = Files.readString(SharedData.root().get().resolve("datasets/tinystories-valid-sample/tinystories_val.txt"));
        Files.writeString(tmp.resolve("eval.txt"), text.substring(0, 20_000));
        Path recipe = tmp.resolve("recipe.yaml");
        Files.writeString(recipe, """
                model: %s
                calibration: {dataset: train.txt, samples: 4, seqlen: 32}
                evaluation:
                  datasets: [eval.txt]
                  seqlen: 64
                  max_windows: 2
                  kl: {windows: 1}
                  prompts: ["Once upon a time"]
                  max_new_tokens: 4
                  speed: {prefill_tokens: 8, decode_tokens: 2, repeats: 1}
                baseline: false
                pipelines:
                  - name: p24-kd-rtn
                    stages:
                      - prune: {method: magnitude, pattern: "2:4"}
                      - distill: {steps: 4, batch: 2, seqlen: 32, warmup: 1, lr: 1.0e-3, data: train.txt}
                      - gptq: {method: rtn, bits: 8, group_size: -1}
                """.formatted(model));
        Path work = tmp.resolve("work");
        CompareCachingTest.Counting c = new CompareCachingTest.Counting();
        StringWriter log = new StringWriter();
        CompareReport r = CompareCachingTest.compare(recipe, work, c, log);
        assertEquals(3, c.runs.size(), c.runs.toString());
        assertTrue(c.runs.get(1).startsWith("distill "), c.runs.toString());
        assertTrue(r.results().get(0).ok(), log.toString());
        @SuppressWarnings("unchecked")
        List<String> keys = (List<String>) ((Map<String, Object>) r.settings().get("stage_keys")).get("p24-kd-rtn");
        Path pruned = work.resolve("stages").resolve(keys.get(0)), distilled = work.resolve("stages").resolve(keys.get(1));
        try (ModelDir p = ModelDir.open(pruned); ModelDir d = ModelDir.open(distilled)) {
            SparsityRecord rec = SparsityRecord.fromConfig(d.config().raw());
            assertEquals("2:4", rec.pattern().label(), "the distilled model still records its sparsity");
            String name = "model.layers.1.mlp.up_proj.weight";
            float[] before = p.weights().floats(name), after = d.weights().floats(name);
            int changed = 0;
            for (int i = 0; i < before.length; i++) {
                if (before[i] == 0f) {
                    assertEquals(0f, after[i], name + "[" + i + "] is pruned and must stay zero");
                } else {
                    changed += before[i] != after[i] ? 1 : 0;
                }
            }
            assertTrue(changed > before.length / 4, "training moved the kept weights: " + changed);
        }
        JsonNode report = new ObjectMapper().readTree(distilled.resolve("shrink-report.json").toFile());
        assertEquals("distill", report.get("stage").asText());
        assertEquals(model.toAbsolutePath().normalize().toString(), report.get("teacher").asText());
        assertEquals(4, report.get("curve").size());
        assertTrue(Files.isRegularFile(distilled.resolve("loss-curve.svg")));
        assertTrue(Files.notExists(work.resolve("stages").resolve(keys.get(1) + ".checkpoint")), "checkpoint removed");

        CompareCachingTest.Counting again = new CompareCachingTest.Counting();
        CompareCachingTest.compare(recipe, work, again, new StringWriter());
        assertEquals(List.of(), again.runs, "all three stages cached");
    }
}
