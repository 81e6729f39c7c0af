package dev.shrink.kernels.cpu;

import static org.junit.jupiter.api.Assertions.fail;

import java.util.Random;

/** Float comparisons for the conformance tests: |actual − expected| ≤ atol + rtol·|expected|. */
public final class Close {
    private Close() {
    }

    /** Fails at the first of n elements (from off) that is not close, or NaN/∞ where expected is finite. */
    public static void assertClose(String what, float[] expected, float[] actual, int off, int n, double atol, double rtol) {
        for (int i = off; i < off + n; i++) {
            check(what, i, expected[i], actual[i], atol, rtol);
        }
    }

    public static void assertClose(String what, float[] expected, float[] actual, double atol, double rtol) {
        if (expected.length != actual.length) {
            fail(what + ": lengths differ, " + expected.length + " vs " + actual.length);
        }
        assertClose(what, expected, actual, 0, expected.length, atol, rtol);
    }

    public static void assertClose(String what, double[] expected, double[] actual, int n, double atol, double rtol) {
        for (int i = 0; i < n; i++) {
            check(what, i, expected[i], actual[i], atol, rtol);
        }
    }

    private static void check(String what, int i, double e, double a, double atol, double rtol) {
        boolean ok = Double.isFinite(e)
                ? Double.isFinite(a) && Math.abs(a - e) <= atol + rtol * Math.abs(e)
                : Double.compare(e, a) == 0; // a non-finite reference must be matched exactly
        if (!ok) {
            fail(String.format("%s: element %d is %s, expected %s (|diff| %.3g > atol %.3g + rtol %.3g·|expected|)",
                    what, i, a, e, Math.abs(a - e), atol, rtol));
        }
    }

    /** n uniform floats in [−scale, scale). */
    public static float[] random(Random rnd, int n, float scale) {
        float[] x = new float[n];
        for (int i = 0; i < n; i++) {
            x[i] = (rnd.nextFloat() * 2 - 1) * scale;
        }
        return x;
    }

    /** A copy filled with NaN: the poisoned output of an op that must overwrite it. */
    public static float[] nans(int n) {
        float[] x = new float[n];
        java.util.Arrays.fill(x, Float.NaN);
        return x;
    }
}
