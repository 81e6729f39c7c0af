package dev.shrink.kernels.cpu;

import static dev.shrink.kernels.cpu.Close.assertClose;
import static dev.shrink.kernels.cpu.Close.nans;
import static dev.shrink.kernels.cpu.Close.random;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.stream.Stream;
import jdk.incubator.vector.FloatVector;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Every op of {@link VectorOps} against {@link ReferenceOps} on fresh seeded random inputs, in odd
 * and typical shapes (1, 7, 17, 64, 172, 384, remainders of the vector width and of the GEMM
 * tiles and blocks). Outputs an op must overwrite are filled with NaN first.
 * Bound: |fast − ref| ≤ atol + rtol·|ref|, atol = 1e-4·sqrt(length of the sum), rtol = 1e-4.
 */
class VectorOpsConformanceTest {
    private static final double RTOL = 1e-4;
    private static final int LANES = FloatVector.SPECIES_PREFERRED.length();

    private static final ReferenceOps REF = new ReferenceOps();
    private static VectorOps one;
    private static VectorOps two;
    /** Both register tiles, whichever this CPU's VectorOps uses: 4 × 2 (AVX2) and 8 × 2 (AVX-512) vectors. */
    private static Sgemm tile4;
    private static Sgemm tile8;

    @BeforeAll
    static void backends() {
        one = new VectorOps(1);
        two = new VectorOps(2);
        WorkerPool pool = new WorkerPool(2);
        tile4 = new Sgemm(pool, 4);
        tile8 = new Sgemm(pool, 8);
    }

    @AfterAll
    static void release() {
        one = null;
        two = null;
        tile4 = null;
        tile8 = null;
    }

    private static double atol(int sumLength) {
        return 1e-4 * Math.sqrt(Math.max(1, sumLength));
    }

    // ---------------------------------------------------------------- gemm

    /** M, N, K: tiny, vector-width remainders, tile/block edges (MR, NR, MC, KC, NC) and model shapes. */
    static Stream<Arguments> gemmShapes() {
        int[][] shapes = {
            {1, 1, 1}, {1, 7, 17}, {7, 1, 5}, {7, 17, 5}, {17, 7, 64}, {5, 300, 3},
            {LANES - 1, LANES + 1, LANES}, {9, Sgemm.NR + 1, 2 * LANES + 3},
            {64, 64, 64}, {512, 172, 64}, {33, 100, 384}, {Sgemm.MC + 5, 2 * Sgemm.NR - 1, 385},
            {150, 90, 600}, {3, Sgemm.NC + 20, 9}, {131, 129, 1031},
        };
        List<Arguments> out = new ArrayList<>();
        for (int[] s : shapes) {
            for (int t = 0; t < 4; t++) {
                out.add(Arguments.of(s[0], s[1], s[2], (t & 2) != 0, (t & 1) != 0));
            }
        }
        return out.stream();
    }

