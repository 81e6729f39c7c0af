package dev.shrink.distill;

import dev.shrink.calib.PythonRandom;
import dev.shrink.core.ShrinkException;

/**
 * Random training windows of a token stream, drawn as GPTQ draws its calibration windows: window k
 * starts at the k-th {@code random.randint(0, len(stream) − seqlen − 1)} after
 * {@code random.seed(seed)} (so with seed 0 the first windows are shared/golden's calibration
 * windows). The generator's whole state is (seed, windows drawn): a checkpoint records the count,
 * and {@link #skip} brings a fresh generator back to it exactly.
 */
public final class TrainWindows {
    private final int[] stream;
    private final int seqlen;
    private final long seed;
    private final PythonRandom rng;
    private long drawn;

    /**
     * @throws ShrinkException if the stream has no more than seqlen tokens
     */
    public TrainWindows(int[] stream, int seqlen, long seed) {
        if (seqlen < 2) {
            throw new ShrinkException("--seqlen must be at least 2, got " + seqlen);
        }
        if (stream.length <= seqlen) {
            throw new ShrinkException("the training text has " + stream.length + " tokens, fewer than one window of "
                    + seqlen + " + 1");
        }
        this.stream = stream;
        this.seqlen = seqlen;
        this.seed = seed;
        this.rng = new PythonRandom(seed);
    }

    public int seqlen() {
        return seqlen;
    }

    public long seed() {
        return seed;
    }

    /** Tokens in the stream. */
    public int tokens() {
        return stream.length;
    }

    /** Windows drawn so far: the data position. */
    public long position() {
        return drawn;
    }

    /** Draws and discards {@code n} windows. */
    public void skip(long n) {
        for (long i = 0; i < n; i++) {
            draw();
        }
    }

    /** The next {@code count} windows, back to back: [count · seqlen]. */
    public int[] next(int count) {
        int[] out = new int[count * seqlen];
        for (int i = 0; i < count; i++) {
            System.arraycopy(stream, draw(), out, i * seqlen, seqlen);
        }
        return out;
    }

    private int draw() {
        drawn++;
        return (int) rng.randint(0, stream.length - seqlen - 1);
    }
}
