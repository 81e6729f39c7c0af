package dev.shrink.distill;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * The training ops' row sums (Σ exp of softmax and log-sum-exp, the KL's Σ w·(a − b)) against the
 * fixed order of {@code LaneSums} written out in scalar code, bit for bit: partial i takes the
 * elements ≡ i mod 16, the 16 partials are added pairwise in double. That order names no vector
 * width, so matching it here means the same bits on every CPU.
 */
class F32SumOrderTest {
    private static final int[] LENGTHS = {1, 3, 4, 8, 15, 16, 17, 33, 100, 512, 1031};

    private static double tree(float[] p) {
        double[] s8 = new double[8], s4 = new double[4];
        for (int i = 0; i < 8; i++) {
            s8[i] = (double) p[i] + p[i + 8];
        }
        for (int i = 0; i < 4; i++) {
            s4[i] = s8[i] + s8[i + 4];
        }
        return (s4[0] + s4[2]) + (s4[1] + s4[3]);
    }

    private static float[] random(Random rnd, int n, float scale) {
        float[] x = new float[n];
        for (int i = 0; i < n; i++) {
            x[i] = (rnd.nextFloat() * 2 - 1) * scale * (float) Math.pow(10, rnd.nextInt(3) - 1);
        }
        return x;
    }

    @Test
    void expInPlaceFollowsTheFixedOrder() {
        Random rnd = new Random(7);
        for (int n : LENGTHS) {
            float[] x = random(rnd, n + 3, 5f);
            float shift = 1.5f;
            float[] expected = x.clone(), p = new float[16];
            for (int j = 0; j < n; j++) {
                expected[3 + j] = FastExp.exp(x[3 + j] - shift);
                p[j % 16] += expected[3 + j];
            }
            double sum = F32TrainOps.expInPlace(x, 3, n, shift);
            assertEquals(Double.doubleToRawLongBits(tree(p)), Double.doubleToRawLongBits(sum), "Σ exp of " + n);
            for (int j = 0; j < n + 3; j++) {
                assertEquals(Float.floatToRawIntBits(expected[j]), Float.floatToRawIntBits(x[j]), "exp at " + j);
            }
        }
    }

    @Test
    void dotDiffFollowsTheFixedOrder() {
        Random rnd = new Random(8);
        for (int n : LENGTHS) {
            float[] w = random(rnd, n, 1f), a = random(rnd, n, 3f), b = random(rnd, n, 3f);
            float[] p = new float[16];
            for (int j = 0; j < n; j++) {
                p[j % 16] = Math.fma(a[j] - b[j], w[j], p[j % 16]);
            }
            assertEquals(Double.doubleToRawLongBits(tree(p)), Double.doubleToRawLongBits(F32TrainOps.dotDiff(w, a, b, n)),
                    "Σ w·(a − b) of " + n);
        }
    }
}
