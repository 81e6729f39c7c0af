package dev.shrink.pipeline;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.shrink.core.ShrinkException;
import dev.shrink.pipeline.Gate.Limit;
import dev.shrink.pipeline.Gate.Limits;
import java.util.List;
import org.junit.jupiter.api.Test;

/** The regression gate on hand-written reports: one line per failing metric, notes for what is not compared. */
class GateTest {
    static final ObjectMapper JSON = new ObjectMapper();

    /** A result as report.json writes it. */
    static String row(String name, double ppl, int windows, long bytes, double decode, double kl) {
        return String.format(java.util.Locale.ROOT, """
                {"name": "%s", "error": null, "measures": {
                  "size": {"weight_bytes": %d},
                  "perplexity": [{"dataset": "heldout", "seqlen": 512, "windows": %d, "ppl": %s}],
                  "kl": {"dataset": "heldout", "mean": %s},
                  "speed": {"decode_tokens_per_second": %s}}}""", name, bytes, windows, ppl, kl, decode);
    }

    static JsonNode report(String... rows) throws Exception {
        return JSON.readTree("{\"results\": [" + String.join(",", rows) + "]}");
    }

    static final Limits ALL = new Limits(Limit.parse("p", "1%"), Limit.parse("s", "5%"), Limit.parse("v", "20%"),
            Limit.parse("k", "0.001"));

    @Test
    void passesWithinTheLimits() throws Exception {
        JsonNode old = report(row("gptq4", 43.16, 20, 12_000_000, 80, 0.0100));
        JsonNode now = report(row("gptq4", 43.50, 20, 12_500_000, 65, 0.0105)); // +0.8%, +4.2%, -18.8%, +0.0005
        Gate.Outcome o = Gate.check(now, old, ALL);
        assertTrue(o.passed(), o.failures().toString());
        assertEquals(4, o.compared());
    }

    @Test
    void oneLinePerFailingMetric() throws Exception {
        JsonNode old = report(row("gptq4", 43.16, 20, 12_000_000, 80, 0.0100), row("rtn4", 47.0, 20, 11_000_000, 80, 0.02));
        JsonNode now = report(row("gptq4", 43.65, 20, 13_000_000, 60, 0.0120), row("rtn4", 47.1, 20, 11_000_000, 80, 0.02));
        Gate.Outcome o = Gate.check(now, old, ALL);
        assertEquals(List.of(
                "gptq4 heldout perplexity 43.65 > 43.16 +1% (old): exceeds the 1% threshold (threshold alone: the old report "
                        + "has no standard error)",
                "gptq4 size 12.40 MiB > 11.44 MiB +5% (old)",
                "gptq4 decode speed 60.0 tok/s < 80.0 tok/s -20% (old)",
                "gptq4 heldout KL 0.01200 > 0.01000 +0.001 (old)"), o.failures());
        assertFalse(o.passed());
        assertEquals(8, o.compared());
    }

    @Test
    void onlyTheGivenLimitsAreChecked() throws Exception {
        JsonNode old = report(row("a", 10, 20, 100, 80, 0.01));
        JsonNode now = report(row("a", 10.05, 20, 1000, 1, 1));
        Gate.Outcome o = Gate.check(now, old, new Limits(Limit.parse("p", "1%"), null, null, null));
        assertTrue(o.passed(), "size, speed and KL are not limited here");
        assertEquals(1, o.compared());
        o = Gate.check(now, old, new Limits(Limit.parse("p", "0.01"), null, null, null));
        assertEquals(List.of("a heldout perplexity 10.05 > 10.00 +0.01 (old): exceeds the 0.01 threshold (threshold alone: "
                + "the old report has no standard error)"), o.failures(), "an absolute limit");
    }

    @Test
    void newMissingFailedAndOtherProtocolResultsAreNotedNotFailed() throws Exception {
        JsonNode old = report(row("kept", 10, 20, 100, 80, 0.01), row("gone", 10, 20, 100, 80, 0.01),
                row("longer", 10, 10, 100, 80, 0.01));
        JsonNode now = report(row("kept", 10, 20, 100, 80, 0.01), row("new", 99, 20, 100, 80, 0.01),
                row("longer", 20, 20, 100, 80, 0.01),
                "{\"name\": \"broken\", \"error\": \"the prune stage needs the prune module\", \"measures\": null}");
        Gate.Outcome o = Gate.check(now, old, new Limits(Limit.parse("p", "1%"), null, null, null));
        assertTrue(o.passed(), o.failures().toString());
        String notes = String.join("\n", o.notes());
        assertTrue(notes.contains("new: not in the old report"), notes);
        assertTrue(notes.contains("gone: in the old report only"), notes);
        assertTrue(notes.contains("longer heldout: not compared: seqlen 512 × 20 windows now, 512 × 10 in the old report"), notes);
        assertTrue(notes.contains("broken: failed in this run"), notes);
    }

    /** A one-set result with its standard error and, when given, the per-window NLLs (ppl = exp(their mean)). */
    static String rowWithNoise(String name, double ppl, double se, double... windowNll) {
        return rowWithNoise(name, windowNll.length == 0 ? 20 : windowNll.length, ppl, se, windowNll);
    }

