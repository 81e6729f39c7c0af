package dev.shrink.prune;

import dev.shrink.core.sparse.SparsityPattern;
import java.util.Arrays;
import java.util.List;

/**
 * Pruning masks as pure functions of a score array: the weights with the lowest scores are pruned.
 * Magnitude pruning scores |W|; Wanda scores |W_ij| · ‖X_j‖₂ ({@link Wanda}). A mask is a
 * {@code boolean[]} of the matrix's size, {@code true} where the weight is set to zero.
 *
 * <p>Dimensions: W, scores: [N = out, K = in], row-major. Scores must be finite and ≥ 0.
 *
 * <p>Every selection is exact and deterministic: k lowest means exactly k, and ties are broken by
 * position the same way everywhere: of equal scores, the one that comes first (lower index; for a
 * global selection, the earlier matrix) is kept and the later one pruned. That is what
 * {@code torch.topk(score, n, largest=True)} keeps, the reference magnitude 2:4 pruning behind
 * shared/golden's "pruned 2:4" perplexity; the fixture has ~10,000 groups of 4 with a tie at the
 * keep/prune boundary, and the other order moves that perplexity by 0.2 %.
 */
public final class Masks {
    private Masks() {
    }

    /** How many of {@code total} weights a ratio prunes: floor(ratio · total), as the references' {@code int(...)}. */
    public static long count(double ratio, long total) {
        return (long) Math.floor(ratio * total);
    }

    /** Magnitude scores: |W|, W: [N, K] → [N, K]. */
    public static float[] magnitude(float[] W) {
        float[] s = new float[W.length];
        for (int i = 0; i < W.length; i++) {
            s[i] = Math.abs(W[i]);
        }
        return s;
    }

    /**
     * The mask of {@code pattern} over scores: [N, K]. Unstructured: the
     * {@code count(ratio, N·K)} lowest of the matrix ({@link Scope#LAYER}) or {@code count(ratio, K)}
     * lowest of every row ({@link Scope#ROW}); N:M: in every group of m consecutive inputs of a row,
     * the m − n lowest (scope ignored: the group is the scope). Global scope spans matrices: use
     * {@link #lowestK}.
     */
    public static boolean[] mask(float[] scores, int N, int K, SparsityPattern pattern, Scope scope) {
        if (scope == null && pattern instanceof SparsityPattern.Unstructured) {
            throw new IllegalArgumentException("unstructured sparsity needs a scope (layer or row)");
        }
        return switch (pattern) {
            case SparsityPattern.NofM nm -> lowestPerGroup(scores, N, K, nm.m(), nm.prunedPerGroup());
            case SparsityPattern.Unstructured u -> switch (scope) {
                case LAYER -> lowestInMatrix(scores, count(u.ratio(), (long) N * K));
                case ROW -> lowestPerRow(scores, N, K, (int) count(u.ratio(), K));
                case GLOBAL -> throw new IllegalArgumentException("a global mask spans several matrices: use lowestK");
            };
        };
    }

    /** The k lowest scores of the whole matrix. */
    public static boolean[] lowestInMatrix(float[] scores, long k) {
        Threshold t = lowestK(List.of(scores), k);
        return new Marker(t).mark(scores);
    }

    /**
     * The {@code k} lowest scores of every row of scores: [N, K] (Wanda's per-output comparison group).
     * Sorts each row's (score, index) pairs: a float ≥ 0 orders as its bit pattern, so
     * {@code bits << 32 | (MAX − index)} sorts by score, then by descending index (later ones pruned first).
     */
    public static boolean[] lowestPerRow(float[] scores, int N, int K, int k) {
        checkSize(scores, N, K);
        if (k < 0 || k > K) {
            throw new IllegalArgumentException("k = " + k + " of a row of " + K);
        }
        boolean[] pruned = new boolean[N * K];
        long[] keys = new long[K];
        for (int n = 0; n < N; n++) {
            int row = n * K;
            for (int j = 0; j < K; j++) {
                keys[j] = (long) bits(scores[row + j]) << 32 | (Integer.MAX_VALUE - j);
            }
            Arrays.sort(keys);
            for (int i = 0; i < k; i++) {
                pruned[row + Integer.MAX_VALUE - (int) (keys[i] & 0xFFFFFFFFL)] = true;
            }
        }
        return pruned;
    }

    /**
     * N:M: in every group of {@code m} consecutive inputs of every row of scores: [N, K], the
     * {@code prune} lowest (so m − prune remain). K must be a multiple of m.
     */
    public static boolean[] lowestPerGroup(float[] scores, int N, int K, int m, int prune) {
        checkSize(scores, N, K);
        if (m < 1 || K % m != 0 || prune < 0 || prune > m) {
            throw new IllegalArgumentException("groups of " + m + " (pruning " + prune + ") over in-features " + K);
        }
        for (int i = 0; i < scores.length; i++) {
            checkScore(scores[i], i);
        }
        boolean[] pruned = new boolean[N * K];
        for (int g = 0; g < N * K; g += m) {
            for (int p = 0; p < prune; p++) {
                // the lowest score not yet pruned; <= takes the last of equal scores, keeping the first
                int best = -1;
                for (int i = g; i < g + m; i++) {
                    if (!pruned[i] && (best < 0 || scores[i] <= scores[best])) {
                        best = i;
                    }
                }
                pruned[best] = true;
            }
        }
        return pruned;
    }

