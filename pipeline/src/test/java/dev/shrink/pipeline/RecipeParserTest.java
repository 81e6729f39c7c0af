package dev.shrink.pipeline;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shrink.core.ShrinkException;
import dev.shrink.core.forward.KvCacheType;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;

/** The recipe schema: the shipped example parses to what it says; every bad recipe gets one line naming the problem. */
class RecipeParserTest {
    static final Path FILE = Path.of("/tmp/recipes/recipe.yaml");

    static final String MIN = """
            model: m
            pipelines:
              - {name: x, stages: [{gptq: {bits: 4}}]}
            """;

    static ShrinkException bad(String yaml) {
        return assertThrows(ShrinkException.class, () -> RecipeParser.parse(yaml, FILE));
    }

    @Test
    void theQualityExampleParses() {
        Path file = Path.of(System.getProperty("user.dir")).resolve("../examples/quality.yaml").normalize();
        Recipe r = RecipeParser.read(file);
        assertEquals(13, r.pipelines().size());
        assertEquals(List.of("heldout", "wikitext2"), r.evaluation().datasets());
        StageSpec.Gptq both = assertInstanceOf(StageSpec.Gptq.class, r.pipelines().get(5).stages().get(0));
        assertTrue(both.awqScales() && both.gptaq() && both.sym() && both.bits() == 4);
        assertEquals(true, both.options().get("awq_scales"));
        StageSpec.Gptq plain = assertInstanceOf(StageSpec.Gptq.class, r.pipelines().get(0).stages().get(0));
        assertTrue(!plain.options().containsKey("awq_scales") && !plain.options().containsKey("gptaq"),
                "options left off stay out of the cache key: " + plain.options());
        assertTrue(r.calibration().tokens().endsWith("fixture-llama-14m.calib-c4-128x512.safetensors"));
        assertTrue(bad(MIN.replace("{bits: 4}", "{method: rtn, gptaq: true}")).getMessage().contains("gptaq"));
        assertTrue(bad(MIN.replace("{bits: 4}", "{method: rtn, awq_scales: true}")).getMessage().contains("awq_scales"));
    }

    @Test
    void theShippedExampleParses() {
        Path file = Path.of(System.getProperty("user.dir")).resolve("../examples/compare.yaml").normalize();
        Recipe r = RecipeParser.read(file);
        assertEquals(file.getParent().resolve("../../shared/models/fixture-llama-14m").normalize(), r.model());
        assertTrue(r.baseline());
        assertEquals(List.of("rtn-w4", "gptq-w4", "awq-w4", "prune24-gptq-w4"),
                r.pipelines().stream().map(Recipe.Pipeline::name).toList());
        assertEquals(new Recipe.CalibSettings("c4", null, 16, 512, 0, null, null), r.calibration());
        Recipe.Evaluation e = r.evaluation();
        assertEquals(List.of("heldout"), e.datasets());
        assertEquals(512, e.seqlen());
        assertEquals(20, e.maxWindows());
        assertEquals(new Recipe.Kl("heldout", 4), e.kl());
        assertEquals(new Recipe.SpeedSettings(128, 128, 5), e.speed());
        assertEquals(2, e.prompts().size());

        StageSpec.Gptq rtn = assertInstanceOf(StageSpec.Gptq.class, r.pipelines().get(0).stages().get(0));
        assertEquals("rtn", rtn.method());
        assertNull(rtn.calibration(), "round-to-nearest reads no calibration");
        StageSpec.Gptq gptq = assertInstanceOf(StageSpec.Gptq.class, r.pipelines().get(1).stages().get(0));
        assertEquals(new Recipe.CalibSettings("c4", null, 16, 512, 0, null, "random"), gptq.calibration());
        assertEquals(0.01, gptq.damp());
        assertTrue(gptq.sym() && gptq.trueSequential() && !gptq.actOrder());
        StageSpec.Awq awq = assertInstanceOf(StageSpec.Awq.class, r.pipelines().get(2).stages().get(0));
        assertEquals(new Recipe.CalibSettings("c4", null, 8, 256, 0, null, "blocks"), awq.calibration(),
                "the stage overrides samples and seqlen only; AWQ samples blocks");
        assertTrue(awq.packedOutput());
        List<StageSpec> chain = r.pipelines().get(3).stages();
        StageSpec.Prune prune = assertInstanceOf(StageSpec.Prune.class, chain.get(0));
        assertEquals("wanda", prune.method());
        assertEquals("2:4", prune.pattern());
        assertEquals(0.5, prune.sparsity());
        assertNull(prune.scope());
        assertFalse(prune.packedOutput());
        assertInstanceOf(StageSpec.Gptq.class, chain.get(1));
    }

