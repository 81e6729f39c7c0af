package dev.shrink.kernels.cpu;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import org.junit.jupiter.api.Test;

/**
 * The reference checked against answers worked out by hand, so it cannot share a mistake with the
 * fast backend it judges (a swapped index, a missed transpose, a sign in RoPE).
 */
class ReferenceOpsTest {
    private final ReferenceOps ref = new ReferenceOps();

    // A = [[1, 2], [3, 4]], B = [[5, 6], [7, 8]]: A·B = [[19, 22], [43, 50]]
    private static final float[] A = {1, 2, 3, 4};
    private static final float[] B = {5, 6, 7, 8};
    private static final float[] A_T = {1, 3, 2, 4}; // A stored transposed
    private static final float[] B_T = {5, 7, 6, 8};
    private static final float[] AB = {19, 22, 43, 50};

    @Test
    void gemm2x2AllTransposes() {
        float[] c = new float[4];
        ref.gemm(false, false, 2, 2, 2, 1f, A, 0, 2, B, 0, 2, 0f, c, 0, 2);
        assertArrayEquals(AB, c);
        ref.gemm(true, false, 2, 2, 2, 1f, A_T, 0, 2, B, 0, 2, 0f, c, 0, 2);
        assertArrayEquals(AB, c);
        ref.gemm(false, true, 2, 2, 2, 1f, A, 0, 2, B_T, 0, 2, 0f, c, 0, 2);
        assertArrayEquals(AB, c);
        ref.gemm(true, true, 2, 2, 2, 1f, A_T, 0, 2, B_T, 0, 2, 0f, c, 0, 2);
        assertArrayEquals(AB, c);
    }

    @Test
    void gemmAlphaBetaAndNaNIgnoredWhenBetaIsZero() {
        float[] c = {1, 2, 3, 4};
        ref.gemm(false, false, 2, 2, 2, 2f, A, 0, 2, B, 0, 2, 0.5f, c, 0, 2);
        assertArrayEquals(new float[] {38.5f, 45f, 87.5f, 102f}, c);
        float[] nan = {Float.NaN, Float.NaN, Float.NaN, Float.NaN};
        ref.gemm(false, false, 2, 2, 2, 1f, A, 0, 2, B, 0, 2, 0f, nan, 0, 2);
        assertArrayEquals(AB, nan);
    }

    @Test
    void gemmOffsetsAndLeadingDimensions() {
        // A at offset 1 with lda 3 ([x, 1, 2, y, 3, 4]); B at offset 2 with ldb 4; C inside a 2×3 frame.
        float[] a = {9, 1, 2, 9, 3, 4};
        float[] b = {9, 9, 5, 6, 9, 9, 7, 8};
        float[] c = {-1, -1, -1, -1, -1, -1, -1};
        ref.gemm(false, false, 2, 2, 2, 1f, a, 1, 3, b, 2, 4, 0f, c, 1, 3);
        assertArrayEquals(new float[] {-1, 19, 22, -1, 43, 50, -1}, c);
    }

    @Test
    void gemmRejectsTooSmallLeadingDimension() {
        float[] c = new float[4];
        assertThrows(IllegalArgumentException.class,
                () -> ref.gemm(false, false, 2, 2, 2, 1f, A, 0, 1, B, 0, 2, 0f, c, 0, 2));
        assertThrows(IllegalArgumentException.class,
                () -> ref.gemm(false, false, 2, 2, 2, 1f, A, 1, 2, B, 0, 2, 0f, c, 0, 2));
    }

    @Test
    void rmsNormOf3And4() {
        // mean(x²) = (9 + 16) / 2 = 12.5
        float[] y = new float[2];
        ref.rmsNorm(new float[] {3, 4}, new float[] {1, 1}, 0f, 1, 2, y);
        assertEquals(3 / Math.sqrt(12.5), y[0], 1e-6);
        assertEquals(4 / Math.sqrt(12.5), y[1], 1e-6);
        ref.rmsNorm(new float[] {3, 4}, new float[] {2, -0.5f}, 0f, 1, 2, y);
        assertEquals(6 / Math.sqrt(12.5), y[0], 1e-6);
        assertEquals(-2 / Math.sqrt(12.5), y[1], 1e-6);
    }

