package dev.shrink.eval;

import dev.shrink.core.ShrinkException;
import dev.shrink.core.forward.CausalLM;
import dev.shrink.core.forward.NonFinite;
import dev.shrink.core.forward.Taps;
import dev.shrink.core.util.Progress;

/**
 * KL divergence of a candidate model from a reference (the uncompressed baseline) on held-out
 * tokens: for every position t of the first {@code windows} non-overlapping windows of the token
 * stream (the perplexity protocol's windows), with P = softmax(reference logits) and Q =
 * softmax(candidate logits),
 * <pre>  KL(P ‖ Q)_t = Σ_v P_v · (log P_v − log Q_v)</pre>
 * and the result is the mean over all positions (nats per token). Log-softmax and the sums are
 * in double, from the float32 logits. Dimension letters: T window length, V vocabulary.
 *
 * <p>The reference's logits of the windows are computed once ({@link #reference}) and held in
 * memory (windows · T · V floats: 64 MB for 4 windows of 512 with V = 8192), so that every
 * candidate is compared without loading the baseline again. A model compared with its own
 * reference gives exactly 0.
 */
public final class KlDivergence {
    private KlDivergence() {
    }

    /** Logit rows computed at once are bounded to this many floats (64 MB). */
    private static final int LOGIT_FLOATS = 16 << 20;

    /**
     * The reference side: the windows' tokens and the reference model's logits.
     *
     * @param tokens windows · T token ids, window-major
     * @param logits per window, its [T, V] logits
     */
    public record Reference(String dataset, int seqlen, int windows, int vocab, int[] tokens, float[][] logits) {
    }

    /**
     * Runs the reference model over the first {@code windows} windows of {@code seqlen} tokens of
     * {@code ids} (the token stream, BOS already prepended).
     */
    public static Reference reference(CausalLM ref, String dataset, int[] ids, int seqlen, int windows) {
        if (seqlen < 1 || windows < 1) {
            throw new IllegalArgumentException("seqlen and windows must be positive");
        }
        int available = ids.length / seqlen;
        if (available < windows) {
            throw new ShrinkException(dataset + ": " + ids.length + " tokens hold " + available + " windows of " + seqlen
                    + ", KL asks for " + windows);
        }
        int[] tokens = java.util.Arrays.copyOf(ids, windows * seqlen);
        float[][] logits = new float[windows][];
        for (int w = 0; w < windows; w++) {
            logits[w] = windowLogits(ref, tokens, w, seqlen);
        }
        return new Reference(dataset, seqlen, windows, ref.config().vocab(), tokens, logits);
    }

    /** Mean KL(reference ‖ candidate) per token over the reference's windows. */
    public static KlResult evaluate(Reference ref, CausalLM candidate, boolean quiet) {
        int T = ref.seqlen(), V = ref.vocab();
        if (candidate.config().vocab() != V) {
            throw new ShrinkException("KL: the candidate's vocabulary (" + candidate.config().vocab()
                    + ") differs from the baseline's (" + V + ")");
        }
        long start = System.nanoTime();
        double sum = 0, max = 0;
        long positions = 0;
        double[] kl = new double[T];
        try (Progress progress = new Progress("kl " + ref.dataset(), (long) ref.windows() * T, "tok", quiet)) {
            for (int w = 0; w < ref.windows(); w++) {
                float[] q = windowLogits(candidate, ref.tokens(), w, T); // [T, V]
                rows(ref.logits()[w], q, T, V, kl);
                for (int t = 0; t < T; t++) {
                    sum += kl[t];
                    max = Math.max(max, kl[t]);
                }
                positions += T;
                progress.step(T);
            }
        }
        return new KlResult(ref.dataset(), T, ref.windows(), positions, sum / positions, max,
                (System.nanoTime() - start) / 1e9, candidate.decoder().ops().name());
    }

    /**
     * KL(P ‖ Q) of each row: P = softmax(p), Q = softmax(q); p, q: [rows, V] logits; out: [rows].
     * Computed in double with each row's max subtracted; never negative (rounding is clamped at 0).
     */
    public static void rows(float[] p, float[] q, int rows, int V, double[] out) {
        for (int r = 0; r < rows; r++) {
            int off = r * V;
            double lseP = logSumExp(p, off, V), lseQ = logSumExp(q, off, V);
            double kl = 0;
            for (int v = 0; v < V; v++) {
                double lp = p[off + v] - lseP;
                double lq = q[off + v] - lseQ;
                kl += Math.exp(lp) * (lp - lq);
            }
            out[r] = Math.max(0, kl);
        }
    }

    /** log Σ_v exp(x[off + v]), with the max subtracted. */
    static double logSumExp(float[] x, int off, int V) {
        double max = Double.NEGATIVE_INFINITY;
        for (int v = 0; v < V; v++) {
            max = Math.max(max, x[off + v]);
        }
        double s = 0;
        for (int v = 0; v < V; v++) {
            s += Math.exp(x[off + v] - max);
        }
        return max + Math.log(s);
    }

    /** [T, V] logits of window w of tokens; NaN or infinite logits are an error naming the op that made them. */
    private static float[] windowLogits(CausalLM lm, int[] tokens, int w, int T) {
        int V = lm.config().vocab();
        int[] window = java.util.Arrays.copyOfRange(tokens, w * T, (w + 1) * T);
        float[] hidden = lm.hidden(window, 1, T, null, Taps.NONE); // [T, C]
        float[] out = new float[Math.multiplyExact(T, V)];
        int chunk = Math.max(1, Math.min(T, LOGIT_FLOATS / V));
        for (int r0 = 0; r0 < T; r0 += chunk) {
            int n = Math.min(chunk, T - r0);
            System.arraycopy(lm.logits(hidden, r0, n), 0, out, r0 * V, n * V);
        }
        if (!NonFinite.all(out)) {
            throw lm.nonFinite(window, 1, T, "window " + w + " (KL divergence)");
        }
        return out;
    }
}
