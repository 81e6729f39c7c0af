package dev.shrink.eval;

import dev.shrink.core.forward.CausalLM;
import dev.shrink.core.util.Progress;

/**
 * Perplexity by the protocol of shared/golden/README.md: token ids with BOS once, non-overlapping
 * windows of {@code seqlen} (the tail shorter than a window dropped), each window an independent
 * forward, PPL = exp(Σ −log p(t+1 | ≤ t) over positions 0..seqlen−2 of every window / count).
 * Each window's mean NLL is kept too: the standard error of the mean over windows and the 95%
 * interval on PPL come from them ({@link PplResult#of}).
 */
public final class Perplexity {
    private Perplexity() {
    }

    /** {@link #evaluate(WindowScorer, String, int[], int, int, boolean)} of a model on the Java heap. */
    public static PplResult evaluate(CausalLM model, String dataset, int[] ids, int seqlen, int maxWindows, boolean quiet) {
        return evaluate(WindowScorer.host(model), dataset, ids, seqlen, maxWindows, quiet);
    }

    /**
     * @param ids        the whole token stream (BOS already prepended)
     * @param maxWindows evaluate at most this many windows from the start (≤ 0: all)
     */
    public static PplResult evaluate(WindowScorer model, String dataset, int[] ids, int seqlen, int maxWindows,
                                     boolean quiet) {
        if (seqlen < 2) {
            throw new IllegalArgumentException("seqlen must be at least 2");
        }
        int available = ids.length / seqlen;
        int windows = maxWindows > 0 ? Math.min(maxWindows, available) : available;
        if (windows == 0) {
            throw new dev.shrink.core.ShrinkException(dataset + ": " + ids.length + " tokens make no window of " + seqlen);
        }
        double nllSum = 0;
        long count = 0;
        double[] windowNll = new double[windows]; // Σ NLL of each window, then its mean
        long start = System.nanoTime();
        int batch = Math.max(1, Math.min(model.batchRows() / seqlen, windows));
        try (Progress progress = new Progress("ppl " + dataset, (long) windows * seqlen, "tok", quiet)) {
            for (int w0 = 0; w0 < windows; w0 += batch) {
                int B = Math.min(batch, windows - w0);
                int[] tokens = new int[B * seqlen];
                System.arraycopy(ids, w0 * seqlen, tokens, 0, B * seqlen);
                double[] nll = model.nll(tokens, B, seqlen);
                // row b·T + t predicts tokens[b·T + t + 1] for t < T − 1
                for (int r = 0; r < B * seqlen; r++) {
                    if (r % seqlen == seqlen - 1) {
                        continue;
                    }
                    if (!Double.isFinite(nll[r])) {
                        int b = r / seqlen;
                        throw model.nonFinite(java.util.Arrays.copyOfRange(tokens, b * seqlen, (b + 1) * seqlen), 1,
                                seqlen, dataset + " window " + (w0 + b) + " (perplexity)");
                    }
                    nllSum += nll[r];
                    windowNll[w0 + r / seqlen] += nll[r];
                    count++;
                }
                progress.step((long) B * seqlen);
            }
        }
        double seconds = (System.nanoTime() - start) / 1e9;
        if (count != (long) windows * (seqlen - 1)) {
            throw new IllegalStateException("counted " + count + " predictions");
        }
        for (int w = 0; w < windows; w++) {
            windowNll[w] /= seqlen - 1;
        }
        return PplResult.of(dataset, seqlen, windows, available, ids.length, count, nllSum, seconds,
                model.backend(), windowNll);
    }
}
