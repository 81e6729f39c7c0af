package dev.shrink.core.sparse;

import dev.shrink.core.ShrinkException;
import java.util.Locale;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Which weights of a linear W: [N = out, K = in] a sparsity leaves non-zero.
 * {@link Unstructured}: a fraction of the weights, anywhere; {@link NofM}: at most n non-zeros in
 * every m consecutive input weights of a row (2:4 keeps 2 of 4, the pattern sparse tensor cores run).
 * Shared by the pruning stage, SparseGPT and the writers of sparse formats.
 */
public sealed interface SparsityPattern permits SparsityPattern.Unstructured, SparsityPattern.NofM {

    /** The fraction of weights that are zero, in [0, 1). */
    double ratio();

    /** "unstructured" or "n:m" (e.g. "2:4"), as config.json's {@code shrink.sparsity.pattern} says it. */
    String label();

    /** Why this pattern cannot apply to a linear with {@code K} in-features, or null when it can. */
    String unfitReason(int K);

    /** A fraction {@code ratio} of the weights zero, in [0, 1). */
    record Unstructured(double ratio) implements SparsityPattern {
        public Unstructured {
            if (!(ratio >= 0 && ratio < 1)) {
                throw new IllegalArgumentException("sparsity ratio must be in [0, 1), got " + ratio);
            }
        }

        @Override
        public String label() {
            return "unstructured";
        }

        @Override
        public String unfitReason(int K) {
            return K >= 1 ? null : "no in-features";
        }
    }

    /** At most {@code n} non-zeros in every group of {@code m} consecutive input weights of a row; 0 &lt; n &lt; m. */
    record NofM(int n, int m) implements SparsityPattern {
        public NofM {
            if (n <= 0 || n >= m) {
                throw new IllegalArgumentException("N:M sparsity needs 0 < N < M, got " + n + ":" + m);
            }
        }

        /** Weights set to zero in each group: m − n. */
        public int prunedPerGroup() {
            return m - n;
        }

        @Override
        public double ratio() {
            return (double) (m - n) / m;
        }

        @Override
        public String label() {
            return n + ":" + m;
        }

        @Override
        public String unfitReason(int K) {
            return K % m == 0 ? null : "in-features " + K + " not divisible by " + m;
        }
    }

    /** "N:M" with decimal integers (any number of digits: the size is checked after). */
    Pattern N_OF_M = Pattern.compile("\\s*(\\d+)\\s*:\\s*(\\d+)\\s*");

    /** The largest group size M accepted: hardware N:M patterns are 2:4 and 4:8; beyond this is a typo. */
    int MAX_M = 256;

    /**
     * An N:M pattern from its text ("2:4", "4:8"): the one validator of N:M for the CLI's
     * {@code --pattern}, recipes and the sparsity record in config.json.
     *
     * @throws ShrinkException for anything that is not N:M with 0 &lt; N &lt; M &le; {@link #MAX_M}
     */
    static NofM parse(String text) {
        Matcher mm = N_OF_M.matcher(text == null ? "" : text);
        if (!mm.matches()) {
            throw new ShrinkException("N:M pattern '" + text + "' is not of the form N:M (e.g. 2:4 or 4:8)");
        }
        String ms = mm.group(2).replaceFirst("^0+(?=.)", ""), ns = mm.group(1).replaceFirst("^0+(?=.)", "");
        if (ms.length() > 4 || Integer.parseInt(ms) > MAX_M) {
            throw new ShrinkException("N:M pattern '" + text + "' has M = " + ms + "; M must be at most " + MAX_M
                    + " (e.g. 2:4 or 4:8)");
        }
        int m = Integer.parseInt(ms), n = ns.length() > 4 ? Integer.MAX_VALUE : Integer.parseInt(ns);
        if (n <= 0 || n >= m) {
            throw new ShrinkException(String.format(Locale.ROOT,
                    "N:M pattern '%s' needs 0 < N < M (N non-zeros kept in every M weights, e.g. 2:4)", text));
        }
        return new NofM(n, m);
    }
}
