package dev.shrink.eval;

import dev.shrink.core.forward.CausalLM;
import dev.shrink.core.forward.Taps;
import dev.shrink.core.util.Progress;

/**
 * Perplexity by the protocol of shared/golden/README.md: token ids with BOS once, non-overlapping
 * windows of {@code seqlen} (the tail shorter than a window dropped), each window an independent
 * forward, PPL = exp(Σ −log p(t+1 | ≤ t) over positions 0..seqlen−2 of every window / count).
 */
public final class Perplexity {
    private Perplexity() {
    }

    /** Logit rows computed at once: bounds memory to ROWS × V floats for large vocabularies. */
    private static final int ROWS = 256;

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
        long start = System.nanoTime();
        try (Progress progress = new Progress("ppl " + dataset, (long) windows * seqlen, "tok", quiet)) {
            int[] window = new int[seqlen];
            for (int w = 0; w < windows; w++) {
                System.arraycopy(ids, w * seqlen, window, 0, seqlen);
                float[] hidden = model.hidden(window, 1, seqlen, null, Taps.NONE); // [T, C]
                for (int r0 = 0; r0 < seqlen - 1; r0 += ROWS) {
                    int rows = Math.min(ROWS, seqlen - 1 - r0);
                    float[] logits = model.logits(hidden, r0, rows); // [rows, V]
                    int[] targets = new int[rows];
                    System.arraycopy(window, r0 + 1, targets, 0, rows);
                    double[] nll = new double[rows];
                    model.decoder().ops().crossEntropy(logits, rows, V, targets, nll);
                    for (double x : nll) {
                        nllSum += x;
                    }
                    count += rows;
                }
                progress.step(seqlen);
            }
        }
        double seconds = (System.nanoTime() - start) / 1e9;
        return new PplResult(dataset, seqlen, windows, available, ids.length, count, nllSum,
                Math.exp(nllSum / count), seconds, model.decoder().ops().name());
    }
}
