package dev.shrink.prune;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shrink.core.sparse.SparsityPattern;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * {@link Masks} against a plain reference: sort the (score, position) pairs with a comparator,
 * prune the first k. The tie rule is "of equal scores the earlier position is kept", so the
 * reference orders by score ascending, then position descending. Random matrices are drawn with few
 * distinct values, so ties are everywhere, and across many exponents, so the radix selection's
 * buckets are exercised.
 */
class MasksTest {

    /** Reference: prune the k lowest of {@code scores[from..from+len)} (ties: later position first). */
    static void referenceLowest(float[] scores, int[] positions, int k, boolean[] pruned) {
        List<Integer> idx = new ArrayList<>();
        for (int p : positions) {
            idx.add(p);
        }
        idx.sort(Comparator.<Integer>comparingDouble(i -> scores[i]).thenComparing(Comparator.<Integer>reverseOrder()));
        for (int i = 0; i < k; i++) {
            pruned[idx.get(i)] = true;
        }
    }

    static int[] range(int from, int len) {
        int[] r = new int[len];
        for (int i = 0; i < len; i++) {
            r[i] = from + i;
        }
        return r;
    }

    /** Scores with many ties: a few levels times a few powers of two, some exact zeros. */
    static float[] tiedScores(Random rnd, int n) {
        float[] s = new float[n];
        for (int i = 0; i < n; i++) {
            int level = rnd.nextInt(6);
            s[i] = level == 0 ? 0f : level * (float) Math.pow(2, rnd.nextInt(7) - 3);
        }
        return s;
    }

    /** Distinct-ish scores spread over many exponents (different high 16 bits). */
    static float[] spreadScores(Random rnd, int n) {
        float[] s = new float[n];
        for (int i = 0; i < n; i++) {
            s[i] = (float) (Math.abs(rnd.nextGaussian()) * Math.pow(10, rnd.nextInt(9) - 4));
        }
        return s;
    }

    static int count(boolean[] m) {
        int c = 0;
        for (boolean b : m) {
            c += b ? 1 : 0;
        }
        return c;
    }

    @Test
    void perMatrixIsTheKLowestBySort() {
        Random rnd = new Random(1);
        for (int trial = 0; trial < 40; trial++) {
            int N = 1 + rnd.nextInt(12), K = 1 + rnd.nextInt(40);
            float[] s = trial % 2 == 0 ? tiedScores(rnd, N * K) : spreadScores(rnd, N * K);
            for (double ratio : new double[] {0, 0.1, 0.3, 0.5, 0.77, 0.99}) {
                long k = Masks.count(ratio, (long) N * K);
                boolean[] ref = new boolean[N * K];
                referenceLowest(s, range(0, N * K), (int) k, ref);
                boolean[] got = Masks.lowestInMatrix(s, k);
                assertArrayEquals(ref, got, "trial " + trial + " ratio " + ratio);
                assertEquals(k, count(got));
                assertArrayEquals(got, Masks.mask(s, N, K, new SparsityPattern.Unstructured(ratio), Scope.LAYER));
            }
        }
    }

    @Test
    void perRowIsTheKLowestOfEachRowBySort() {
        Random rnd = new Random(2);
        for (int trial = 0; trial < 30; trial++) {
            int N = 1 + rnd.nextInt(10), K = 1 + rnd.nextInt(50);
            float[] s = trial % 2 == 0 ? tiedScores(rnd, N * K) : spreadScores(rnd, N * K);
            for (double ratio : new double[] {0, 0.25, 0.5, 0.9}) {
                int k = (int) Masks.count(ratio, K);
                boolean[] ref = new boolean[N * K];
                for (int n = 0; n < N; n++) {
                    referenceLowest(s, range(n * K, K), k, ref);
                }
                boolean[] got = Masks.mask(s, N, K, new SparsityPattern.Unstructured(ratio), Scope.ROW);
                assertArrayEquals(ref, got, "trial " + trial + " ratio " + ratio);
                for (int n = 0; n < N; n++) {
                    assertEquals(k, count(Arrays.copyOfRange(got, n * K, (n + 1) * K)), "row " + n);
                }
            }
        }
    }

    @Test
    void nOfMKeepsTheNLargestOfEveryGroup() {
        Random rnd = new Random(3);
        for (int[] nm : new int[][] {{2, 4}, {4, 8}, {1, 4}, {3, 4}}) {
            SparsityPattern.NofM p = new SparsityPattern.NofM(nm[0], nm[1]);
            for (int trial = 0; trial < 10; trial++) {
                int N = 1 + rnd.nextInt(8), K = nm[1] * (1 + rnd.nextInt(10));
                float[] s = trial % 2 == 0 ? tiedScores(rnd, N * K) : spreadScores(rnd, N * K);
                boolean[] ref = new boolean[N * K];
                for (int g = 0; g < N * K; g += nm[1]) {
                    referenceLowest(s, range(g, nm[1]), nm[1] - nm[0], ref);
                }
                boolean[] got = Masks.mask(s, N, K, p, null);
                assertArrayEquals(ref, got, p.label() + " trial " + trial);
                for (int g = 0; g < N * K; g += nm[1]) {
                    assertEquals(nm[1] - nm[0], count(Arrays.copyOfRange(got, g, g + nm[1])), "group at " + g);
                }
            }
        }
    }