    /** Sets W[i] = 0 where pruned[i]; returns how many were set. W: [N, K] in place. */
    public static long apply(float[] W, boolean[] pruned) {
        if (W.length != pruned.length) {
            throw new IllegalArgumentException("mask of " + pruned.length + " for " + W.length + " weights");
        }
        long n = 0;
        for (int i = 0; i < W.length; i++) {
            if (pruned[i]) {
                W[i] = 0f;
                n++;
            }
        }
        return n;
    }

    /** Exact zeros in W (−0 included). */
    public static long zeros(float[] W) {
        long z = 0;
        for (float w : W) {
            if (w == 0f) {
                z++;
            }
        }
        return z;
    }

    /**
     * Where the k lowest of a sequence of score arrays end: every score whose bit pattern is below
     * {@code bits} is pruned; of the scores equal to it, the first {@code kept} in order (array by
     * array, index by index) are kept and the rest pruned. k = 0 prunes nothing.
     *
     * @param k    the number of scores pruned
     * @param bits the bit pattern of the k-th lowest score (a float ≥ 0)
     * @param kept how many scores equal to it are kept (they come first)
     */
    public record Threshold(long k, int bits, long kept) {
        public float value() {
            return Float.intBitsToFloat(bits);
        }
    }

    /**
     * Finds the threshold of the {@code k} lowest scores over all arrays of {@code scores}, streaming:
     * the iterable is walked twice and may load each array when asked, so only one is in memory at a
     * time (global magnitude pruning over all the linears of a model). A radix selection on the
     * float bit patterns: a histogram of the high 16 bits finds the bucket of the k-th lowest, a
     * histogram of the low 16 bits inside that bucket finds its exact value and how many equal
     * scores lie before it.
     */
    public static Threshold lowestK(Iterable<float[]> scores, long k) {
        if (k < 0) {
            throw new IllegalArgumentException("k = " + k);
        }
        long[] high = new long[1 << 16];
        long total = 0;
        for (float[] s : scores) {
            for (int i = 0; i < s.length; i++) {
                high[bits(s[i]) >>> 16]++;
            }
            total += s.length;
        }
        if (k > total) {
            throw new IllegalArgumentException("k = " + k + " of " + total + " scores");
        }
        if (k == 0) {
            return new Threshold(0, 0, total);
        }
        // bucket holding the k-th lowest (1-based): below + high[bucket] ≥ k
        int bucket = 0;
        long below = 0;
        while (below + high[bucket] < k) {
            below += high[bucket++];
        }
        long[] low = new long[1 << 16];
        for (float[] s : scores) {
            for (float v : s) {
                int b = bits(v);
                if (b >>> 16 == bucket) {
                    low[b & 0xFFFF]++;
                }
            }
        }
        int lo = 0;
        while (below + low[lo] < k) {
            below += low[lo++];
        }
        // of the low[lo] scores equal to the threshold, k − below are pruned: the last ones
        return new Threshold(k, bucket << 16 | lo, low[lo] - (k - below));
    }

    /**
     * Applies a {@link Threshold} to the arrays it was found over, in the same order, keeping the
     * first ties as it goes: exactly k scores are marked over the whole sequence.
     */
    public static final class Marker {
        private final Threshold t;
        private long keepLeft;
        private long marked;

        public Marker(Threshold t) {
            this.t = t;
            this.keepLeft = t.kept();
        }

        /** The mask of the next array. */
        public boolean[] mark(float[] scores) {
            boolean[] pruned = new boolean[scores.length];
            if (t.k() == 0) {
                return pruned;
            }
            for (int i = 0; i < scores.length; i++) {
                int b = bits(scores[i]);
                if (b == t.bits() && keepLeft > 0) {
                    keepLeft--;
                } else if (b <= t.bits()) {
                    pruned[i] = true;
                    marked++;
                }
            }
            return pruned;
        }

        public Threshold threshold() {
            return t;
        }

        /** Scores marked so far (k once every array has been marked). */
        public long marked() {
            return marked;
        }
    }

    /** A score's bit pattern, which orders as the score does for finite floats ≥ 0 (−0 counts as 0). */
    private static int bits(float s) {
        if (!(s >= 0) || s == Float.POSITIVE_INFINITY) {
            throw new IllegalArgumentException("score " + s + " is not a finite number ≥ 0");
        }
        return Float.floatToIntBits(s + 0f); // −0 + 0 = +0
    }

    private static void checkScore(float s, int i) {
        if (!(s >= 0) || s == Float.POSITIVE_INFINITY) {
            throw new IllegalArgumentException("score " + s + " at " + i + " is not a finite number ≥ 0");
        }
    }

    private static void checkSize(float[] scores, int N, int K) {
        if ((long) N * K != scores.length) {
            throw new IllegalArgumentException(scores.length + " scores for [" + N + ", " + K + "]");
        }
    }
}
