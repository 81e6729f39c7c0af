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
        return measures(bytes, ppl, kl, decode, continuation, 0);
    }

    /**
     * @param spread 0: a perplexity without its uncertainty (as older reports); else the 20 windows' mean NLLs are
     *               log(ppl) + spread × (−1, −½, 0, ½, 1, ...), which average to log(ppl)
     */
    static Measures measures(long bytes, double ppl, Double kl, double decode, String continuation, double spread) {
        long params = 14_000_000;
        double[] w = new double[20];
        for (int i = 0; i < 20; i++) {
            w[i] = Math.log(ppl) + spread * (i % 5 - 2) / 2;
        }
        PplResult p = spread == 0 ? new PplResult("heldout", 512, 20, 1034, 529_473, 10_220, Math.log(ppl) * 10_220, ppl, 3.0, "cpu")
                : PplResult.of("heldout", 512, 20, 1034, 529_473, 10_220, Math.log(ppl) * 10_220, 3.0, "cpu", w);
        return new Measures(new SizeResult(bytes, bytes + 600_000, params, 8.0 * bytes / params, bytes / 2, params / 2,
                8.0 * (bytes / 2) / (params / 2.0)),
                List.of(p),
                kl == null ? null : new KlResult("heldout", 512, 4, 2048, kl, 10 * kl, 1.0, "cpu"),
                new SpeedResult(128, 32, 3, 1800, 1700, 1900, decode, decode - 5, decode + 5, "cpu"),
                new Measures.Memory(58_000_000, 700_000_000L, 600_000_000L),
                List.of(new Measures.Continuation("Once | upon", continuation, 5)), "cpu", 12.0);
    }

    /** baseline, two results and a failed pipeline; the baseline's perplexity without its uncertainty (an old cache entry). */
    static CompareReport report() {
        List<CompareReport.Row> rows = List.of(
                new CompareReport.Row("baseline", List.of(), "k0", "../models/m", 0, 0, 0, false,
                        measures(26_949_000, 46.85, 0.0, 66, ", and then <b>"), null),
                new CompareReport.Row("rtn-w4", List.of("gptq(method=rtn, bits=4)"), "k1", "stages/k1", 0.6, 1, 0, false,
                        measures(11_765_000, 47.85, 0.0198, 74, ", and | I", 0.01), null),
                new CompareReport.Row("gptq-w4", List.of("gptq(method=gptq, bits=4)"), "k2", "stages/k2", 14.2, 0, 1, true,
                        measures(11_765_000, 47.10, 0.0120, 60, ", said", 0.01), null),
                new CompareReport.Row("prune-gptq", List.of("prune(method=wanda)", "gptq(bits=4)"), null, null, 0, 0, 0, false,
                        null, "the prune stage needs the prune module (not merged yet)"));
        CompareReport r = new CompareReport("shrink 0.1.0", "2026-01-01T00:00:00Z", "../compare.yaml", "../models/m", "k0",
                new CompareReport.Machine("Linux", "amd64", 2, "25", "cpu", 2, 6L << 30, 512), Map.of("evaluation", Map.of()),
                rows, Compare.fronts(rows), ReportFiles.DEFINITIONS,
                "shrink compare r/compare.yaml --baseline old/report.json --max-ppl-increase 1%", "..", null);
        return r.withGate(new CompareReport.GateVerdict("old/report.json", List.of("perplexity +1%"), false, 3,
                List.of("rtn-w4 heldout perplexity 47.85 > 47.00 +1% (old): exceeds the 1% threshold and the noise (±0.31%, "
                        + "paired over 20 windows)"), List.of("gptq-w4 heldout perplexity 47.10 > 46.60 +1% (old) but within noise")));
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
        assertTrue(md.contains("| baseline | 25.70 MiB | 15.40 | 15.40 | 46.8500 | 0.00000 | 1800 | 66.0 [61.0–71.0] | 55.3 MiB "
                + "| 668 MiB | – |"), md);
        String noise = report().results().get(1).measures().perplexity().get(0).noise();
        assertTrue(noise.matches("±0\\.[0-9]{2}%"), noise);
        assertTrue(md.contains("| rtn-w4 | 11.22 MiB | 6.72 | 6.72 | 47.8500 " + noise + " (+2.13%) | 0.01980 | 1800 | 74.0 [69.0–79.0] |"), md);
        assertTrue(md.contains("| gptq-w4 | 11.22 MiB | 6.72 | 6.72 | 47.1000 " + noise + " (+0.53%) | 0.01200 | 1800 | 60.0 [55.0–65.0] "
                + "| 55.3 MiB | 668 MiB | 14.2 s (cached) |"), md);
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
        assertEquals(47.85, j.at("/results/1/measures/perplexity/0/ppl").asDouble(), 1e-9);
        assertTrue(j.at("/results/1/measures/perplexity/0/nll_se").asDouble() > 0);
        assertEquals(20, j.at("/results/1/measures/perplexity/0/window_nll").size());
        assertTrue(j.at("/results/0/measures/perplexity/0/nll_se").isNull(), "unknown, not 0");
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
            assertFalse(s.anyMatch(p -> p.getFileName().toString().contains(".tmp")), "no temporary file left");
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

    @Test
    void reproduceCommandGateVerdictAndRelativeFoldersAreInAllThreeReports() throws Exception {
        ReportFiles.writeAll(tmp, report());
        String md = Files.readString(tmp.resolve("report.md")), html = Files.readString(tmp.resolve("report.html"));
        JsonNode j = ReportJson.readTree(tmp.resolve("report.json"));
        String cmd = "shrink compare r/compare.yaml --baseline old/report.json --max-ppl-increase 1%";
        assertTrue(md.contains("Reproduce: `" + cmd + "` (run in `..`, relative to this report's folder)"), md);
        assertTrue(html.contains("reproduce: <code>" + cmd + "</code> (run in <code>..</code>"), html);
        assertEquals(cmd, j.get("command").asText());
        assertEquals("..", j.get("command_dir").asText());
        assertTrue(md.contains("- **rtn-w4**: gptq(method=rtn, bits=4); folder `stages/k1`"), md);
        assertTrue(md.contains("- **baseline**: the input model, uncompressed; folder `../models/m`"), md);
        assertTrue(html.contains("; folder <code>stages/k1</code>"), html);
        assertEquals("stages/k1", j.at("/results/1/model_dir").asText());
        assertTrue(md.contains("**Gate FAILED (1 metric regressed against old/report.json)**; limits: perplexity +1%"), md);
        assertTrue(md.contains("- FAIL: rtn-w4 heldout perplexity 47.85 > 47.00 +1% (old): exceeds the 1% threshold and the noise"), md);
        assertTrue(md.contains("- note: gptq-w4 heldout perplexity 47.10 > 46.60 +1% (old) but within noise"), md);
        assertTrue(html.contains("<div class=\"gate fail\"><b>gate FAILED (1 metric regressed against old/report.json)</b>"), html);
        assertTrue(html.contains("<li class=\"f\">FAIL: rtn-w4 heldout perplexity 47.85"), html);
        assertFalse(j.at("/gate/passed").asBoolean());
        assertEquals(List.of("perplexity +1%"), List.of(j.at("/gate/limits/0").asText()));
        assertTrue(j.at("/gate/failures/0").asText().startsWith("rtn-w4 heldout perplexity 47.85 > 47.00"));
        // each result's perplexity interval is in the plots' tooltips and bars
        PplResult p = report().results().get(1).measures().perplexity().get(0);
        assertTrue(html.contains(String.format(java.util.Locale.ROOT, "(95%%: %.4f–%.4f)", p.pplLow(), p.pplHigh())), html);
    }

    /** Keys that are names or labels, not field names: pipeline names, the definitions' column labels. */
    static final java.util.Set<String> DATA_KEYS = java.util.Set.of("/settings/stage_keys", "/definitions");

    static void snakeCaseKeys(JsonNode n, String path, List<String> bad) {
        if (n.isObject()) {
            if (DATA_KEYS.contains(path)) {
                return;
            }
            n.fieldNames().forEachRemaining(k -> {
                if (!k.matches("[a-z][a-z0-9]*(_[a-z0-9]+)*")) {
                    bad.add(path + "/" + k);
                }
                snakeCaseKeys(n.get(k), path + "/" + k, bad);
            });
        } else if (n.isArray()) {
            for (int i = 0; i < n.size(); i++) {
                snakeCaseKeys(n.get(i), path + "/" + i, bad);
            }
        }
    }

    @Test
    void everyKeyOfReportJsonIsSnakeCase() throws Exception {
        ReportFiles.writeAll(tmp, report());
        JsonNode j = ReportJson.readTree(tmp.resolve("report.json"));
        List<String> bad = new java.util.ArrayList<>();
        snakeCaseKeys(j, "", bad);
        assertEquals(List.of(), bad);
        assertTrue(j.at("/results/1/measures/perplexity/0").has("windows_available"), "the walk saw the measures");
        assertTrue(j.at("/results/1/measures/perplexity/0").has("ppl_high"));
    }

    @Test
    void labelsOverlapNoMarkerBarOrOtherLabel() {
        // eight results crowded around two places, one with a tall error bar through its neighbours' label spots
        double[] px = {200, 204, 208, 200, 400, 202, 206, 203}, py = {150, 152, 150, 160, 100, 155, 148, 151};
        String[] names = {"rtn-w4", "gptq-w4", "awq-w4", "prune24-gptq-w4", "baseline", "rtn-w3", "gptq-w3", "awq-w3"};
        List<ReportHtml.Box> bars = List.of(new ReportHtml.Box(199, 100, 201, 220));
        ReportHtml.Box area = new ReportHtml.Box(63, 19, 515, 291);
        List<ReportHtml.Label> l = ReportHtml.placeLabels(px, py, names, bars, area);
        for (int i = 0; i < l.size(); i++) {
            ReportHtml.Box b = l.get(i).box();
            assertTrue(b.inside(area), names[i] + " inside the plot");
            assertEquals(7.0 * names[i].length(), b.x1() - b.x0(), 1e-9, "as wide as its text");
            for (ReportHtml.Box bar : bars) {
                assertFalse(b.overlaps(bar), names[i] + " over an error bar");
            }
            for (int k = 0; k < px.length; k++) {
                assertFalse(b.overlaps(new ReportHtml.Box(px[k] - 5.5, py[k] - 5.5, px[k] + 5.5, py[k] + 5.5)),
                        names[i] + " over the marker of " + names[k]);
            }
            for (int k = 0; k < i; k++) {
                assertFalse(b.overlaps(l.get(k).box()), names[i] + " over the label of " + names[k]);
            }
        }
        assertTrue(l.stream().anyMatch(ReportHtml.Label::leader), "a crowded label is moved away and joined by a line");
    }

    @Test
    void axesStartAtZeroOrAtARoundTick() {
        assertEquals(List.of(0.0, 30.0), java.util.Arrays.stream(ReportHtml.niceRange(0, 26.9)).boxed().toList());
        assertEquals(List.of(46.0, 48.5), java.util.Arrays.stream(ReportHtml.niceRange(46.43, 48.11)).boxed()
                .map(v -> Math.round(v * 1e9) / 1e9).toList());
        String svg = ReportHtml.plot(report().results().subList(0, 3), "heldout", List.of("baseline"), "size", x -> 10, x -> 10, x -> 10,
                "%.1f");
        assertTrue(svg.contains(">0.0</text>"), "the size axis starts at 0: " + svg);
    }

    @Test
    void stageDescriptionsLeaveDefaultedOptionsOut() {
        StageSpec prune = new StageSpec.Prune("magnitude", "2:4", 0.5, null, List.of(), List.of(), 0, null);
        assertEquals("prune(method=magnitude, pattern=2:4, sparsity=0.5, targets=[], ignore=[], batch=0)", prune.describe());
        assertTrue(prune.options().containsKey("scope") && prune.options().get("scope") == null, "the cache key still holds it");
    }
}