    @Test
    void unknownKeysAreNamedWithTheAllowedOnesAtEveryLevel() {
        String[][] cases = {
            {"model: m\nmodle: x\npipelines: [{name: x, stages: [{gptq: {}}]}]", "unknown key 'modle' at the top level",
                "model, revision, calibration, evaluation, baseline, pipelines"},
            {"model: m\ncalibration: {sample: 3}\npipelines: [{name: x, stages: [{gptq: {}}]}]",
                "unknown key 'sample' in calibration", "dataset, field, samples, seqlen, seed, tokens, sampling"},
            {"model: m\nevaluation: {dataset: [heldout]}\npipelines: [{name: x, stages: [{gptq: {}}]}]",
                "unknown key 'dataset' in evaluation", "datasets, seqlen, max_windows, kl,"},
            {"model: m\nevaluation: {kl: {window: 3}}\npipelines: [{name: x, stages: [{gptq: {}}]}]",
                "unknown key 'window' in evaluation.kl", "dataset, windows"},
            {"model: m\nevaluation: {speed: {prefill: 3}}\npipelines: [{name: x, stages: [{gptq: {}}]}]",
                "unknown key 'prefill' in evaluation.speed", "prefill_tokens, decode_tokens, repeats"},
            {"model: m\npipelines: [{name: x, stage: []}]", "unknown key 'stage' in pipeline 1", "name, stages"},
            {"model: m\npipelines: [{name: x, stages: [{gptq: {bitz: 4}}]}]",
                "unknown key 'bitz' in stage gptq of pipeline 'x'", "method, bits, group_size, sym, act_order"},
            {"model: m\npipelines: [{name: y, stages: [{awq: {export: fake, duo: true}}]}]",
                "unknown key 'duo' in stage awq of pipeline 'y'", "duo_scaling, clip, skip_unfit, export"},
            {"model: m\npipelines: [{name: z, stages: [{prune: {method: wanda, sparsity: 0.5, target: [q]}}]}]",
                "unknown key 'target' in stage prune of pipeline 'z'", "scope, targets, ignore"},
            {"model: m\npipelines: [{name: x, stages: [{gptq: {calibration: {seqlen: 8, seeds: 1}}}]}]",
                "unknown key 'seeds' in the calibration of stage gptq of pipeline 'x'", "samples, seqlen, seed"},
        };
        for (String[] c : cases) {
            String msg = bad(c[0]).getMessage();
            assertTrue(msg.startsWith(FILE + ": "), msg);
            assertTrue(msg.contains(c[1]), c[1] + " <- " + msg);
            assertTrue(msg.contains("(allowed: ") && msg.contains(c[2]), c[2] + " <- " + msg);
            assertFalse(msg.contains("\n"), "one line: " + msg);
        }
    }

    @Test
    void wrongTypesAndValuesAreNamed() {
        assertTrue(bad(MIN.replace("bits: 4", "bits: four")).getMessage()
                .contains("'bits' in stage gptq of pipeline 'x' must be an integer, got \"four\""));
        assertTrue(bad(MIN.replace("bits: 4", "bits: 5")).getMessage().contains("'bits' in stage gptq of pipeline 'x' must be 2, 3, 4 or 8, got 5"));
        assertTrue(bad(MIN.replace("bits: 4", "sym: 1")).getMessage().contains("'sym' in stage gptq of pipeline 'x' must be true or false, got 1"));
        assertTrue(bad(MIN.replace("bits: 4", "damp: high")).getMessage().contains("'damp' in stage gptq of pipeline 'x' must be a number"));
        assertTrue(bad(MIN.replace("bits: 4", "group_size: 100")).getMessage().contains("'group_size'"));
        assertTrue(bad(MIN.replace("bits: 4", "method: gptqq")).getMessage().contains("'method' in stage gptq of pipeline 'x' must be one of gptq, rtn"));
        assertTrue(bad(MIN.replace("bits: 4", "static_groups: true")).getMessage().contains("act_order"));
        assertTrue(bad("model: m\npipelines: {name: x}").getMessage().contains("'pipelines' at the top level must be a list"));
        assertTrue(bad("model: [a, b]\npipelines: []").getMessage().contains("'model' at the top level must be a string, got a list"));
        assertTrue(bad(MIN + "evaluation: {max_windows: -1}\n").getMessage().contains("'max_windows' in evaluation must be ≥ 0"));
        assertTrue(bad(MIN + "evaluation: {datasets: [heldout, 3]}\n").getMessage().contains("list of strings"));
        assertTrue(bad(MIN + "calibration: {samples: 0}\n").getMessage().contains("'samples' in calibration must be at least 1, got 0"));
        assertTrue(bad(MIN + "baseline: maybe\n").getMessage().contains("'baseline' at the top level must be true or false"));
        assertTrue(bad("model: m\npipelines: [{name: x, stages: [{awq: {bits: 3}}]}]").getMessage().contains("must be 4"));
    }

