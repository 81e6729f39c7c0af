package dev.shrink.core.forward;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import org.junit.jupiter.api.Test;

/**
 * A mixture's routing against the formula written out: softmax over the experts, the k largest (equal
 * values: the lower expert), renormalised or not; per expert its tokens in increasing order.
 */
class RoutingTest {
    static double[] softmax(float[] l, int off, int E) {
        double max = Double.NEGATIVE_INFINITY, sum = 0;
        for (int e = 0; e < E; e++) {
            max = Math.max(max, l[off + e]);
        }
        double[] p = new double[E];
        for (int e = 0; e < E; e++) {
            p[e] = Math.exp(l[off + e] - max);
            sum += p[e];
        }
        for (int e = 0; e < E; e++) {
            p[e] /= sum;
        }
        return p;
    }

    @Test
    void topTwoOfFourWithAndWithoutRenormalising() {
        // token 0 prefers experts 2 then 0; token 1 prefers 1 then 3; token 2 has a tie between 0 and 3 for second
        float[] logits = {1f, -2f, 3f, 0.5f, -1f, 4f, 0f, 2f, 0.25f, -3f, 2f, 0.25f};
        int M = 3, E = 4;
        for (boolean norm : new boolean[] {false, true}) {
            Routing r = Routing.of(logits, M, E, 2, norm);
            assertArrayEquals(new int[] {0, 2}, r.rows(0));
            assertArrayEquals(new int[] {1}, r.rows(1));
            assertArrayEquals(new int[] {0, 2}, r.rows(2));
            assertArrayEquals(new int[] {1}, r.rows(3), "token 2's tie goes to expert 0, not 3");
            double[][] chosen = {{2, 0}, {1, 3}, {2, 0}};
            for (int m = 0; m < M; m++) {
                double[] p = softmax(logits, m * E, E);
                double a = p[(int) chosen[m][0]], b = p[(int) chosen[m][1]];
                double wa = norm ? a / (a + b) : a, wb = norm ? b / (a + b) : b;
                assertEquals(wa, weightOf(r, (int) chosen[m][0], m), 1e-6);
                assertEquals(wb, weightOf(r, (int) chosen[m][1], m), 1e-6);
            }
        }
    }

    private static float weightOf(Routing r, int e, int m) {
        int[] rows = r.rows(e);
        for (int i = 0; i < rows.length; i++) {
            if (rows[i] == m) {
                return r.weights(e)[i];
            }
        }
        throw new AssertionError("token " + m + " not routed to expert " + e);
    }

    @Test
    void everyTokenReachesKDistinctExperts() {
        java.util.Random rnd = new java.util.Random(3);
        int M = 50, E = 8, k = 3;
        float[] logits = new float[M * E];
        for (int i = 0; i < logits.length; i++) {
            logits[i] = (float) rnd.nextGaussian();
        }
        Routing r = Routing.of(logits, M, E, k, true);
        int[] per = new int[M];
        double[] sum = new double[M];
        for (int e = 0; e < E; e++) {
            int prev = -1;
            for (int i = 0; i < r.rows(e).length; i++) {
                int m = r.rows(e)[i];
                assertEquals(true, m > prev, "increasing rows");
                prev = m;
                per[m]++;
                sum[m] += r.weights(e)[i];
            }
        }
        for (int m = 0; m < M; m++) {
            assertEquals(k, per[m]);
            assertEquals(1.0, sum[m], 1e-6, "renormalised weights sum to 1");
        }
        assertThrows(IllegalArgumentException.class, () -> Routing.of(logits, M, E, E + 1, false));
    }
}
