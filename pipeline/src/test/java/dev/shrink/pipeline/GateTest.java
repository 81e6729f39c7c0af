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
                "gptq4 heldout perplexity 43.65 > 43.16 +1% (old)",
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
        assertEquals(List.of("a heldout perplexity 10.05 > 10.00 +0.01 (old)"), o.failures(), "an absolute limit");
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