    @Test
    void crossEntropyOfKnownLogits() {
        double[] nll = new double[2];
        float[] logits = {1, 2, 3, 0, 0, 0};
        ref.crossEntropy(logits, 2, 3, new int[] {0, 2}, nll);
        double lse = Math.log(Math.exp(1) + Math.exp(2) + Math.exp(3));
        assertEquals(lse - 1, nll[0], 1e-6);
        assertEquals(Math.log(3), nll[1], 1e-6); // uniform over 3
    }

    @Test
    void ropeAtPositionZeroIsIdentity() {
        int D = 8, half = D / 2;
        float[] cos = new float[2 * half], sin = new float[2 * half];
        for (int i = 0; i < half; i++) { // a real table, rows for positions 0 and 1
            double theta = Math.pow(10000, -2.0 * i / D);
            for (int pos = 0; pos < 2; pos++) {
                cos[pos * half + i] = (float) Math.cos(pos * theta);
                sin[pos * half + i] = (float) Math.sin(pos * theta);
            }
        }
        float[] x = {1, -2, 3, -4, 5, -6, 7, -8, 0.5f, 0.25f, -1, 2, 3, 4, 5, 6}; // [T=1, heads=2, D=8]
        float[] before = x.clone();
        ref.rope(x, 1, 2, D, new int[] {0}, cos, sin);
        assertArrayEquals(before, x);
    }

    @Test
    void ropeOfOnePairAtPositionOneRotatesByTheta() {
        double theta = 0.3;
        float c = (float) Math.cos(theta), s = (float) Math.sin(theta);
        float[] cos = {1, c}, sin = {0, s}; // [maxPos = 2, D/2 = 1]
        float[] x = {1, 0, 0, 1}; // two tokens of one pair each: e1 and e2
        ref.rope(x, 2, 1, 2, new int[] {1, 1}, cos, sin);
        assertArrayEquals(new float[] {c, s, -s, c}, x, 1e-7f); // R(θ)·e1, R(θ)·e2
    }

    @Test
    void attentionOfOneTokenIsItsValue() {
        // H = 2 query heads sharing Hkv = 1 kv head, D = 3: softmax over one key is 1.
        float[] q = {1, 2, 3, -4, 5, -6};
        float[] k = {0.5f, -1, 2};
        float[] v = {7, -8, 9};
        float[] out = new float[6];
        ref.attention(q, k, v, 1, 1, 2, 1, 3, out);
        assertArrayEquals(new float[] {7, -8, 9, 7, -8, 9}, out);
    }

    @Test
    void twoTokenCausalAttentionByHand() {
        // D = 2, scale 1/√2. Token 0 sees only key 0 → v0. Token 1: s0 = q1·k0/√2 = 0,
        // s1 = q1·k1/√2 = ln 3 → weights 1/4, 3/4 → out1 = v0/4 + 3·v1/4 = [7, 2].
        float[] q = {5, -5, (float) (Math.sqrt(2) * Math.log(3)), 0};
        float[] k = {0, 0, 1, 0};
        float[] v = {4, 8, 8, 0};
        float[] out = new float[4];
        ref.attention(q, k, v, 2, 2, 1, 1, 2, out);
        assertArrayEquals(new float[] {4, 8, 7, 2}, out, 1e-5f);
        // The same last query alone against both cached keys (Tq = 1, Tk = 2) sits at position 1.
        float[] last = new float[2];
        ref.attention(new float[] {q[2], q[3]}, k, v, 1, 2, 1, 1, 2, last);
        assertArrayEquals(new float[] {7, 2}, last, 1e-5f);
    }

    @Test
    void swigluByHand() {
        float[] out = new float[3];
        ref.swiglu(new float[] {0, 1, -2}, new float[] {5, 2, 3}, 3, out);
        assertEquals(0, out[0], 0);
        assertEquals(2 / (1 + Math.exp(-1)), out[1], 1e-6);
        assertEquals(3 * -2 / (1 + Math.exp(2)), out[2], 1e-6);
    }
}