    /**
     * All four transposes with padded leading dims and non-zero offsets, three alpha/beta pairs
     * (beta = 0 over a NaN-filled C), on 1 and 2 threads and with both register tiles. Padding of C
     * around the [M, N] window must stay untouched. Every C element is the same FMA chain however
     * the work is cut, so thread counts and tile heights must give bit-identical C.
     */
    @ParameterizedTest(name = "M={0} N={1} K={2} transA={3} transB={4}")
    @MethodSource("gemmShapes")
    void gemmMatchesReference(int M, int N, int K, boolean transA, boolean transB) {
        Random rnd = new Random(31L * M + 17L * N + K + (transA ? 5 : 0) + (transB ? 7 : 0));
        int aRows = transA ? K : M, aCols = transA ? M : K;
        int bRows = transB ? N : K, bCols = transB ? K : N;
        int lda = aCols + 3, ldb = bCols + 5, ldc = N + 2;
        int aOff = 7, bOff = 3, cOff = 11;
        float[] a = random(rnd, aOff + aRows * lda, 1f);
        float[] b = random(rnd, bOff + bRows * ldb, 1f);
        float[][] alphaBeta = {{1f, 0f}, {0.75f, -1.5f}, {-2f, 1f}};
        for (float[] ab : alphaBeta) {
            float alpha = ab[0], beta = ab[1];
            float[] c0 = new float[cOff + M * ldc + 4];
            java.util.Arrays.fill(c0, 12345f); // padding that nobody may touch
            for (int i = 0; i < M; i++) {
                for (int j = 0; j < N; j++) {
                    c0[cOff + i * ldc + j] = beta == 0f ? Float.NaN : rnd.nextFloat() * 2 - 1;
                }
            }
            float[] expected = c0.clone();
            REF.gemm(transA, transB, M, N, K, alpha, a, aOff, lda, b, bOff, ldb, beta, expected, cOff, ldc);
            float[] got1 = c0.clone();
            one.gemm(transA, transB, M, N, K, alpha, a, aOff, lda, b, bOff, ldb, beta, got1, cOff, ldc);
            float[] got2 = c0.clone();
            two.gemm(transA, transB, M, N, K, alpha, a, aOff, lda, b, bOff, ldb, beta, got2, cOff, ldc);

            float[] got4 = c0.clone();
            tile4.gemm(transA, transB, M, N, K, alpha, a, aOff, lda, b, bOff, ldb, beta, got4, cOff, ldc);
            float[] got8 = c0.clone();
            tile8.gemm(transA, transB, M, N, K, alpha, a, aOff, lda, b, bOff, ldb, beta, got8, cOff, ldc);

            String what = "gemm alpha=" + alpha + " beta=" + beta;
            double atol = atol(K) * Math.max(1, Math.abs(alpha));
            assertClose(what + " (1 thread)", expected, got1, atol, RTOL);
            assertClose(what + " (8-row tile)", expected, got8, atol, RTOL);
            assertArrayEquals(got1, got2, what + ": 1 and 2 threads differ");
            assertArrayEquals(got4, got8, what + ": 4- and 8-row tiles differ");
            assertArrayEquals(got1, got4, what + ": VectorOps and the 4-row tile differ");
        }
    }

    @Test
    void gemmWithKZeroScalesC() {
        float[] c = {1, 2, Float.NaN, 4};
        one.gemm(false, false, 2, 2, 0, 1f, new float[0], 0, 1, new float[2], 0, 2, 0.5f, c, 0, 2);
        assertTrue(Float.isNaN(c[2]), "beta != 0 keeps NaN");
        assertEquals(0.5f, c[0]);
        one.gemm(false, false, 2, 2, 0, 1f, new float[0], 0, 1, new float[2], 0, 2, 0f, c, 0, 2);
        assertArrayEquals(new float[4], c);
    }

    @Test
    void gemmIsRepeatableAcrossThreadCounts() {
        // A size that splits into several regions, K in several blocks with a short last one.
        int M = 301, N = 517, K = 777;
        Random rnd = new Random(5);
        float[] a = random(rnd, M * K, 1f), b = random(rnd, N * K, 1f);
        float[] c1 = nans(M * N), c2 = nans(M * N), c3 = nans(M * N);
        one.gemm(false, true, M, N, K, 1f, a, 0, K, b, 0, K, 0f, c1, 0, N);
        two.gemm(false, true, M, N, K, 1f, a, 0, K, b, 0, K, 0f, c2, 0, N);
        new VectorOps(3).gemm(false, true, M, N, K, 1f, a, 0, K, b, 0, K, 0f, c3, 0, N);
        assertArrayEquals(c1, c2);
        assertArrayEquals(c1, c3);
        float[] expected = new float[M * N];
        REF.gemm(false, true, M, N, K, 1f, a, 0, K, b, 0, K, 0f, expected, 0, N);
        assertClose("gemm 301x517x777", expected, c1, atol(K), RTOL);
    }

    @Test
    void linearIsGemmWithTransposedWeights() {
        int M = 9, K = 384, N = 172;
        Random rnd = new Random(8);
        float[] x = random(rnd, M * K, 1f), w = random(rnd, N * K, 1f);
        float[] expected = nans(M * N), got = nans(M * N);
        REF.linear(x, M, K, w, N, expected);
        two.linear(x, M, K, w, N, got);
        assertClose("linear", expected, got, atol(K), RTOL);
    }

    @Test
    void gemmChecksArguments() {
        float[] c = new float[4];
        assertThrows(IllegalArgumentException.class,
                () -> one.gemm(false, false, 2, 2, 2, 1f, new float[3], 0, 2, new float[4], 0, 2, 0f, c, 0, 2));
        assertThrows(IllegalArgumentException.class,
                () -> one.gemm(false, true, 2, 2, 2, 1f, new float[4], 0, 2, new float[4], 0, 1, 0f, c, 0, 2));
        assertThrows(IllegalArgumentException.class,
                () -> one.gemm(false, false, -1, 2, 2, 1f, new float[4], 0, 2, new float[4], 0, 2, 0f, c, 0, 2));
    }

