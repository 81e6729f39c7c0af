package dev.shrink.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.shrink.calib.SharedData;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * `shrink compare` end to end on the 14M fixture with tiny settings (baseline + RTN, a few short
 * windows): the three report files, the cache on a second run, the gate's exit codes and lines.
 */
class CompareCommandTest {
    @TempDir
    Path tmp;

    Path recipe(String pipelines) throws IOException {
        Path model = SharedData.root().map(s -> s.resolve("models/fixture-llama-14m")).orElse(Path.of("missing"));
        assumeTrue(Files.isDirectory(model), "shared fixtures not found");
        Path r = tmp.resolve("tiny.yaml");
        Files.writeString(r, """
                model: %s
                evaluation:
                  datasets: [heldout]
                  seqlen: 64
                  max_windows: 3
                  kl: {windows: 1}
                  prompts: ["Once upon a time"]
                  max_new_tokens: 4
                  speed: {prefill_tokens: 16, decode_tokens: 4, repeats: 1}
                pipelines:
                %s
                """.formatted(model, pipelines));
        return r;
    }

    @Test
    void baselineAndRtnWriteTheThreeReportsAndTheGateJudgesThem() throws IOException {
        Path recipe = recipe("  - {name: rtn-w4, stages: [{gptq: {method: rtn, bits: 4, group_size: 128}}]}");
        Path work = tmp.resolve("tiny-out");
        BadInputTest.Run r = BadInputTest.shrink("compare", recipe.toString(), "-q");
        assertEquals(0, r.code(), r.out() + r.err());
        assertTrue(r.out().contains("[rtn-w4] stage 1/1 gptq: running"), r.out());
        assertTrue(r.out().contains("wrote " + work.resolve("report.json")), "the default work dir is beside the recipe: " + r.out());
        JsonNode report = new ObjectMapper().readTree(work.resolve("report.json").toFile());
        assertEquals(2, report.get("results").size());
        JsonNode base = report.at("/results/0/measures"), rtn = report.at("/results/1/measures");
        assertEquals("heldout", rtn.at("/perplexity/0/dataset").asText());
        assertEquals(64, rtn.at("/perplexity/0/seqlen").asInt());
        assertEquals(3, rtn.at("/perplexity/0/windows").asInt());
        double pb = base.at("/perplexity/0/ppl").asDouble(), pr = rtn.at("/perplexity/0/ppl").asDouble();
        assertTrue(pb > 1 && pr > pb * 0.95 && pr < pb * 1.5, "4-bit RTN is close to the baseline: " + pb + " vs " + pr);
        assertTrue(rtn.at("/size/weight_bytes").asLong() < 0.5 * base.at("/size/weight_bytes").asLong(), "4-bit is under half of bf16");
        double lb = rtn.at("/size/linear_bits_per_weight").asDouble();
        assertTrue(lb > 4.0 && lb < 4.5, "4-bit g128 linears with scales, zeros, g_idx: " + lb);
        assertEquals(0.0, base.at("/kl/mean").asDouble());
        assertTrue(rtn.at("/kl/mean").asDouble() > 0);
        int added = rtn.at("/continuations/0/new_tokens").asInt();
        assertTrue(added >= 1 && added <= 4, "greedy tokens after the prompt: " + added);
        assertTrue(rtn.at("/speed/decode_tokens_per_second").asDouble() > 0);
        assertFalse(report.at("/machine/backend").asText().isBlank());
        String md = Files.readString(work.resolve("report.md"));
        assertTrue(md.contains("| rtn-w4 | ") && md.contains("| baseline | "), md);
        String html = Files.readString(work.resolve("report.html"));
        assertTrue(html.contains("<svg ") && html.contains("rtn-w4"));

        // the same compare again: nothing runs, and the gate against its own report passes
        BadInputTest.Run again = BadInputTest.shrink("compare", recipe.toString(), "-q", "--baseline",
                work.resolve("report.json").toString(), "--max-ppl-increase", "1%", "--max-size-increase", "5%");
        assertEquals(0, again.code(), again.out() + again.err());
        assertTrue(again.out().contains("[rtn-w4] stage 1/1 gptq: cached"), again.out());
        assertTrue(again.out().contains("[rtn-w4] measures: cached"), again.out());
        assertTrue(again.out().contains("gate: passed (4 metrics compared"), again.out());

        // an old report where RTN was better and smaller: two regressions, exit 3
        ObjectNode old = (ObjectNode) new ObjectMapper().readTree(work.resolve("report.json").toFile());
        ObjectNode oldPpl = (ObjectNode) old.at("/results/1/measures/perplexity/0");
        oldPpl.put("ppl", pr / 1.05);
        ObjectNode oldSize = (ObjectNode) old.at("/results/1/measures/size");
        oldSize.put("weight_bytes", rtn.at("/size/weight_bytes").asLong() / 2);
        Path oldFile = tmp.resolve("old-report.json");
        new ObjectMapper().writeValue(oldFile.toFile(), old);
        BadInputTest.Run gate = BadInputTest.shrink("compare", recipe.toString(), "-q", "--baseline", oldFile.toString(),
                "--max-ppl-increase", "1%", "--max-size-increase", "5%");
        assertEquals(3, gate.code(), gate.out() + gate.err());
        assertTrue(gate.out().contains(String.format(java.util.Locale.ROOT, "gate: FAIL: rtn-w4 heldout perplexity %.2f > %.2f +1%% (old)",
                pr, pr / 1.05)), gate.out());
        assertTrue(gate.out().contains("(old): exceeds the 1% threshold and the noise (±0.00%, paired over 3 windows)"),
                "the same windows' NLLs, all higher by log 1.05: no noise in the difference: " + gate.out());
        assertTrue(gate.out().contains("gate: FAIL: rtn-w4 size "), gate.out());
        assertTrue(gate.out().contains("gate: 2 metrics regressed"), gate.out());
        String gatedMd = Files.readString(work.resolve("report.md"));
        assertTrue(gatedMd.contains("**Gate FAILED (2 metrics regressed against " + oldFile + ")**"), gatedMd);
        assertTrue(gatedMd.contains("Reproduce: `shrink compare " + recipe + " -q --baseline " + oldFile), gatedMd);
        assertEquals("stages/" + new ObjectMapper().readTree(work.resolve("report.json").toFile()).at("/results/1/model_key").asText(),
                new ObjectMapper().readTree(work.resolve("report.json").toFile()).at("/results/1/model_dir").asText());

        // an old report 2% better but with a wide standard error and no per-window NLLs: over the limit, within the noise
        oldSize.put("weight_bytes", rtn.at("/size/weight_bytes").asLong());
        oldPpl.put("ppl", pr / 1.02);
        oldPpl.put("nll_se", 0.5);
        oldPpl.remove("window_nll");
        new ObjectMapper().writeValue(oldFile.toFile(), old);
        BadInputTest.Run noisy = BadInputTest.shrink("compare", recipe.toString(), "-q", "--baseline", oldFile.toString());
        assertEquals(0, noisy.code(), noisy.out() + noisy.err());
        assertTrue(noisy.out().contains("gate: note: rtn-w4 heldout perplexity") && noisy.out().contains("but within noise (±")
                && noisy.out().contains("independent se's combined), not failed"), noisy.out());
        assertTrue(noisy.out().contains("gate: passed"), noisy.out());
    }

