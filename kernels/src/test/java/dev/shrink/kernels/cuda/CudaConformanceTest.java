package dev.shrink.kernels.cuda;

import static dev.shrink.kernels.cpu.Close.nans;
import static dev.shrink.kernels.cpu.Close.random;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.shrink.kernels.cpu.ReferenceOps;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.TreeMap;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The parity suite: every op of {@link CudaOps} against {@link ReferenceOps} (the spec, summing in
 * double) on fresh random inputs of odd and typical shapes, with every output poisoned with NaN
 * before each run, on the host and on the device ({@link CudaOps#poisonOutputs}), so an element a
 * kernel does not write fails. The inputs are new each run (seed printed, and settable with
 * -Dshrink.cuda.seed=S to replay one).
 *
 * <p>Bound per element: |cuda − ref| ≤ atol + rtol·|ref|; all ops are float32 (the only dtype of
 * Ops today), rtol = 1e-4, atol by op: gemm 1e-4·sqrt(K)·max(1, |alpha|) (this fails TF32, whose
 * errors are ~1e-3·sqrt(K)), attention 1e-4·sqrt(D), rmsNorm and rope 1e-5, swiglu 1e-6,
 * crossEntropy 1e-4. The worst error per op, as a share of its bound, is printed at the end.
 *
 * <p>Without a GPU (as in CI) the class is skipped with the reason, e.g. "no CUDA device: CUDA
 * not available: libcuda.so.1, libcuda.so not found".
 */
class CudaConformanceTest {
    private static final long SEED = Long.getLong("shrink.cuda.seed", System.nanoTime());
    private static final double RTOL = 1e-4;
    private static final ReferenceOps REF = new ReferenceOps();
    /** Worst |diff| / (atol + rtol·|ref|) per op over the run. */
    private static final Map<String, Double> WORST = new TreeMap<>();

    private static CudaOps cuda;
    private static String skipReason;

    @BeforeAll
    static void open() {
        Cuda.Availability a = Cuda.availability();
        if (!a.available()) {
            // every test is reported skipped with this reason (an assumption in @BeforeAll
            // would hide the whole class from the test report)
            skipReason = "no CUDA device: " + a.reason();
            System.out.println("CudaConformanceTest skipped: " + skipReason);
            return;
        }
        cuda = CudaOps.open(0);
        cuda.poisonOutputs(true);
        System.out.println("CudaConformanceTest: " + cuda.name() + ", seed " + SEED);
    }

    @BeforeEach
    void needsCuda() {
        assumeTrue(cuda != null, skipReason);
    }

    @AfterAll
    static void close() {
        if (cuda != null) {
            synchronized (WORST) {
                WORST.forEach((op, r) -> System.out.printf("parity %-13s worst error %.4f of its bound%n", op, r));
            }
            cuda.close();
            cuda = null;
        }
    }

    private static Random rnd(long salt) {
        return new Random(SEED * 0x9E3779B97F4A7C15L + salt);
    }

    private static double atol(int sumLength) {
        return 1e-4 * Math.sqrt(Math.max(1, sumLength));
    }

    /** Fails at the first element not within atol + rtol·|expected|; records the worst ratio of op. */
    private static void check(String op, String what, double[] expected, double[] actual, int off, int n,
                              double atol, double rtol) {
        double worst = 0;
        for (int i = off; i < off + n; i++) {
            double e = expected[i], a = actual[i];
            double bound = atol + rtol * Math.abs(e);
            if (!Double.isFinite(a) || !(Math.abs(a - e) <= bound)) {
                fail(String.format("%s %s (seed %d): element %d is %s, expected %s (|diff| %.3g > %.3g)",
                        op, what, SEED, i, a, e, Math.abs(a - e), bound));
            }
            worst = Math.max(worst, Math.abs(a - e) / bound);
        }
        synchronized (WORST) {
            WORST.merge(op, worst, Math::max);
        }
    }

    private static void check(String op, String what, float[] expected, float[] actual, double atol, double rtol) {
        assertEquals(expected.length, actual.length, op + " " + what + ": lengths");
        check(op, what, toDouble(expected), toDouble(actual), 0, expected.length, atol, rtol);
    }

    private static double[] toDouble(float[] a) {
        double[] d = new double[a.length];
        for (int i = 0; i < a.length; i++) {
            d[i] = a[i];
        }
        return d;
    }

    @Test
    void nameSaysWhichGpu() {
        assertTrue(cuda.name().matches("cuda \\(.+, sm_\\d+\\)"), cuda.name());
        assertTrue(cuda.device().totalMemory() > 0);
    }

    // ---------------------------------------------------------------- gemm

    static Stream<Arguments> gemmShapes() {
        int[][] shapes = {
            {1, 1, 1}, {1, 7, 17}, {7, 1, 5}, {17, 7, 64}, {5, 300, 3}, {64, 64, 64}, {33, 100, 384},
            {131, 129, 1031}, {512, 172, 64}, {1, 4096, 384}, {300, 1, 513}, {256, 384, 1024},
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
     * All four transposes, padded leading dims and offsets, three alpha/beta pairs (beta = 0 over
     * a NaN C); the padding around C's [M, N] window must come back untouched.
     */
    @ParameterizedTest(name = "M={0} N={1} K={2} transA={3} transB={4}")
    @MethodSource("gemmShapes")
    void gemmMatchesReference(int M, int N, int K, boolean transA, boolean transB) {
        Random rnd = rnd(31L * M + 17L * N + K + (transA ? 5 : 0) + (transB ? 7 : 0));
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
            Arrays.fill(c0, 12345f); // padding that nobody may touch
            for (int i = 0; i < M; i++) {
                for (int j = 0; j < N; j++) {
                    c0[cOff + i * ldc + j] = beta == 0f ? Float.NaN : rnd.nextFloat() * 2 - 1;
                }
            }
            float[] expected = c0.clone();
            REF.gemm(transA, transB, M, N, K, alpha, a, aOff, lda, b, bOff, ldb, beta, expected, cOff, ldc);
            float[] got = c0.clone();
            cuda.gemm(transA, transB, M, N, K, alpha, a, aOff, lda, b, bOff, ldb, beta, got, cOff, ldc);
            check("gemm", "M=" + M + " N=" + N + " K=" + K + " tA=" + transA + " tB=" + transB + " alpha=" + alpha
                    + " beta=" + beta, expected, got, atol(K) * Math.max(1, Math.abs(alpha)), RTOL);
        }
    }

    @Test
    void gemmWithKZeroScalesC() {
        float[] c = {1, 2, Float.NaN, 4};
        cuda.gemm(false, false, 2, 2, 0, 1f, new float[0], 0, 1, new float[2], 0, 2, 0.5f, c, 0, 2);
        assertTrue(Float.isNaN(c[2]), "beta != 0 keeps NaN");
        assertEquals(0.5f, c[0]);
        cuda.gemm(false, false, 2, 2, 0, 1f, new float[0], 0, 1, new float[2], 0, 2, 0f, c, 0, 2);
        assertEquals(List.of(0f, 0f, 0f, 0f), List.of(c[0], c[1], c[2], c[3]));
    }

    /** Buffers kept from a large call must not leak into a smaller one, nor the reverse. */
    @Test
    void buffersAreReusedAcrossSizes() {
        int[][] sizes = {{300, 200, 500}, {3, 5, 7}, {301, 203, 509}, {1, 1, 1}};
        for (int[] s : sizes) {
            int M = s[0], N = s[1], K = s[2];
            Random rnd = rnd(M + 7L * N + 13L * K);
            float[] x = random(rnd, M * K, 1f), w = random(rnd, N * K, 1f);
            float[] expected = nans(M * N), got = nans(M * N);
            REF.linear(x, M, K, w, N, expected);
            cuda.linear(x, M, K, w, N, got);
            check("gemm", "linear " + M + "x" + N + "x" + K, expected, got, atol(K), RTOL);
        }
    }

    /**
     * Host↔device copies of slices of Java arrays (heap segments through critical downcalls):
     * odd sizes, offsets on both sides, bit-exact, nothing written outside the slice.
     */
    @Test
    void copiesOfArraySlicesRoundTrip() {
        CudaDevice dev = cuda.device();
        for (int n : new int[] {1, 7, 1000, (2 << 20) + 3, 5_000_011}) {
            Random rnd = rnd(n);
            float[] src = random(rnd, n + 10, 1f);
            try (DeviceBuffer d = dev.alloc(4L * n + 64)) {
                dev.upload(java.lang.foreign.MemorySegment.ofArray(src).asSlice(4 * 5, 4L * n), d, 16);
                float[] back = nans(n + 3);
                dev.download(d, 16, java.lang.foreign.MemorySegment.ofArray(back).asSlice(4 * 2, 4L * n));
                for (int i = 0; i < n; i++) {
                    if (Float.floatToRawIntBits(back[i + 2]) != Float.floatToRawIntBits(src[i + 5])) {
                        fail("copy of " + n + " floats: element " + i + " differs");
                    }
                }
                assertTrue(Float.isNaN(back[0]) && Float.isNaN(back[1]) && Float.isNaN(back[n + 2]),
                        "nothing written outside the slice");
            }
        }
    }

    /** Ops on arrays of tens of MB (the gemm's A and C, all three of swiglu's). */
    @Test
    void opsOnLargeArrays() {
        int M = 8200, K = 260, N = 260;
        Random rnd = rnd(8200);
        float[] x = random(rnd, M * K, 1f), w = random(rnd, N * K, 1f);
        float[] expected = nans(M * N), got = nans(M * N);
        REF.linear(x, M, K, w, N, expected);
        cuda.linear(x, M, K, w, N, got);
        check("gemm", "linear 8200x260x260", expected, got, atol(K), RTOL);
        int n = 5_300_017;
        float[] gate = random(rnd, n, 12f), up = random(rnd, n, 2f);
        float[] ref = nans(n), out = nans(n);
        REF.swiglu(gate, up, n, ref);
        cuda.swiglu(gate, up, n, out);
        check("swiglu", "n=" + n, ref, out, 1e-6, RTOL);
    }

    @Test
    void argumentsAreCheckedAsOnTheCpu() {
        float[] c = new float[4];
        assertThrows(IllegalArgumentException.class,
                () -> cuda.gemm(false, false, 2, 2, 2, 1f, new float[3], 0, 2, new float[4], 0, 2, 0f, c, 0, 2));
        assertThrows(IllegalArgumentException.class,
                () -> cuda.gemm(false, true, 2, 2, 2, 1f, new float[4], 0, 2, new float[4], 0, 1, 0f, c, 0, 2));
        float[] table = new float[4]; // maxPos = 2 for D = 4
        assertThrows(IllegalArgumentException.class,
                () -> cuda.rope(new float[4], 1, 1, 4, new int[] {2}, table, table));
        assertThrows(IllegalArgumentException.class,
                () -> cuda.crossEntropy(new float[4], 2, 2, new int[] {0, 2}, new double[2]));
        assertThrows(IllegalArgumentException.class,
                () -> cuda.attention(new float[8], new float[8], new float[8], 1, 1, 3, 2, 4, new float[8]));
    }

    // ---------------------------------------------------------------- rmsNorm

    static Stream<Arguments> rowShapes() {
        return Stream.of(Arguments.of(1, 1), Arguments.of(3, 7), Arguments.of(5, 17), Arguments.of(4, 64),
                Arguments.of(7, 384), Arguments.of(3, 1000), Arguments.of(64, 2048), Arguments.of(2, 5003),
                Arguments.of(1000, 33));
    }

    @ParameterizedTest(name = "M={0} C={1}")
    @MethodSource("rowShapes")
    void rmsNormMatchesReference(int M, int C) {
        Random rnd = rnd(M * 1000L + C);
        float[] x = random(rnd, M * C, 3f), w = random(rnd, C, 2f);
        for (float eps : new float[] {1e-6f, 1e-5f, 0.5f}) {
            float[] expected = nans(M * C);
            REF.rmsNorm(x, w, eps, M, C, expected);
            float[] y = nans(M * C);
            cuda.rmsNorm(x, w, eps, M, C, y);
            check("rmsNorm", "M=" + M + " C=" + C + " eps=" + eps, expected, y, 1e-5, RTOL);
            float[] inPlace = x.clone(); // y may be x
            cuda.rmsNorm(inPlace, w, eps, M, C, inPlace);
            check("rmsNorm", "in place M=" + M + " C=" + C, expected, inPlace, 1e-5, RTOL);
        }
    }

    // ---------------------------------------------------------------- rope

    static Stream<Arguments> ropeShapes() {
        return Stream.of(Arguments.of(1, 1, 2), Arguments.of(4, 2, 2), Arguments.of(3, 2, 8), Arguments.of(3, 1, 18),
                Arguments.of(5, 3, 64), Arguments.of(2, 1, 128), Arguments.of(7, 2, 34), Arguments.of(300, 6, 64),
                Arguments.of(17, 32, 128));
    }

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
        Random rnd = rnd(T * 7919L + heads * 31L + D);
        int[] positions = new int[T];
        for (int t = 0; t < T; t++) {
            positions[t] = rnd.nextInt(maxPos);
        }
        float[] x = random(rnd, T * heads * D, 2f);
        float[] expected = x.clone();
        REF.rope(expected, T, heads, D, positions, cos, sin);
        float[] got = x.clone();
        cuda.rope(got, T, heads, D, positions, cos, sin);
        check("rope", "T=" + T + " heads=" + heads + " D=" + D, expected, got, 1e-5, RTOL);
    }

    // ---------------------------------------------------------------- attention

    static Stream<Arguments> attentionShapes() {
        return Stream.of(
                Arguments.of(1, 1, 1, 1, 8), Arguments.of(7, 7, 4, 2, 8), Arguments.of(17, 17, 6, 6, 64),
                Arguments.of(5, 20, 4, 1, 64), Arguments.of(1, 33, 2, 2, 64), Arguments.of(33, 33, 2, 1, 128),
                Arguments.of(9, 9, 3, 3, 7), Arguments.of(40, 40, 2, 2, 17), Arguments.of(3, 3, 1, 1, 1),
                Arguments.of(130, 130, 6, 2, 64), Arguments.of(70, 100, 4, 2, 32), Arguments.of(2, 400, 2, 2, 128),
                Arguments.of(600, 600, 8, 2, 64), Arguments.of(1, 700, 32, 8, 128), Arguments.of(45, 45, 4, 4, 256),
                Arguments.of(20, 20, 2, 1, 3));
    }

    @ParameterizedTest(name = "Tq={0} Tk={1} H={2} Hkv={3} D={4}")
    @MethodSource("attentionShapes")
    void attentionMatchesReference(int Tq, int Tk, int H, int Hkv, int D) {
        Random rnd = rnd(Tq * 131L + Tk * 17L + H * 7L + Hkv * 3L + D);
        float[] q = random(rnd, Tq * H * D, 1.5f);
        float[] k = random(rnd, Tk * Hkv * D, 1.5f);
        float[] v = random(rnd, Tk * Hkv * D, 1f);
        float[] expected = nans(Tq * H * D);
        REF.attention(q, k, v, Tq, Tk, H, Hkv, D, expected);
        float[] out = nans(Tq * H * D);
        cuda.attention(q, k, v, Tq, Tk, H, Hkv, D, out);
        check("attention", "Tq=" + Tq + " Tk=" + Tk + " H=" + H + " Hkv=" + Hkv + " D=" + D, expected, out,
                atol(D), RTOL);
        for (int window : new int[] {1, 3, 33, Tk}) { // sliding windows: the reference masks by definition
            REF.attention(q, k, v, Tq, Tk, H, Hkv, D, window, expected);
            float[] w = nans(Tq * H * D);
            cuda.attention(q, k, v, Tq, Tk, H, Hkv, D, window, w);
            check("attention", "window " + window + " Tq=" + Tq + " Tk=" + Tk + " H=" + H + " Hkv=" + Hkv + " D=" + D,
                    expected, w, atol(D), RTOL);
        }
    }

    /** Changing a later key/value must not change earlier outputs. */
    @Test
    void attentionIsCausal() {
        int T = 50, H = 2, D = 16;
        Random rnd = rnd(3);
        float[] q = random(rnd, T * H * D, 1f), k = random(rnd, T * H * D, 1f), v = random(rnd, T * H * D, 1f);
        float[] out = nans(T * H * D), out2 = nans(T * H * D);
        cuda.attention(q, k, v, T, T, H, H, D, out);
        for (int d = 0; d < H * D; d++) { // perturb the last token's key and value
            k[(T - 1) * H * D + d] += 5;
            v[(T - 1) * H * D + d] -= 5;
        }
        cuda.attention(q, k, v, T, T, H, H, D, out2);
        int earlier = (T - 1) * H * D;
        assertTrue(Arrays.equals(Arrays.copyOf(out, earlier), Arrays.copyOf(out2, earlier)), "earlier rows changed");
        assertNotEquals(out[earlier], out2[earlier], "the last token sees its own key");
    }

    // ---------------------------------------------------------------- swiglu

    @ParameterizedTest(name = "n={0}")
    @MethodSource("lengths")
    void swigluMatchesReference(int n) {
        Random rnd = rnd(n);
        float[] gate = random(rnd, n, 12f), up = random(rnd, n, 2f);
        if (n > 2) {
            gate[0] = 100f;  // exp(−g) underflows
            gate[1] = -100f; // exp(−g) overflows: silu → −0
        }
        float[] expected = nans(n);
        REF.swiglu(gate, up, n, expected);
        float[] out = nans(n);
        cuda.swiglu(gate, up, n, out);
        check("swiglu", "n=" + n, expected, out, 1e-6, RTOL);
        float[] aliased = gate.clone(); // out may alias gate
        cuda.swiglu(aliased, up, n, aliased);
        check("swiglu", "in place n=" + n, expected, aliased, 1e-6, RTOL);
    }

    static Stream<Arguments> lengths() {
        return Stream.of(0, 1, 7, 17, 64, 255, 257, 1000, 100_003, (1 << 20) + 3).map(Arguments::of);
    }

    // ---------------------------------------------------------------- crossEntropy

    @ParameterizedTest(name = "M={0} V={1}")
    @MethodSource("rowShapes")
    void crossEntropyMatchesReference(int M, int V) {
        Random rnd = rnd(M * 31L + V);
        float[] logits = random(rnd, M * V, 8f);
        int[] targets = new int[M];
        for (int m = 0; m < M; m++) {
            targets[m] = rnd.nextInt(V);
        }
        double[] expected = new double[M];
        REF.crossEntropy(logits, M, V, targets, expected);
        double[] nll = new double[M];
        Arrays.fill(nll, Double.NaN);
        cuda.crossEntropy(logits, M, V, targets, nll);
        check("crossEntropy", "M=" + M + " V=" + V, expected, nll, 0, M, 1e-4, RTOL);
    }

    @Test
    void crossEntropyOfLargeVocabularies() {
        for (int V : new int[] {32_000, 128_256}) {
            int M = 3;
            Random rnd = rnd(V);
            float[] logits = random(rnd, M * V, 20f);
            int[] targets = {0, V - 1, 12345};
            double[] expected = new double[M], nll = new double[M];
            Arrays.fill(nll, Double.NaN);
            REF.crossEntropy(logits, M, V, targets, expected);
            cuda.crossEntropy(logits, M, V, targets, nll);
            check("crossEntropy", "V=" + V, expected, nll, 0, M, 1e-4, RTOL);
        }
    }

    // ---------------------------------------------------------------- the cubin cache

    /**
     * The first open compiles and stores {@code <sha256>.cubin}; the next loads it; a damaged
     * entry is compiled again and replaced.
     */
    @Test
    void cubinCacheStoresReusesAndRepairs(@TempDir Path dir) throws Exception {
        String old = System.getProperty("shrink.cubin.cache");
        System.setProperty("shrink.cubin.cache", dir.toString());
        try {
            try (CudaOps first = CudaOps.open(0)) {
                assertFalse(first.module().fromCache(), "an empty cache compiles");
            }
            List<Path> files;
            try (Stream<Path> s = Files.list(dir)) {
                files = s.toList();
            }
            assertEquals(1, files.size(), files.toString());
            assertTrue(files.get(0).getFileName().toString().matches("[0-9a-f]{64}\\.cubin"), files.toString());
            try (CudaOps second = CudaOps.open(0)) {
                assertTrue(second.module().fromCache(), "the stored cubin is used");
            }
            Files.write(files.get(0), new byte[] {1, 2, 3});
            try (CudaOps third = CudaOps.open(0)) {
                assertFalse(third.module().fromCache(), "a damaged entry is compiled again");
                float[] y = nans(4);
                third.swiglu(new float[] {1, 2, 3, 4}, new float[] {1, 1, 1, 1}, 4, y);
                assertEquals(1 / (1 + Math.exp(-1)), y[0], 1e-6);
            }
            assertTrue(Files.size(files.get(0)) > 1000, "replaced by a real cubin");
        } finally {
            if (old == null) {
                System.clearProperty("shrink.cubin.cache");
            } else {
                System.setProperty("shrink.cubin.cache", old);
            }
        }
    }
}