    @Test
    void evaluationKvCacheIsReadAndKeysTheResultsOnlyWhenQuantized() {
        Recipe fp16 = RecipeParser.parse(MIN, FILE);
        assertEquals(KvCacheType.FP16, fp16.evaluation().kvCache());
        Recipe int8 = RecipeParser.parse(MIN + "evaluation: {kv_cache: int8}\n", FILE);
        assertEquals(KvCacheType.INT8, int8.evaluation().kvCache());
        assertFalse(Compare.evaluationSettings(fp16, 512).containsKey("kv_cache"), "fp16 results keep their old keys");
        assertEquals("int8", Compare.evaluationSettings(int8, 512).get("kv_cache"));
        assertFalse(Keys.resultKey("m", "b", Compare.evaluationSettings(fp16, 512), "cpu", 0)
                .equals(Keys.resultKey("m", "b", Compare.evaluationSettings(int8, 512), "cpu", 0)));
        assertTrue(bad(MIN + "evaluation: {kv_cache: int3}\n").getMessage()
                .contains("'kv_cache' in evaluation must be fp16, int8 or int4, got int3"));
    }

    @Test
    void missingValuesDuplicatesAndBadChainsAreRefused() {
        assertTrue(bad("pipelines: [{name: x, stages: [{gptq: {}}]}]").getMessage().contains("missing 'model' at the top level"));
        assertTrue(bad("model: m\n").getMessage().contains("no pipelines"));
        assertTrue(bad("model: m\npipelines: [{stages: [{gptq: {}}]}]").getMessage().contains("missing 'name' in pipeline 1"));
        assertTrue(bad("model: m\npipelines: [{name: x}]").getMessage().contains("pipeline 'x' has no stages"));
        assertTrue(bad("model: m\npipelines: [{name: x, stages: [{prune: {sparsity: 0.5}}]}]").getMessage()
                .contains("missing 'method' in stage prune of pipeline 'x'"));
        assertTrue(bad("model: m\npipelines: [{name: x, stages: [{prune: {method: magnitude}}]}]").getMessage()
                .contains("missing 'sparsity'"));
        assertTrue(bad("model: m\npipelines: [{name: x, stages: [{prune: {method: wanda, pattern: '2:4', sparsity: 0.7}}]}]")
                .getMessage().contains("contradicts pattern 2:4"));
        assertTrue(bad("model: m\npipelines: [{name: x, stages: [{prune: {method: wanda, pattern: '4:2'}}]}]")
                .getMessage().contains("'pattern'"));
        String dup = bad("model: m\npipelines:\n  - {name: a, stages: [{gptq: {}}]}\n  - {name: b, stages: [{gptq: {}}]}\n"
                + "  - {name: a, stages: [{awq: {}}]}\n").getMessage();
        assertTrue(dup.contains("duplicate pipeline name 'a' (pipelines 1 and 3)"), dup);
        assertTrue(bad("model: m\nmodel: n\npipelines: [{name: x, stages: [{gptq: {}}]}]").getMessage().contains("not valid YAML"),
                "a duplicate YAML key");
        assertTrue(bad("model: m\npipelines: [{name: x, stages: [{gptqq: {}}]}]").getMessage()
                .contains("unknown stage 'gptqq' of pipeline 'x' (allowed: gptq, awq, prune, distill)"));
        assertTrue(bad("model: m\npipelines: [{name: x, stages: [{gptq: {}, awq: {}}]}]").getMessage()
                .contains("stage 1 of pipeline 'x' must be one mapping like {gptq: {...}}"));
        assertTrue(bad("model: m\npipelines: [{name: x, stages: [{gptq: {}}, {gptq: {method: rtn}}]}]").getMessage()
                .contains("stage 2 (gptq) of pipeline 'x' follows gptq, whose output is packed"));
        assertTrue(bad("model: m\npipelines: [{name: baseline, stages: [{gptq: {}}]}]").getMessage().contains("'baseline'"));
        assertTrue(bad("model: m\npipelines: [{name: 'a b', stages: [{gptq: {}}]}]").getMessage().contains("pipeline name 'a b'"));
        assertTrue(bad("model: m\npipelines: [{name: x, stages: [{gptq: {}}]\n").getMessage().contains("not valid YAML"));
        assertTrue(bad("").getMessage().contains("is empty"));
    }

