package dev.shrink.pipeline;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import dev.shrink.eval.KlResult;
import dev.shrink.eval.PplResult;
import dev.shrink.eval.SizeResult;
import dev.shrink.eval.SpeedResult;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** report.md, report.json and report.html of a hand-made report. */
class ReportFilesTest {
    @TempDir
    Path tmp;

    static Measures measures(long bytes, double ppl, Double kl, double decode, String continuation) {
        long params = 14_000_000;
        return new Measures(new SizeResult(bytes, bytes + 600_000, params, 8.0 * bytes / params, bytes / 2, params / 2,
                8.0 * (bytes / 2) / (params / 2.0)),
                List.of(new PplResult("heldout", 512, 20, 1034, 529_473, 10_220, Math.log(ppl) * 10_220, ppl, 3.0, "cpu")),
                kl == null ? null : new KlResult("heldout", 512, 4, 2048, kl, 10 * kl, 1.0, "cpu"),
                new SpeedResult(128, 32, 3, 1800, 1700, 1900, decode, decode - 5, decode + 5, "cpu"),
                new Measures.Memory(58_000_000, 700_000_000L, 600_000_000L),
                List.of(new Measures.Continuation("Once | upon", continuation, 5)), "cpu", 12.0);
    }

    /** baseline, two results and a failed pipeline. */
    static CompareReport report() {
        List<CompareReport.Row> rows = List.of(
                new CompareReport.Row("baseline", List.of(), "k0", "/m", 0, 0, 0, false,
                        measures(26_949_000, 46.85, 0.0, 66, ", and then <b>"), null),
                new CompareReport.Row("rtn-w4", List.of("gptq(method=rtn, bits=4)"), "k1", "/s/k1", 0.6, 1, 0, false,
                        measures(11_765_000, 47.85, 0.0198, 74, ", and | I"), null),
                new CompareReport.Row("gptq-w4", List.of("gptq(method=gptq, bits=4)"), "k2", "/s/k2", 14.2, 0, 1, true,
                        measures(11_765_000, 47.10, 0.0120, 60, ", said"), null),
                new CompareReport.Row("prune-gptq", List.of("prune(method=wanda)", "gptq(bits=4)"), null, null, 0, 0, 0, false,
                        null, "the prune stage needs the prune module (not merged yet)"));
        return new CompareReport("shrink 0.1.0", "2026-01-01T00:00:00Z", "/r/compare.yaml", "/m", "k0",
                new CompareReport.Machine("Linux", "amd64", 2, "25", "cpu", 2, 6L << 30, 512), Map.of("evaluation", Map.of()),
                rows, Compare.fronts(rows), ReportFiles.DEFINITIONS);
    }

    @Test
    void frontsOfTheRows() {
        CompareReport r = report();
        assertEquals("heldout", r.pareto().dataset());
        assertEquals(List.of("gptq-w4", "baseline"), r.pareto().sizeVsPerplexity(), "rtn-w4 is as large as gptq-w4 and worse");
        assertEquals(List.of("rtn-w4", "baseline"), r.pareto().speedVsPerplexity(), "baseline is faster and better than gptq-w4");
    }

    @Test
    void markdownHasOneRowPerResultWithDeltasAndTheContinuations() {
        String md = ReportFiles.markdown(report());
        assertTrue(md.contains("| result | size | bits/weight | linear bits/weight | ppl heldout | KL | prefill tok/s | decode tok/s "
                + "| model heap | peak RSS | compress |"), md);
        assertTrue(md.contains("| baseline | 25.70 MiB | 15.40 | 15.40 | 46.8500 | 0.00000 | 1800 | 66.0 | 55.3 MiB | 668 MiB | – |"), md);
        assertTrue(md.contains("| rtn-w4 | 11.22 MiB | 6.72 | 6.72 | 47.8500 (+2.13%) | 0.01980 | 1800 | 74.0 |"), md);
        assertTrue(md.contains("| gptq-w4 | 11.22 MiB | 6.72 | 6.72 | 47.1000 (+0.53%) | 0.01200 | 1800 | 60.0 | 55.3 MiB | 668 MiB "
                + "| 14.2 s (cached) |"), md);
        assertTrue(md.contains("| prune-gptq | failed: the prune stage needs the prune module (not merged yet) |"), md);
        assertTrue(md.contains("Pareto front (heldout perplexity vs size): gptq-w4, baseline"), md);
        assertTrue(md.contains("**Once \\| upon**"), "pipes escaped: " + md);
        assertTrue(md.contains("| baseline | , and then &lt;b> |"), "no raw HTML from model text: " + md);
        assertTrue(md.contains("| rtn-w4 | , and \\| I |"), md);
        assertTrue(md.contains("perplexity heldout: seqlen 512, 20 of 1034 windows, 10220 predictions, 529473 tokens in text"), md);
        assertTrue(md.contains("- **prune-gptq**: prune(method=wanda) → gptq(bits=4)"), md);
    }

