package dev.shrink.eval;

import java.util.List;
import java.util.Locale;

/**
 * One perplexity measurement, with the protocol facts that make it comparable and its uncertainty.
 *
 * <p>Uncertainty (pipeline/COMPARE.md, "Measures"): every window has the same number of predictions
 * (seqlen − 1), so the mean NLL over all predictions is the mean of the windows' mean NLLs x_w.
 * {@code nllSe} is the standard error of that mean over windows, s / √n with
 * s² = Σ (x_w − x̄)² / (n − 1); the 95% interval on perplexity is exp(x̄ ± 1.96 · se). Windows are
 * treated as independent draws (they are disjoint stretches of the text).
 *
 * @param dataset          preset or file name
 * @param seqlen           window length
 * @param windows          windows evaluated
 * @param windowsAvailable windows the text holds
 * @param tokens           tokens of the whole text, BOS included
 * @param predictions      predicted positions counted (windows × (seqlen − 1))
 * @param nllSum           Σ −log p, nats
 * @param ppl              exp(nllSum / predictions)
 * @param nllSe            standard error of the mean NLL (nats per prediction) over windows; null when
 *                         unknown (one window, or a result written before Shrink measured it)
 * @param pplLow           exp(mean NLL − 1.96 · nllSe), or null with nllSe
 * @param pplHigh          exp(mean NLL + 1.96 · nllSe), or null with nllSe
 * @param seconds          wall time of the forward passes
 * @param backend          the Ops backend that ran
 * @param windowNll        each window's mean NLL (nats per prediction), in text order; null when unknown.
 *                         Two results on the same windows can be compared pairwise (the gate does)
 */
public record PplResult(String dataset, int seqlen, int windows, int windowsAvailable, long tokens,
                        long predictions, double nllSum, double ppl, Double nllSe, Double pplLow, Double pplHigh,
                        double seconds, String backend, List<Double> windowNll) {

    /** z of a two-sided 95% normal interval. */
    public static final double Z95 = 1.96;

    public PplResult {
        windowNll = windowNll == null ? null : List.copyOf(windowNll);
    }

    /** A result without its uncertainty (no per-window NLLs). */
    public PplResult(String dataset, int seqlen, int windows, int windowsAvailable, long tokens,
                     long predictions, double nllSum, double ppl, double seconds, String backend) {
        this(dataset, seqlen, windows, windowsAvailable, tokens, predictions, nllSum, ppl, null, null, null, seconds, backend,
                null);
    }

    /**
     * A result with its uncertainty from each window's mean NLL: nllSe = {@link #standardError}, the
     * interval exp(nllSum / predictions ± 1.96 · nllSe).
     */
    public static PplResult of(String dataset, int seqlen, int windows, int windowsAvailable, long tokens,
                               long predictions, double nllSum, double seconds, String backend, double[] windowNll) {
        double mean = nllSum / predictions;
        Double se = windowNll.length < 2 ? null : standardError(windowNll);
        return new PplResult(dataset, seqlen, windows, windowsAvailable, tokens, predictions, nllSum, Math.exp(mean), se,
                se == null ? null : Math.exp(mean - Z95 * se), se == null ? null : Math.exp(mean + Z95 * se), seconds,
                backend, java.util.Arrays.stream(windowNll).boxed().toList());
    }

    /**
     * The standard error of the mean of {@code x}: the sample standard deviation (n − 1 in the
     * denominator) over √n. Also the paired standard error of a difference, given the differences.
     *
     * @throws IllegalArgumentException with fewer than two values
     */
    public static double standardError(double[] x) {
        int n = x.length;
        if (n < 2) {
            throw new IllegalArgumentException("a standard error needs at least 2 values, got " + n);
        }
        double mean = 0;
        for (double v : x) {
            mean += v;
        }
        mean /= n;
        double ss = 0;
        for (double v : x) {
            ss += (v - mean) * (v - mean);
        }
        return Math.sqrt(ss / (n - 1) / n);
    }

    /** Mean NLL per prediction, nats: log(ppl). */
    public double nllMean() {
        return nllSum / predictions;
    }

    public double tokensPerSecond() {
        return windows * (double) seqlen / seconds;
    }

    /** "±0.42%": the half-width of the 95% interval relative to ppl (exp(1.96 · se) − 1), or "" when unknown. */
    public String noise() {
        return nllSe == null ? "" : String.format(Locale.ROOT, "±%.2f%%", 100 * Math.expm1(Z95 * nllSe));
    }

    /** One line for people: the number, its 95% interval and everything needed to compare it. */
    public String summary() {
        String ci = nllSe == null ? "" : String.format(Locale.ROOT, " (95%% %.4f–%.4f, %s; se of mean NLL %.5f)", pplLow, pplHigh,
                noise(), nllSe);
        return String.format(Locale.ROOT,
                "%s  ppl %.4f%s  (seqlen %d, %d of %d windows, %d predictions, %d tokens in text; %.1f s, %.0f tok/s, %s)",
                dataset, ppl, ci, seqlen, windows, windowsAvailable, predictions, tokens, seconds, tokensPerSecond(), backend);
    }
}
