package dev.shrink.kernels.cpu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;

import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * The row sums of {@link VectorOps} against the fixed order of {@link LaneSums} written out in
 * scalar code (partial i takes the elements ≡ i mod 16, in order; the partials added pairwise in
 * double), bit for bit. The scalar order mentions no vector width, so a backend that matches it
 * on this CPU gives these bits on every CPU; the forked-JVM test in cli checks whole commands
 * under several {@code -XX:MaxVectorSize}.
 */
class LaneSumsTest {
    /** Row lengths around the block of 16 and the vector widths, and model sizes (288 hidden, 512 vocabulary). */
    private static final int[] LENGTHS = {0, 1, 3, 4, 7, 8, 15, 16, 17, 31, 33, 64, 100, 288, 512, 1031};

    /** Floats of mixed magnitudes, so that different summation orders round differently. */
    private static float[] mixed(Random rnd, int n) {
        float[] x = new float[n];
        for (int i = 0; i < n; i++) {
            x[i] = (rnd.nextFloat() * 2 - 1) * (float) Math.pow(10, rnd.nextInt(5) - 2);
        }
        return x;
    }

    /** The fixed tree: ((p0+p8)+(p4+p12)) + ((p2+p10)+(p6+p14)) + the same from p1, in double. */
    private static double tree(double[] p) {
        double[] s8 = new double[8], s4 = new double[4];
        for (int i = 0; i < 8; i++) {
            s8[i] = p[i] + p[i + 8];
        }
        for (int i = 0; i < 4; i++) {
            s4[i] = s8[i] + s8[i + 4];
        }
        return (s4[0] + s4[2]) + (s4[1] + s4[3]);
    }

    private static double tree(float[] p) {
        double[] d = new double[16];
        for (int i = 0; i < 16; i++) {
            d[i] = p[i];
        }
        return tree(d);
    }

    private static double specSumSquares(float[] x, int o, int n, int partials) {
        float[] p = new float[16];
        for (int c = 0; c < n; c++) {
            p[c % partials] = Math.fma(x[o + c], x[o + c], p[c % partials]);
        }
        return tree(p);
    }

    private static void assertBits(double expected, double actual, String what) {
        assertEquals(Double.doubleToRawLongBits(expected), Double.doubleToRawLongBits(actual),
                what + ": " + actual + ", the fixed order gives " + expected);
    }

    private static void assertBits(float[] expected, float[] actual, String what) {
        for (int i = 0; i < expected.length; i++) {
            assertEquals(Float.floatToRawIntBits(expected[i]), Float.floatToRawIntBits(actual[i]),
                    what + " at " + i + ": " + actual[i] + ", the fixed order gives " + expected[i]);
        }
    }

    @Test
    void sumOfSquaresFollowsTheFixedOrder() {
        Random rnd = new Random(3);
        for (int n : LENGTHS) {
            float[] x = mixed(rnd, n + 5);
            assertBits(specSumSquares(x, 5, n, 16), LaneSums.sumSquares(x, 5, n), "Σx² of " + n);
        }
    }

    @Test
    void theDataTellsOrdersApart() {
        // 8 partials (what an AVX2 lane sum gave) round differently on these data than 16: the
        // bit-for-bit checks above would notice a width-dependent order
        float[] x = mixed(new Random(3), 1031);
        assertNotEquals(specSumSquares(x, 0, 1031, 16), specSumSquares(x, 0, 1031, 8));
    }

    @Test
    void rmsNormFollowsTheFixedOrder() {
        Random rnd = new Random(4);
        for (VectorOps ops : new VectorOps[] {new VectorOps(1), new VectorOps(2)}) {
            for (int C : LENGTHS) {
                if (C == 0) {
                    continue;
                }
                int M = 3;
                float[] x = mixed(rnd, M * C), w = mixed(rnd, C), y = new float[M * C], expected = new float[M * C];
                for (int m = 0; m < M; m++) {
                    float inv = (float) (1.0 / Math.sqrt(specSumSquares(x, m * C, C, 16) / C + 1e-5f));
                    for (int c = 0; c < C; c++) {
                        expected[m * C + c] = x[m * C + c] * inv * w[c];
                    }
                }
                ops.rmsNorm(x, w, 1e-5f, M, C, y);
                assertBits(expected, y, "rmsNorm C = " + C + ", " + ops.threads() + " threads");
            }
        }
    }

    @Test
    void softmaxFollowsTheFixedOrder() {
        Random rnd = new Random(5);
        for (int n : LENGTHS) {
            if (n == 0) {
                continue;
            }
            float[] x = Close.random(rnd, n + 2, 8f);
            float max = Float.NEGATIVE_INFINITY;
            for (int j = 0; j < n; j++) {
                max = Math.max(max, x[2 + j]);
            }
            float[] e = new float[n], p = new float[16];
            for (int j = 0; j < n; j++) {
                e[j] = VectorMath.exp(x[2 + j] - max);
                p[j % 16] += e[j];
            }
            float inv = (float) (1.0 / tree(p));
            float[] expected = new float[n];
            for (int j = 0; j < n; j++) {
                expected[j] = e[j] * inv;
            }
            VectorOps.softmaxInPlace(x, 2, n);
            assertBits(expected, java.util.Arrays.copyOfRange(x, 2, 2 + n), "softmax of " + n);
        }
    }

    @Test
    void crossEntropyFollowsTheFixedOrder() {
        Random rnd = new Random(6);
        for (VectorOps ops : new VectorOps[] {new VectorOps(1), new VectorOps(2)}) {
            for (int V : LENGTHS) {
                if (V == 0) {
                    continue;
                }
                int M = 4;
                float[] logits = Close.random(rnd, M * V, 12f);
                int[] targets = new int[M];
                double[] nll = new double[M];
                for (int m = 0; m < M; m++) {
                    targets[m] = rnd.nextInt(V);
                }
                ops.crossEntropy(logits, M, V, targets, nll);
                for (int m = 0; m < M; m++) {
                    float max = Float.NEGATIVE_INFINITY;
                    for (int c = 0; c < V; c++) {
                        max = Math.max(max, logits[m * V + c]);
                    }
                    double[] p = new double[16];
                    for (int c = 0; c < V; c++) {
                        p[c % 16] += VectorMath.exp(logits[m * V + c] - max);
                    }
                    double expected = max + Math.log(tree(p)) - logits[m * V + targets[m]];
                    assertBits(expected, nll[m], "cross-entropy row " + m + " of V = " + V + ", "
                            + ops.threads() + " threads");
                }
            }
        }
    }
}