    @Test
    void jsonHoldsEveryNumberWithSnakeCaseKeysAndMeasuresRoundTrip() throws Exception {
        ReportFiles.writeAll(tmp, report());
        JsonNode j = ReportJson.readTree(tmp.resolve("report.json"));
        assertEquals("cpu", j.at("/machine/backend").asText());
        assertEquals(4, j.get("results").size());
        assertEquals(47.85, j.at("/results/1/measures/perplexity/0/ppl").asDouble());
        assertEquals(11_765_000, j.at("/results/1/measures/size/weight_bytes").asLong());
        assertEquals(74.0, j.at("/results/1/measures/speed/decode_tokens_per_second").asDouble());
        assertEquals(0.0198, j.at("/results/1/measures/kl/mean").asDouble());
        assertEquals(58_000_000, j.at("/results/1/measures/memory/model_heap_bytes").asLong());
        assertTrue(j.at("/results/3/measures").isNull());
        assertEquals("the prune stage needs the prune module (not merged yet)", j.at("/results/3/error").asText());
        assertEquals("gptq-w4", j.at("/pareto/size_vs_perplexity/0").asText());
        assertTrue(j.at("/definitions/bits~1weight").asText().contains("baseline's parameters"));
        // a results/<key>.json cache entry reads back as the record it was
        Measures m = report().results().get(1).measures();
        Path f = tmp.resolve("m.json");
        Files.writeString(f, ReportJson.write(m));
        assertEquals(m, ReportJson.read(f, Measures.class));
        assertNull(ReportJson.read(f, Measures.class).ppl("wikitext2"));
        try (var s = Files.list(tmp)) {
            assertFalse(s.anyMatch(p -> p.getFileName().toString().endsWith(".tmp")), "no temporary file left");
        }
    }

    @Test
    void htmlIsOneSelfContainedPageWithTwoPlotsAndTheFrontMarked() throws Exception {
        ReportFiles.writeAll(tmp, report());
        String html = Files.readString(tmp.resolve("report.html"));
        assertTrue(html.startsWith("<!DOCTYPE html>"));
        assertEquals(2, html.split("<svg ", -1).length - 1, "two plots");
        assertFalse(html.contains("<script"), "no script");
        assertFalse(html.replace("xmlns=\"http://www.w3.org/2000/svg\"", "").contains("http"), "no external resource");
        assertFalse(html.contains("<link"), "no stylesheet link");
        assertTrue(html.contains("<polyline"), "the front is joined");
        assertTrue(html.contains("&lt;b&gt;") && !html.contains(", and then <b>"), "model text escaped");
        assertTrue(html.contains("prune-gptq") && html.contains("the prune stage needs the prune module"));
        assertEquals(3, html.split("class=\"star\"", -1).length - 1, "baseline, rtn-w4 and gptq-w4 are on a front");
    }

    @Test
    void ticksAreRoundAndInsideTheRange() {
        double[] t = ReportHtml.ticks(46.6, 48.0);
        assertEquals(8, t.length);
        assertEquals(46.6, t[0], 1e-9);
        assertEquals(48.0, t[7], 1e-9);
        assertEquals(List.of(10.0, 15.0, 20.0, 25.0), java.util.Arrays.stream(ReportHtml.ticks(9.8, 27.1)).boxed().toList());
        assertEquals(List.of(0.0, 50.0, 100.0, 150.0, 200.0), java.util.Arrays.stream(ReportHtml.ticks(-3, 230)).boxed().toList());
    }
}