    @Test
    void elementwiseOpsAndAttentionDoNotDependOnThreadCount() {
        Random rnd = new Random(21);
        VectorOps three = new VectorOps(3);
        int n = 100_003;
        float[] gate = random(rnd, n, 10f), up = random(rnd, n, 1f);
        int M = 64, C = 2048;
        float[] x = random(rnd, M * C, 3f), w = random(rnd, C, 1f);
        int[] targets = new int[M];
        int T = 130, H = 6, Hkv = 2, D = 64;
        float[] q = random(rnd, T * H * D, 1f), k = random(rnd, T * Hkv * D, 1f), v = random(rnd, T * Hkv * D, 1f);
        List<float[]> results = new ArrayList<>();
        for (VectorOps ops : List.of(one, two, three)) {
            float[] s = nans(n), y = nans(M * C), att = nans(T * H * D);
            double[] nll = new double[M];
            ops.swiglu(gate, up, n, s);
            ops.rmsNorm(x, w, 1e-5f, M, C, y);
            ops.crossEntropy(x, M, C, targets, nll);
            ops.attention(q, k, v, T, T, H, Hkv, D, att);
            float[] nllAsFloats = new float[M];
            for (int m = 0; m < M; m++) {
                nllAsFloats[m] = (float) nll[m];
            }
            results.add(concat(s, y, att, nllAsFloats));
        }
        assertArrayEquals(results.get(0), results.get(1), "1 vs 2 threads");
        assertArrayEquals(results.get(0), results.get(2), "1 vs 3 threads");
    }

    private static float[] concat(float[]... parts) {
        int total = 0;
        for (float[] p : parts) {
            total += p.length;
        }
        float[] all = new float[total];
        int at = 0;
        for (float[] p : parts) {
            System.arraycopy(p, 0, all, at, p.length);
            at += p.length;
        }
        return all;
    }

    // ---------------------------------------------------------------- rmsNorm

    @ParameterizedTest(name = "M={0} C={1}")
    @MethodSource("rowShapes")
    void rmsNormMatchesReference(int M, int C) {
        Random rnd = new Random(M * 1000L + C);
        float[] x = random(rnd, M * C, 3f), w = random(rnd, C, 2f);
        for (float eps : new float[] {1e-6f, 1e-5f, 0.5f}) {
            float[] expected = nans(M * C);
            REF.rmsNorm(x, w, eps, M, C, expected);
            for (VectorOps ops : List.of(one, two)) {
                float[] y = nans(M * C);
                ops.rmsNorm(x, w, eps, M, C, y);
                assertClose("rmsNorm eps=" + eps + " threads=" + ops.threads(), expected, y, atol(C), RTOL);
                float[] inPlace = x.clone(); // y may be x
                ops.rmsNorm(inPlace, w, eps, M, C, inPlace);
                assertClose("rmsNorm in place", expected, inPlace, atol(C), RTOL);
            }
        }
    }

    static Stream<Arguments> rowShapes() {
        return Stream.of(Arguments.of(1, 1), Arguments.of(3, 7), Arguments.of(5, 17), Arguments.of(4, 64),
                Arguments.of(2, LANES + 1), Arguments.of(7, 384), Arguments.of(3, 1000), Arguments.of(64, 2048));
    }

    // ---------------------------------------------------------------- rope

    @ParameterizedTest(name = "T={0} heads={1} D={2}")
    @MethodSource("ropeShapes")
    void ropeMatchesReference(int T, int heads, int D) {
        int maxPos = 3 * T + 5, half = D / 2;
        float[] cos = new float[maxPos * half], sin = new float[maxPos * half];
        for (int pos = 0; pos < maxPos; pos++) {
            for (int i = 0; i < half; i++) {
                double angle = pos * Math.pow(10000, -2.0 * i / D);
                cos[pos * half + i] = (float) Math.cos(angle);
                sin[pos * half + i] = (float) Math.sin(angle);
            }
        }
        Random rnd = new Random(T * 7919L + heads * 31L + D);
        int[] positions = new int[T];
        for (int t = 0; t < T; t++) {
            positions[t] = rnd.nextInt(maxPos);
        }
        float[] x = random(rnd, T * heads * D, 2f);
        float[] expected = x.clone();
        REF.rope(expected, T, heads, D, positions, cos, sin);
        for (VectorOps ops : List.of(one, two)) {
            float[] got = x.clone();
            ops.rope(got, T, heads, D, positions, cos, sin);
            assertClose("rope threads=" + ops.threads(), expected, got, 1e-5, RTOL);
        }
    }