    static String rowWithNoise(String name, int windows, double ppl, double se, double... windowNll) {
        String w = windowNll.length == 0 ? "" : ", \"window_nll\": " + java.util.Arrays.toString(windowNll);
        return String.format(java.util.Locale.ROOT, """
                {"name": "%s", "error": null, "measures": {"perplexity": [{"dataset": "heldout", "seqlen": 512,
                  "windows": %d, "tokens": 9999, "ppl": %s, "nll_se": %s%s}]}}""", name, windows, ppl, se, w);
    }

    static String band(double se) {
        return String.format(java.util.Locale.ROOT, "±%.2f%%", 100 * (Math.exp(1.96 * se) - 1));
    }

    static final Limits PPL = new Limits(Limit.parse("p", "1%"), null, null, null);

    @Test
    void overTheThresholdButWithinTheNoisePassesWithANote() throws Exception {
        // +1.13%: over 1%, but the combined se √(0.02² + 0.02²) makes the 95% band ±5.7%
        Gate.Outcome o = Gate.check(report(rowWithNoise("g", 43.65, 0.02)), report(rowWithNoise("g", 43.16, 0.02)), PPL);
        assertTrue(o.passed(), o.failures().toString());
        assertEquals(List.of("g heldout perplexity 43.65 > 43.16 +1% (old) but within noise (" + band(Math.sqrt(2) * 0.02)
                + ", independent se's combined), not failed"), o.notes());
        assertEquals(1, o.compared());
    }

    @Test
    void overTheThresholdAndTheNoiseFails() throws Exception {
        // +1.13% = 0.0113 nats; the band is 1.96 × √2 × 0.002 = 0.0055 nats
        Gate.Outcome o = Gate.check(report(rowWithNoise("g", 43.65, 0.002)), report(rowWithNoise("g", 43.16, 0.002)), PPL);
        assertEquals(List.of("g heldout perplexity 43.65 > 43.16 +1% (old): exceeds the 1% threshold and the noise ("
                + band(Math.sqrt(2) * 0.002) + ", independent se's combined)"), o.failures());
        // within the threshold nothing is said, whatever the noise
        o = Gate.check(report(rowWithNoise("g", 43.50, 0.0)), report(rowWithNoise("g", 43.16, 0.0)), PPL);
        assertTrue(o.passed() && o.notes().isEmpty(), o.toString());
    }

    @Test
    void sameWindowsArePairedWhichSeesAShiftTheWindowsSpreadWouldHide() throws Exception {
        double[] old = {3.0, 3.5, 4.0, 3.2};
        double[] now = {3.05, 3.56, 4.04, 3.25}; // every window worse by 0.04..0.06: +5.1%
        double mo = java.util.Arrays.stream(old).average().orElseThrow(), mn = java.util.Arrays.stream(now).average().orElseThrow();
        double[] d = new double[4];
        for (int i = 0; i < 4; i++) {
            d[i] = now[i] - old[i];
        }
        double md = (d[0] + d[1] + d[2] + d[3]) / 4, ss = 0;
        for (double v : d) {
            ss += (v - md) * (v - md);
        }
        double pairedSe = Math.sqrt(ss / 3 / 4);
        // each result's own se (the spread of its windows, ~0.22 nats) would put a 5% rise well inside the noise
        Gate.Outcome o = Gate.check(report(rowWithNoise("g", Math.exp(mn), 0.22, now)), report(rowWithNoise("g", Math.exp(mo), 0.22, old)),
                PPL);
        assertEquals(1, o.failures().size(), o.toString());
        assertTrue(o.failures().get(0).endsWith("exceeds the 1% threshold and the noise (" + band(pairedSe) + ", paired over 4 windows)"),
                o.failures().toString());
        // without the old windows' NLLs the se's are combined as independent, and the rise is within their noise
        o = Gate.check(report(rowWithNoise("g", Math.exp(mn), 0.22, now)), report(rowWithNoise("g", 4, Math.exp(mo), 0.22)), PPL);
        assertTrue(o.passed(), o.toString());
        assertTrue(o.notes().get(0).contains("independent se's combined"), o.notes().toString());
    }

    @Test
    void anOldReportWithoutStandardErrorsFallsBackToTheThreshold() throws Exception {
        Gate.Outcome o = Gate.check(report(rowWithNoise("g", 43.65, 0.02)), report(row("g", 43.16, 20, 1, 1, 0)), PPL);
        assertEquals(List.of("g heldout perplexity 43.65 > 43.16 +1% (old): exceeds the 1% threshold (threshold alone: the old report "
                + "has no standard error)"), o.failures());
    }

    @Test
    void limitsParse() {
        assertEquals(new Limit(1, true), Limit.parse("--max-ppl-increase", "1%"));
        assertEquals(new Limit(0.5, true), Limit.parse("--max-ppl-increase", " 0.5 %"));
        assertEquals(new Limit(0.02, false), Limit.parse("--max-kl-increase", "0.02"));
        assertTrue(assertThrows(ShrinkException.class, () -> Limit.parse("--max-ppl-increase", "one%")).getMessage()
                .contains("--max-ppl-increase must be a percentage like 1% or a number, got 'one%'"));
        assertTrue(assertThrows(ShrinkException.class, () -> Limit.parse("--max-size-increase", "-5%")).getMessage()
                .contains("--max-size-increase must be ≥ 0"));
    }
}