    @Test
    void badRecipesAndOptionsAreOneLineAndExitTwo() throws IOException {
        Path recipe = recipe("  - {name: x, stages: [{gptq: {bitz: 4}}]}");
        BadInputTest.Run r = BadInputTest.shrink("compare", recipe.toString());
        assertEquals(2, r.code());
        assertEquals("shrink: error: " + recipe + ": unknown key 'bitz' in stage gptq of pipeline 'x' (allowed: method, bits, "
                + "group_size, sym, act_order, static_groups, true_sequential, damp, mse, awq_scales, gptaq, block_size, batch, "
                + "calibration, rotate, rotate_seed, rotate_heads)",
                r.err().strip());
        Path ok = recipe("  - {name: x, stages: [{gptq: {method: rtn}}]}");
        BadInputTest.Run only = BadInputTest.shrink("compare", ok.toString(), "--only", "y");
        assertEquals(2, only.code());
        assertTrue(only.err().contains("--only y: no such pipeline"), only.err());
        BadInputTest.Run limit = BadInputTest.shrink("compare", ok.toString(), "--max-ppl-increase", "1%");
        assertEquals(2, limit.code());
        assertTrue(limit.err().contains("need --baseline"), limit.err());
        BadInputTest.Run noOld = BadInputTest.shrink("compare", ok.toString(), "--baseline", tmp.resolve("none.json").toString());
        assertEquals(2, noOld.code());
        assertTrue(noOld.err().contains("none.json: no such file"), noOld.err());
        BadInputTest.Run missing = BadInputTest.shrink("compare", tmp.resolve("nope.yaml").toString());
        assertEquals(2, missing.code());
        assertTrue(missing.err().contains("nope.yaml: no such recipe file"), missing.err());
        assertFalse(Files.exists(tmp.resolve("tiny-out")), "nothing written for bad input");
        BadInputTest.Run help = BadInputTest.shrink("compare", "--help");
        assertEquals(0, help.code());
        assertTrue(help.out().contains("3 the gate found a regression") && help.out().contains("pipelines:"), help.out());
        assertTrue(help.out().contains("(1% or an absolute 0.5)"), "percent signs printed as typed: " + help.out());
    }
}