    static Stream<Arguments> ropeShapes() {
        return Stream.of(Arguments.of(1, 1, 2), Arguments.of(4, 2, 2), Arguments.of(3, 2, 8), Arguments.of(3, 1, 18),
                Arguments.of(5, 3, 64), Arguments.of(2, 1, 128), Arguments.of(7, 2, 2 * LANES + 2),
                Arguments.of(300, 6, 64));
    }

    @Test
    void ropeRejectsPositionsPastTheTable() {
        float[] table = new float[4]; // maxPos = 2 for D = 4
        assertThrows(IllegalArgumentException.class,
                () -> one.rope(new float[4], 1, 1, 4, new int[] {2}, table, table));
    }

    // ---------------------------------------------------------------- attention

    @ParameterizedTest(name = "Tq={0} Tk={1} H={2} Hkv={3} D={4}")
    @MethodSource("attentionShapes")
    void attentionMatchesReference(int Tq, int Tk, int H, int Hkv, int D) {
        Random rnd = new Random(Tq * 131L + Tk * 17L + H * 7L + Hkv * 3L + D);
        float[] q = random(rnd, Tq * H * D, 1.5f);
        float[] k = random(rnd, Tk * Hkv * D, 1.5f);
        float[] v = random(rnd, Tk * Hkv * D, 1f);
        float[] expected = nans(Tq * H * D);
        REF.attention(q, k, v, Tq, Tk, H, Hkv, D, expected);
        for (VectorOps ops : List.of(one, two)) {
            float[] out = nans(Tq * H * D);
            ops.attention(q, k, v, Tq, Tk, H, Hkv, D, out);
            assertClose("attention threads=" + ops.threads(), expected, out, atol(D), RTOL);
        }
    }

    static Stream<Arguments> attentionShapes() {
        return Stream.of(
                Arguments.of(1, 1, 1, 1, 8), Arguments.of(7, 7, 4, 2, 8), Arguments.of(17, 17, 6, 6, 64),
                Arguments.of(5, 20, 4, 1, 64), Arguments.of(1, 33, 2, 2, 64), Arguments.of(33, 33, 2, 1, 128),
                Arguments.of(9, 9, 3, 3, 7), Arguments.of(40, 40, 2, 2, 17), Arguments.of(3, 3, 1, 1, 1),
                Arguments.of(12, 12, 2, 1, LANES + 3), Arguments.of(130, 130, 6, 2, 64),
                Arguments.of(70, 100, 4, 2, 32), Arguments.of(2, 400, 2, 2, 128));
    }

    /**
     * A decoding step (one query, the KV heads' query heads batched, V read in place) gives the bits
     * of the last row of the whole sequence's attention, on 1 and 2 threads: keys past one Sgemm K
     * block, head dims that are not a multiple of the vector width, a sliding window, a soft-cap.
     */
    @ParameterizedTest(name = "Tk={0} H={1} Hkv={2} D={3} window={4} cap={5}")
    @MethodSource("decodeShapes")
    void decodeStepIsTheLastRowOfTheSequence(int Tk, int H, int Hkv, int D, int window, float cap) {
        Random rnd = new Random(Tk * 31L + H * 7L + D);
        float[] q = random(rnd, Tk * H * D, 1.5f);
        float[] k = random(rnd, Tk * Hkv * D, 1.5f);
        float[] v = random(rnd, Tk * Hkv * D, 1f);
        double scale = 1.0 / Math.sqrt(D) * (cap > 0 ? 3 : 1);
        float[] all = nans(Tk * H * D);
        one.attention(q, k, v, Tk, Tk, H, Hkv, D, window, scale, cap, all);
        float[] last = java.util.Arrays.copyOfRange(all, (Tk - 1) * H * D, Tk * H * D);
        float[] lastQ = java.util.Arrays.copyOfRange(q, (Tk - 1) * H * D, Tk * H * D);
        for (VectorOps ops : List.of(one, two)) {
            float[] out = nans(H * D);
            ops.attention(lastQ, k, v, 1, Tk, H, Hkv, D, window, scale, cap, out);
            assertArrayEquals(last, out, "threads=" + ops.threads());
        }
    }

