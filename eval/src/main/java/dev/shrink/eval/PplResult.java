package dev.shrink.eval;

import java.util.Locale;

/**
 * One perplexity measurement, with the protocol facts that make it comparable.
 *
 * @param dataset          preset or file name
 * @param seqlen           window length
 * @param windows          windows evaluated
 * @param windowsAvailable windows the text holds
 * @param tokens           tokens of the whole text, BOS included
 * @param predictions      predicted positions counted (windows × (seqlen − 1))
 * @param nllSum           Σ −log p, nats
 * @param ppl              exp(nllSum / predictions)
 * @param seconds          wall time of the forward passes
 * @param backend          the Ops backend that ran
 */
public record PplResult(String dataset, int seqlen, int windows, int windowsAvailable, long tokens,
                        long predictions, double nllSum, double ppl, double seconds, String backend) {

    public double tokensPerSecond() {
        return windows * (double) seqlen / seconds;
    }

    /** One line for people: the number and everything needed to compare it. */
    public String summary() {
        return String.format(Locale.ROOT,
                "%s  ppl %.4f  (seqlen %d, %d of %d windows, %d predictions, %d tokens in text; %.1f s, %.0f tok/s, %s)",
                dataset, ppl, seqlen, windows, windowsAvailable, predictions, tokens, seconds, tokensPerSecond(), backend);
    }
}