    @Test
    void tiesKeepTheEarlierWeight() {
        float[] s = {1, 1, 1, 1, 2, 0, 2, 0};
        // 2:4: group 1 all equal → keep the first two; group 2: zeros pruned
        assertArrayEquals(new boolean[] {false, false, true, true, false, true, false, true},
                Masks.lowestPerGroup(s, 1, 8, 4, 2));
        // per row, k = 3 of [1, 1, 1, 1, 2, 0, 2, 0]: both zeros, then the last of the ones
        assertArrayEquals(new boolean[] {false, false, false, true, false, true, false, true},
                Masks.lowestPerRow(s, 1, 8, 3));
        assertArrayEquals(Masks.lowestPerRow(s, 1, 8, 3), Masks.lowestInMatrix(s, 3));
        // −0 and +0 are the same score
        assertArrayEquals(new boolean[] {false, true}, Masks.lowestInMatrix(new float[] {-0f, 0f}, 1));
    }

    @Test
    void globalSelectionStreamsAndIsExactOverall() {
        Random rnd = new Random(4);
        for (int trial = 0; trial < 20; trial++) {
            int parts = 1 + rnd.nextInt(5);
            List<float[]> arrays = new ArrayList<>();
            int total = 0;
            for (int i = 0; i < parts; i++) {
                // arrays on different scales: a global threshold prunes them unevenly
                int n = 1 + rnd.nextInt(300);
                float[] a = trial % 2 == 0 ? tiedScores(rnd, n) : spreadScores(rnd, n);
                float scale = (float) Math.pow(4, i - 2);
                for (int j = 0; j < n; j++) {
                    a[j] *= scale;
                }
                arrays.add(a);
                total += n;
            }
            float[] all = new float[total];
            int off = 0;
            for (float[] a : arrays) {
                System.arraycopy(a, 0, all, off, a.length);
                off += a.length;
            }
            for (double ratio : new double[] {0, 0.2, 0.5, 0.8}) {
                long k = Masks.count(ratio, total);
                boolean[] ref = new boolean[total];
                referenceLowest(all, range(0, total), (int) k, ref);
                int[] passes = {0};
                Iterable<float[]> stream = () -> {
                    passes[0]++;
                    return arrays.iterator();
                };
                Masks.Marker marker = new Masks.Marker(Masks.lowestK(stream, k));
                assertEquals(k == 0 ? 1 : 2, passes[0], "passes over the stream");
                boolean[] got = new boolean[total];
                off = 0;
                for (float[] a : arrays) {
                    boolean[] m = marker.mark(a);
                    System.arraycopy(m, 0, got, off, m.length);
                    off += m.length;
                }
                assertArrayEquals(ref, got, "trial " + trial + " ratio " + ratio);
                assertEquals(k, marker.marked());
            }
        }
    }

    @Test
    void applyZeroesExactlyTheMask() {
        float[] W = {0.5f, -2f, 3f, -0.25f};
        assertEquals(2, Masks.apply(W, new boolean[] {true, false, false, true}));
        assertArrayEquals(new float[] {0f, -2f, 3f, 0f}, W);
        assertEquals(2, Masks.zeros(W));
        assertArrayEquals(new float[] {0.5f, 2f, 0f, 0f}, Masks.magnitude(new float[] {-0.5f, 2f, -0f, 0f}));
        assertEquals(Float.floatToIntBits(0f), Float.floatToIntBits(Masks.magnitude(new float[] {-0f})[0]));
    }

    @Test
    void countIsTheFloorOfRatioTimesTotal() {
        assertEquals(73728, Masks.count(0.5, 384L * 384));
        assertEquals(44236, Masks.count(0.3, 384L * 384)); // 44236.8
        assertEquals(0, Masks.count(0.0, 1000));
        assertEquals(0, Masks.count(0.9, 1));
        assertEquals(2_000_000_000L, Masks.count(0.5, 4_000_000_000L));
    }

    @Test
    void badScoresAndSizesAreRefused() {
        assertThrows(IllegalArgumentException.class, () -> Masks.lowestInMatrix(new float[] {1, Float.NaN}, 1));
        assertThrows(IllegalArgumentException.class, () -> Masks.lowestPerRow(new float[] {1, -1}, 1, 2, 1));
        assertThrows(IllegalArgumentException.class, () -> Masks.lowestPerGroup(new float[] {1, Float.POSITIVE_INFINITY, 0, 0}, 1, 4, 4, 2));
        assertThrows(IllegalArgumentException.class, () -> Masks.lowestPerGroup(new float[6], 1, 6, 4, 2));
        assertThrows(IllegalArgumentException.class, () -> Masks.lowestPerRow(new float[6], 2, 2, 1));
        assertThrows(IllegalArgumentException.class, () -> Masks.lowestInMatrix(new float[3], 4));
        assertTrue(Masks.lowestInMatrix(new float[3], 0).length == 3);
    }
}