    static Stream<Arguments> decodeShapes() {
        return Stream.of(
                Arguments.of(1, 1, 1, 8, 0, 0f), Arguments.of(33, 6, 2, 64, 0, 0f), Arguments.of(400, 6, 2, 64, 0, 0f),
                Arguments.of(500, 4, 1, LANES + 3, 0, 0f), Arguments.of(900, 2, 2, 4 * LANES + 5, 0, 0f),
                Arguments.of(200, 8, 2, 128, 50, 0f), Arguments.of(130, 4, 4, 32, 0, 20f));
    }

    @Test
    void attentionIsCausal() {
        // Changing a later key/value must not change earlier outputs.
        int T = 10, H = 2, D = 16;
        Random rnd = new Random(3);
        float[] q = random(rnd, T * H * D, 1f), k = random(rnd, T * H * D, 1f), v = random(rnd, T * H * D, 1f);
        float[] out = new float[T * H * D], out2 = new float[T * H * D];
        two.attention(q, k, v, T, T, H, H, D, out);
        for (int d = 0; d < H * D; d++) { // perturb the last token's key and value
            k[(T - 1) * H * D + d] += 5;
            v[(T - 1) * H * D + d] -= 5;
        }
        two.attention(q, k, v, T, T, H, H, D, out2);
        int earlier = (T - 1) * H * D;
        assertArrayEquals(java.util.Arrays.copyOf(out, earlier), java.util.Arrays.copyOf(out2, earlier));
        assertTrue(out[earlier] != out2[earlier], "the last token sees its own key");
    }

    // ---------------------------------------------------------------- swiglu

    @ParameterizedTest(name = "n={0}")
    @MethodSource("lengths")
    void swigluMatchesReference(int n) {
        Random rnd = new Random(n);
        float[] gate = random(rnd, n, 12f), up = random(rnd, n, 2f);
        if (n > 2) {
            gate[0] = 100f; // exp(−g) underflows
            gate[1] = -100f; // exp(−g) overflows: silu → −0
        }
        float[] expected = nans(n);
        REF.swiglu(gate, up, n, expected);
        for (VectorOps ops : List.of(one, two)) {
            float[] out = nans(n);
            ops.swiglu(gate, up, n, out);
            assertClose("swiglu threads=" + ops.threads(), expected, out, 1e-6, RTOL);
            float[] aliased = gate.clone(); // out may alias gate
            ops.swiglu(aliased, up, n, aliased);
            assertClose("swiglu in place", expected, aliased, 1e-6, RTOL);
        }
    }

    static Stream<Arguments> lengths() {
        return Stream.of(0, 1, 7, 17, 64, LANES - 1, 3 * LANES + 1, 1000, 100_003).map(Arguments::of);
    }

    // ---------------------------------------------------------------- crossEntropy

    @ParameterizedTest(name = "M={0} V={1}")
    @MethodSource("rowShapes")
    void crossEntropyMatchesReference(int M, int V) {
        Random rnd = new Random(M * 31L + V);
        float[] logits = random(rnd, M * V, 8f);
        int[] targets = new int[M];
        for (int m = 0; m < M; m++) {
            targets[m] = rnd.nextInt(V);
        }
        double[] expected = new double[M];
        REF.crossEntropy(logits, M, V, targets, expected);
        for (VectorOps ops : List.of(one, two)) {
            double[] nll = new double[M];
            java.util.Arrays.fill(nll, Double.NaN);
            ops.crossEntropy(logits, M, V, targets, nll);
            Close.assertClose("crossEntropy threads=" + ops.threads(), expected, nll, M, 1e-4, RTOL);
        }
    }

    @Test
    void crossEntropyOfLargeVocabulary() {
        int M = 3, V = 32_000;
        Random rnd = new Random(11);
        float[] logits = random(rnd, M * V, 20f);
        int[] targets = {0, V - 1, 12345};
        double[] expected = new double[M], nll = new double[M];
        REF.crossEntropy(logits, M, V, targets, expected);
        two.crossEntropy(logits, M, V, targets, nll);
        Close.assertClose("crossEntropy V=32000", expected, nll, M, 1e-4, RTOL);
    }

    @Test
    void crossEntropyRejectsTargetOutsideVocabulary() {
        assertThrows(IllegalArgumentException.class,
                () -> one.crossEntropy(new float[4], 2, 2, new int[] {0, 2}, new double[2]));
    }
}
