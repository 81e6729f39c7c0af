package dev.shrink.kernels.cpu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Random;
import jdk.incubator.vector.FloatVector;
import org.junit.jupiter.api.Test;

/** The deterministic exp against Math.exp, and its scalar and vector forms against each other. */
class VectorMathTest {
    private static final int L = VectorMath.S.length();

    /** exp of every value in xs through the vector form, L values per vector. */
    private static float[] vectorExp(float[] xs) {
        float[] padded = java.util.Arrays.copyOf(xs, (xs.length + L - 1) / L * L);
        float[] out = new float[padded.length];
        for (int i = 0; i < padded.length; i += L) {
            VectorMath.exp(FloatVector.fromArray(VectorMath.S, padded, i)).intoArray(out, i);
        }
        return java.util.Arrays.copyOf(out, xs.length);
    }

    @Test
    void expIsWithinTwoUlpOfMathExpOverItsRange() {
        Random rnd = new Random(1);
        float[] xs = new float[20_000];
        for (int i = 0; i < xs.length; i++) {
            xs[i] = -87f + rnd.nextFloat() * (88.7f + 87f); // normal results only
        }
        float[] got = vectorExp(xs);
        for (int i = 0; i < xs.length; i++) {
            float exact = (float) Math.exp(xs[i]);
            assertTrue(Math.abs(got[i] - exact) <= 2 * Math.ulp(exact),
                    "exp(" + xs[i] + ") = " + got[i] + ", Math.exp gives " + exact);
            assertEquals(Float.floatToIntBits(VectorMath.exp(xs[i])), Float.floatToIntBits(got[i]),
                    "scalar and vector exp differ at " + xs[i]);
        }
    }

    @Test
    void expEdgeCases() {
        float[] xs = {0f, -0f, 1f, -1f, 1e-8f, -1e-8f, 88.72f, 88.73f, 100f, Float.POSITIVE_INFINITY,
            -87.5f, -100f, -103.9f, -104.5f, -200f, Float.NEGATIVE_INFINITY, Float.NaN};
        float[] got = vectorExp(xs);
        for (int i = 0; i < xs.length; i++) {
            double exact = Math.exp(xs[i]);
            float scalar = VectorMath.exp(xs[i]);
            assertEquals(Float.floatToIntBits(scalar), Float.floatToIntBits(got[i]), "scalar vs vector at " + xs[i]);
            if (Double.isNaN(exact)) {
                assertTrue(Float.isNaN(got[i]), "exp(NaN)");
            } else if ((float) exact == Float.POSITIVE_INFINITY || exact == 0) {
                assertEquals((float) exact, got[i], "exp(" + xs[i] + ")");
            } else if (exact < Float.MIN_NORMAL) { // subnormal result: absolute error of a few ulp of MIN_VALUE
                assertEquals(exact, got[i], 4 * Float.MIN_VALUE, "exp(" + xs[i] + ")");
            } else {
                assertEquals(exact, got[i], 2 * Math.ulp((float) exact), "exp(" + xs[i] + ")");
            }
        }
        assertEquals(1f, got[0]);
    }
}
