package dev.shrink.calib;

import dev.shrink.core.ShrinkException;
import dev.shrink.core.model.Tokenizer;
import java.util.Arrays;
import java.util.List;

/**
 * Calibration token windows, drawn as the reference implementations draw them.
 *
 * <ul>
 *   <li>{@link #stream} + {@link #randomWindows}: GPTQ style. The documents joined with "\n\n",
 *       tokenized once, BOS prepended once; windows at offsets from Python's
 *       {@code random.seed(seed); random.randint(0, len(stream) - seqlen - 1)}, one draw per window.
 *       This reproduces shared/golden's calibration windows (and so the GPTQ references) exactly.</li>
 *   <li>{@link #blocks}: AWQ style. Each document tokenized on its own (no BOS), empty ones
 *       skipped, all concatenated and cut into consecutive blocks.</li>
 * </ul>
 */
public final class CalibWindows {
    /** What {@link #stream} puts between documents. */
    public static final String SEPARATOR = "\n\n";

    private CalibWindows() {
    }

    /**
     * The token stream of {@code docs}: joined with "\n\n", tokenized once (no special tokens),
     * {@code bos} prepended once when not null.
     */
    public static int[] stream(List<String> docs, Tokenizer tok, Integer bos) {
        int[] ids = tok.encode(String.join(SEPARATOR, docs));
        if (bos == null) {
            return ids;
        }
        int[] out = new int[ids.length + 1];
        out[0] = bos;
        System.arraycopy(ids, 0, out, 1, ids.length);
        return out;
    }

    /**
     * {@code n} windows of {@code seqlen} tokens of {@code stream}; window k starts at the k-th
     * draw of {@code random.randint(0, len(stream) - seqlen - 1)} after {@code random.seed(seed)}.
     * Windows may overlap and repeat, as in GPTQ.
     *
     * @throws ShrinkException if the stream has no more than {@code seqlen} tokens
     */
    public static int[][] randomWindows(int[] stream, int n, int seqlen, long seed) {
        checkShape(n, seqlen);
        if (stream.length <= seqlen) {
            throw new ShrinkException("calibration text has " + stream.length
                    + " tokens, fewer than one window of " + seqlen + " + 1");
        }
        PythonRandom rng = new PythonRandom(seed);
        int[][] out = new int[n][];
        for (int k = 0; k < n; k++) {
            int i = (int) rng.randint(0, stream.length - seqlen - 1);
            out[k] = Arrays.copyOfRange(stream, i, i + seqlen);
        }
        return out;
    }

    /**
     * AWQ-style blocks: each document tokenized separately (no BOS), documents with no tokens
     * skipped, the tokens concatenated and cut into consecutive blocks of {@code seqlen}; the first
     * {@code n}. Tokenizing stops once enough tokens are collected (the result is the same).
     *
     * @throws ShrinkException if the documents give fewer than {@code n} whole blocks
     */
    public static int[][] blocks(List<String> docs, Tokenizer tok, int n, int seqlen) {
        checkShape(n, seqlen);
        long needed = (long) n * seqlen;
        if (needed > Integer.MAX_VALUE - 8) {
            throw new ShrinkException(n + " blocks of " + seqlen + " tokens are too many to hold at once");
        }
        int[] all = new int[(int) needed];
        int filled = 0;
        for (String doc : docs) {
            if (filled == all.length) {
                break;
            }
            if (doc.isEmpty()) {
                continue;
            }
            int[] ids = tok.encode(doc);
            int take = Math.min(ids.length, all.length - filled);
            System.arraycopy(ids, 0, all, filled, take);
            filled += take;
        }
        if (filled < all.length) {
            throw new ShrinkException("calibration text gives only " + (filled / seqlen) + " blocks of "
                    + seqlen + " tokens (" + filled + " tokens); asked for " + n);
        }
        int[][] out = new int[n][];
        for (int k = 0; k < n; k++) {
            out[k] = Arrays.copyOfRange(all, k * seqlen, (k + 1) * seqlen);
        }
        return out;
    }

    private static void checkShape(int n, int seqlen) {
        if (n < 1) {
            throw new ShrinkException("the number of calibration samples must be positive, not " + n);
        }
        if (seqlen < 1) {
            throw new ShrinkException("the calibration sequence length must be positive, not " + seqlen);
        }
    }
}
