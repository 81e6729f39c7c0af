package dev.shrink.eval;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;

import dev.shrink.calib.EvalText;
import dev.shrink.core.ops.Backends;
import java.util.Arrays;
import org.junit.jupiter.api.Test;

/** The standard error of the mean NLL over windows and the 95% interval on perplexity (pipeline/COMPARE.md). */
class PerplexityUncertaintyTest {
    @Test
    void standardErrorOfKnownValues() {
        // 1, 2, 3, 4: mean 2.5, squared deviations 2.25 + 0.25 + 0.25 + 2.25 = 5, s² = 5/3, se = √(5/3/4)
        assertEquals(Math.sqrt(5.0 / 12), PplResult.standardError(new double[] {1, 2, 3, 4}), 1e-15);
        // equal values have no spread
        assertEquals(0.0, PplResult.standardError(new double[] {3.5, 3.5, 3.5}), 0.0);
        // 2 and 4: s = √2, se = √2/√2 = 1
        assertEquals(1.0, PplResult.standardError(new double[] {2, 4}), 1e-15);
        assertThrows(IllegalArgumentException.class, () -> PplResult.standardError(new double[] {1}));
    }

    @Test
    void intervalIsExpOfMeanPlusMinusTwoSe() {
        double[] w = {4.0, 4.2, 3.9, 4.1, 4.3};
        PplResult r = PplResult.of("t", 11, 5, 9, 100, 50, 10 * (4.0 + 4.2 + 3.9 + 4.1 + 4.3), 1.0, "cpu", w);
        double mean = 4.1, sd = Math.sqrt((0.01 + 0.01 + 0.04 + 0 + 0.04) / 4);
        assertEquals(Math.exp(mean), r.ppl(), 1e-12);
        assertEquals(sd / Math.sqrt(5), r.nllSe(), 1e-12);
        assertEquals(Math.exp(mean - 1.96 * sd / Math.sqrt(5)), r.pplLow(), 1e-12);
        assertEquals(Math.exp(mean + 1.96 * sd / Math.sqrt(5)), r.pplHigh(), 1e-12);
        assertEquals(String.format(java.util.Locale.ROOT, "±%.2f%%", 100 * (Math.exp(1.96 * sd / Math.sqrt(5)) - 1)), r.noise());
        PplResult one = PplResult.of("t", 11, 1, 9, 100, 10, 41, 1.0, "cpu", new double[] {4.1});
        assertNull(one.nllSe(), "one window has no spread to measure");
        assertNull(one.pplLow());
        assertEquals("", one.noise());
    }

    /** Each window evaluated on its own gives the per-window NLLs; their spread computed here in plain Java. */
    @Test
    void perplexityCarriesThePerWindowNllsAndTheirStandardError() {
        int T = 64, n = 5;
        try (LoadedModel m = LoadedModel.open(Golden.model("stories260K-hf"), Backends.select("cpu", 0))) {
            int[] ids = m.tokenStream(EvalText.load("tinystories").text());
            PplResult r = Perplexity.evaluate(m.lm(), "tinystories", ids, T, n, true);
            double[] x = new double[n];
            for (int w = 0; w < n; w++) {
                PplResult one = Perplexity.evaluate(m.lm(), "w", Arrays.copyOfRange(ids, w * T, (w + 1) * T), T, 1, true);
                x[w] = one.nllSum() / (T - 1);
                assertEquals(x[w], r.windowNll().get(w), 1e-5, "window " + w);
            }
            double mean = 0;
            for (double v : x) {
                mean += v / n;
            }
            double var = 0;
            for (double v : x) {
                var += (v - mean) * (v - mean) / (n - 1);
            }
            double se = Math.sqrt(var / n);
            assertEquals(mean, r.nllSum() / r.predictions(), 1e-5, "the mean over windows is the mean over predictions");
            assertEquals(se, r.nllSe(), 1e-5);
            assertEquals(Math.exp(r.nllMean() - 1.96 * r.nllSe()), r.pplLow(), 1e-9);
            assertEquals(Math.exp(r.nllMean() + 1.96 * r.nllSe()), r.pplHigh(), 1e-9);
            assertEquals(n, r.windowNll().size());
        }
    }
}
