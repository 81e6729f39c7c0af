package dev.shrink.eval;

import dev.shrink.core.forward.CausalLM;
import dev.shrink.core.forward.Taps;
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

    /** Logits computed at once are bounded to this many floats (64 MB), whatever the vocabulary. */
    private static final int LOGIT_FLOATS = 16 << 20;

    /** Windows run together are bounded to this many rows: more rows per GEMM, bounded activations. */
    private static final int BATCH_ROWS = 2048;

    /**
     * @param ids        the whole token stream (BOS already prepended)
     * @param maxWindows evaluate at most this many windows from the start (≤ 0: all)
     */
    public static PplResult evaluate(CausalLM model, String dataset, int[] ids, int seqlen, int maxWindows, boolean quiet) {
        if (seqlen < 2) {
            throw new IllegalArgumentException("seqlen must be at least 2");
        }
        int available = ids.length / seqlen;
        int windows = maxWindows > 0 ? Math.min(maxWindows, available) : available;
        if (windows == 0) {
            throw new dev.shrink.core.ShrinkException(dataset + ": " + ids.length + " tokens make no window of " + seqlen);
        }
        int V = model.config().vocab();
        double nllSum = 0;
        long count = 0;
        double[] windowNll = new double[windows]; // Σ NLL of each window, then its mean
        long start = System.nanoTime();
        int batch = Math.max(1, Math.min(BATCH_ROWS / seqlen, windows));
        int chunk = Math.max(1, Math.min(LOGIT_FLOATS / V, batch * seqlen));
        try (Progress progress = new Progress("ppl " + dataset, (long) windows * seqlen, "tok", quiet)) {
            for (int w0 = 0; w0 < windows; w0 += batch) {
                int B = Math.min(batch, windows - w0);
                int[] tokens = new int[B * seqlen];
                System.arraycopy(ids, w0 * seqlen, tokens, 0, B * seqlen);
                float[] hidden = model.hidden(tokens, B, seqlen, null, Taps.NONE); // [B·T, C]
                // predictions: row b·T + t predicts tokens[b·T + t + 1] for t < T − 1
                int rows = B * seqlen;
                for (int r0 = 0; r0 < rows; r0 += chunk) {
                    int n = Math.min(chunk, rows - r0);
                    float[] logits = model.logits(hidden, r0, n); // [n, V]
                    int[] targets = new int[n];
                    for (int i = 0; i < n; i++) {
                        int r = r0 + i;
                        targets[i] = (r % seqlen == seqlen - 1) ? -1 : tokens[r + 1];
                    }
                    double[] nll = new double[n];
                    model.decoder().ops().crossEntropy(logits, n, V, masked(targets), nll);
                    for (int i = 0; i < n; i++) {
                        if (targets[i] >= 0) {
                            if (!Double.isFinite(nll[i])) {
                                int b = (r0 + i) / seqlen;
                                throw model.nonFinite(java.util.Arrays.copyOfRange(tokens, b * seqlen, (b + 1) * seqlen),
                                        1, seqlen, dataset + " window " + (w0 + b) + " (perplexity)");
                            }
                            nllSum += nll[i];
                            windowNll[w0 + (r0 + i) / seqlen] += nll[i];
                            count++;
                        }
                    }
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
                model.decoder().ops().name(), windowNll);
    }

    /** The last position of each window predicts nothing; give crossEntropy a valid id there (its NLL is ignored). */
    private static int[] masked(int[] targets) {
        int[] t = targets.clone();
        for (int i = 0; i < t.length; i++) {
            if (t[i] < 0) {
                t[i] = 0;
            }
        }
        return t;
    }
}