    @Test
    void anchorsAliasesAndSecondDocumentsAreRefusedWithTheirLine() {
        // Jackson alone read [&p "heldout", *p] as ["heldout", "p"] and ignored a second document.
        String alias = bad("model: m\nevaluation: {datasets: [&p heldout, *p]}\n"
                + "pipelines: [{name: x, stages: [{gptq: {}}]}]\n").getMessage();
        assertTrue(alias.startsWith(FILE + ": YAML anchor &p at line 2"), alias);
        String onlyAlias = bad("model: m\nevaluation: {datasets: [*p]}\npipelines: [{name: x, stages: [{gptq: {}}]}]\n")
                .getMessage();
        assertTrue(onlyAlias.contains("alias *p at line 2") || onlyAlias.contains("not valid YAML"), onlyAlias);
        String merge = bad("base: &b {bits: 4}\nmodel: m\npipelines: [{name: x, stages: [{gptq: {<<: *b}}]}]\n").getMessage();
        assertTrue(merge.contains("anchor &b at line 1"), merge);
        String docs = bad(MIN + "---\nmodel: other\n").getMessage();
        assertTrue(docs.startsWith(FILE + ": a second YAML document starts at line 4"), docs);
        String later = bad(MIN + "---\n[unclosed\n").getMessage();
        assertTrue(later.contains("second YAML document") || later.contains("not valid YAML"), later);
        RecipeParser.parse("---\n" + MIN, FILE); // one document with an explicit start is fine
    }

    @Test
    void nOfMPatternsAreCheckedByTheSharedValidator() {
        String huge = bad("model: m\npipelines: [{name: x, stages: [{prune: {method: magnitude, pattern: '1:99999999999'}}]}]")
                .getMessage();
        assertTrue(huge.startsWith(FILE + ": 'pattern' in stage prune of pipeline 'x'"), huge);
        assertTrue(huge.contains("at most 256"), huge);
        assertTrue(bad("model: m\npipelines: [{name: x, stages: [{prune: {method: magnitude, pattern: '0:4'}}]}]")
                .getMessage().contains("0 < N < M"));
        assertTrue(bad("model: m\npipelines: [{name: x, stages: [{prune: {method: magnitude, pattern: '2:x'}}]}]")
                .getMessage().contains("'pattern'"));
        Recipe r = RecipeParser.parse("model: m\npipelines: [{name: x, stages: [{prune: {method: magnitude, pattern: ' 4:8'}}]}]",
                FILE);
        StageSpec.Prune p = assertInstanceOf(StageSpec.Prune.class, r.pipelines().get(0).stages().get(0));
        assertEquals("4:8", p.pattern());
        assertEquals(0.5, p.sparsity(), 1e-12);
    }

    @Test
    void composableChainsAndRelativePathsResolve() {
        Recipe r = RecipeParser.parse("""
                model: ../models/m
                calibration: {tokens: calib.safetensors, samples: 4, seqlen: 32}
                evaluation: {datasets: [heldout, texts/mine.txt], kl: {windows: 0}}
                baseline: false
                pipelines:
                  - name: awqfake-rtn
                    stages: [{awq: {export: fake}}, {gptq: {method: rtn}}]
                  - name: magnitude
                    stages: [{prune: {method: magnitude, sparsity: 0.25, ignore: down_proj}}]
                """, FILE);
        assertEquals(Path.of("/tmp/models/m"), r.model());
        assertEquals(Path.of("/tmp/recipes/calib.safetensors"), r.calibration().tokens());
        assertEquals(List.of("heldout", "/tmp/recipes/texts/mine.txt"), r.evaluation().datasets());
        assertEquals(0, r.evaluation().kl().windows());
        assertFalse(r.baseline());
        assertEquals(2, r.pipelines().get(0).stages().size());
        StageSpec.Prune p = (StageSpec.Prune) r.pipelines().get(1).stages().get(0);
        assertNull(p.calibration(), "magnitude pruning reads no calibration");
        assertEquals(List.of("down_proj"), p.ignore());
        assertEquals("unstructured", p.pattern());
    }
}
