package dev.shrink.distill;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Random;
import jdk.incubator.vector.FloatVector;
import org.junit.jupiter.api.Test;

/** {@link FastExp} against Math.exp in double: a few ulp over the float range, vector lanes = scalar, edges. */
class FastExpTest {
    @Test
    void withinFourUlpAndLanesEqualTheScalar() {
        Random rnd = new Random(5);
        float[] x = new float[FastExp.L * 20000];
        for (int i = 0; i < x.length; i++) {
            x[i] = (float) (rnd.nextDouble() * 170 - 85);
        }
        x[0] = 0f;
        x[1] = -1e-8f;
        x[2] = 88f;
        x[3] = -87f;
        double worst = 0;
        for (int i = 0; i < x.length; i += FastExp.L) {
            FloatVector v = FastExp.exp(FloatVector.fromArray(FastExp.S, x, i));
            for (int k = 0; k < FastExp.L; k++) {
                float s = FastExp.exp(x[i + k]);
                assertEquals(Float.floatToRawIntBits(s), Float.floatToRawIntBits(v.lane(k)), "lane vs scalar at " + x[i + k]);
                double exact = Math.exp(x[i + k]);
                double ulps = Math.abs(s - exact) / Math.ulp((float) exact);
                worst = Math.max(worst, ulps);
            }
        }
        assertTrue(worst <= 4, "worst error " + worst + " ulp");
        assertEquals(1f, FastExp.exp(0f));
    }

    @Test
    void edges() {
        assertTrue(Float.isNaN(FastExp.exp(Float.NaN)));
        assertTrue(Float.isNaN(FastExp.exp(FloatVector.broadcast(FastExp.S, Float.NaN)).lane(0)));
        assertTrue(FastExp.exp(-1000f) < 1e-44f && FastExp.exp(-1000f) >= 0);
        assertEquals(0f, FastExp.exp(Float.NEGATIVE_INFINITY), 1e-44f);
        float big = FastExp.exp(1000f);
        assertTrue(Float.isFinite(big) && big > 1e38f, "clamped to e^88.5: " + big);
    }
}
