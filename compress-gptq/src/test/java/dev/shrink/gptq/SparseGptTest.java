package dev.shrink.gptq;

import static dev.shrink.gptq.GptqTest.correlatedInputs;
import static dev.shrink.gptq.GptqTest.outputError;
import static dev.shrink.gptq.GptqTest.randn;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shrink.core.ops.Backends;
import dev.shrink.core.ops.Ops;
import dev.shrink.core.sparse.SparsityPattern;
import java.util.Arrays;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * SparseGPT (GPTQ's solver with pruning) and the zeros GPTQ keeps, against plain-Java references:
 * magnitude pruning written out in the test, and the output error ‖X·(W − Q)ᵀ‖².
 */
class SparseGptTest {
    private final Ops ops = Backends.select("cpu-reference", 1);
    private static final SparsityPattern HALF = new SparsityPattern.Unstructured(0.5);
    private static final SparsityPattern TWO_FOUR = new SparsityPattern.NofM(2, 4);

    /** The test's own magnitude pruning: the k smallest |w| of the matrix, or m − n smallest of each group. */
    static float[] magnitude(float[] W, int N, int K, SparsityPattern p) {
        float[] Q = W.clone();
        if (p instanceof SparsityPattern.NofM nm) {
            for (int n = 0; n < N; n++) {
                for (int g = 0; g < K; g += nm.m()) {
                    Integer[] idx = new Integer[nm.m()];
                    for (int j = 0; j < nm.m(); j++) {
                        idx[j] = n * K + g + j;
                    }
                    Arrays.sort(idx, (a, b) -> Float.compare(Math.abs(W[a]), Math.abs(W[b])));
                    for (int j = 0; j < nm.m() - nm.n(); j++) {
                        Q[idx[j]] = 0;
                    }
                }
            }
        } else {
            Integer[] idx = new Integer[N * K];
            for (int i = 0; i < idx.length; i++) {
                idx[i] = i;
            }
            Arrays.sort(idx, (a, b) -> Float.compare(Math.abs(W[a]), Math.abs(W[b])));
            for (int i = 0; i < (int) Math.floor(p.ratio() * N * K); i++) {
                Q[idx[i]] = 0;
            }
        }
        return Q;
    }

    static float[] hessian(float[] X, int M, int K, Ops ops) {
        float[] H = new float[K * K];
        ops.gemm(true, false, K, K, M, 2f / M, X, 0, K, X, 0, K, 0f, H, 0, K);
        return H;
    }

    static int zeros(float[] Q) {
        int z = 0;
        for (float q : Q) {
            z += q == 0f ? 1 : 0;
        }
        return z;
    }

    /** With H = I there is no error feedback and the saliency is w²: SparseGPT is magnitude pruning. */
    @ParameterizedTest
    @CsvSource({"unstructured", "2:4"})
    void identityHessianGivesMagnitudePruning(String pattern) {
        int N = 16, K = 64;
        SparsityPattern p = pattern.equals("2:4") ? TWO_FOUR : HALF;
        float[] W = randn(N * K, new Random(11));
        float[] H = new float[K * K];
        for (int i = 0; i < K; i++) {
            H[i * K + i] = 1f;
        }
        // one block over all columns, so the unstructured threshold is the matrix's
        GptqResult r = Gptq.quantize(W, N, K, H, new Gptq.Options(null, 64, 0.01, false, false, p), ops);
        assertArrayEquals(magnitude(W, N, K, p), r.Q());
        assertEquals(N * K / 2, r.masked());
    }

    /** SparseGPT's purpose: a smaller output error than magnitude pruning at the same sparsity and pattern. */
    @ParameterizedTest
    @CsvSource({"unstructured, 16", "unstructured, 128", "2:4, 16", "2:4, 128"})
    void beatsMagnitudeOnOutputError(String pattern, int block) {
        int N = 32, K = 128, M = 512;
        SparsityPattern p = pattern.equals("2:4") ? TWO_FOUR : HALF;
        Random rnd = new Random(12);
        float[] W = randn(N * K, rnd);
        float[] X = correlatedInputs(M, K, rnd);
        GptqResult r = Gptq.quantize(W, N, K, hessian(X, M, K, ops), new Gptq.Options(null, block, 0.01, false, false, p), ops);
        float[] mag = magnitude(W, N, K, p);
        assertEquals(N * K / 2, zeros(r.Q()), "exactly half of the weights are zero");
        assertEquals(N * K / 2, r.masked());
        if (p instanceof SparsityPattern.NofM) {
            assertNofM(r.Q(), N, K, 2, 4);
        }
        double es = outputError(X, W, r.Q(), M, N, K), em = outputError(X, W, mag, M, N, K);
        assertTrue(es < 0.7 * em, () -> "SparseGPT error " + es + " vs magnitude " + em);
        assertEquals(null, r.codes(), "prune only: no codes");
    }

    /** Pruning and quantizing at once: every masked weight takes the code of zero, the rest lie on the grid. */
    @ParameterizedTest
    @CsvSource({"unstructured, true", "2:4, false"})
    void prunesAndQuantizesJointly(String pattern, boolean sym) {
        int N = 16, K = 64, M = 256;
        SparsityPattern p = pattern.equals("2:4") ? TWO_FOUR : HALF;
        Random rnd = new Random(13);
        float[] W = randn(N * K, rnd);
        float[] X = correlatedInputs(M, K, rnd);
        QuantScheme s = QuantScheme.of(4, 16, sym);
        GptqResult r = Gptq.quantize(W, N, K, hessian(X, M, K, ops), new Gptq.Options(s, 16, 0.01, false, false, p), ops);
        GptqTest.assertDequantConsistent(r, N, K, s);
        assertTrue(zeros(r.Q()) >= N * K / 2);
        assertEquals(N * K / 2, r.masked());
        if (p instanceof SparsityPattern.NofM) {
            assertNofM(r.Q(), N, K, 2, 4);
        }
    }

    /**
     * A pruned matrix through plain GPTQ: every zero stays exactly zero (code = zero point), although
     * the error feedback moves the values of the zero weights before they are reached.
     */
    @ParameterizedTest
    @CsvSource({"4, 16, true, false", "4, 16, false, false", "3, -1, false, false", "4, 16, true, true", "8, 32, false, true"})
    void gptqKeepsZeros(int bits, int group, boolean sym, boolean actOrder) {
        int N = 16, K = 64, M = 256;
        Random rnd = new Random(14);
        float[] X = correlatedInputs(M, K, rnd);
        float[] W = magnitude(randn(N * K, rnd), N, K, HALF);
        QuantScheme s = QuantScheme.of(bits, group, sym);
        GptqResult r = Gptq.quantize(W, N, K, hessian(X, M, K, ops), new Gptq.Options(s, 16, 0.01, actOrder, false), ops);
        for (int i = 0; i < N * K; i++) {
            if (W[i] == 0f) {
                assertEquals(0f, r.Q()[i], "weight " + i);
                int g = r.gIdx()[i % K];
                assertEquals(r.zeros()[g * N + i / K], r.codes()[i], "weight " + i + " takes the code of zero");
            }
        }
        GptqTest.assertDequantConsistent(r, N, K, s);
        GptqResult rtn = Gptq.roundToNearest(W, N, K, s);
        for (int i = 0; i < N * K; i++) {
            if (W[i] == 0f) {
                assertEquals(0f, rtn.Q()[i], "round-to-nearest keeps zeros too");
            }
        }
    }

    @Test
    void refusesWhatCannotWork() {
        float[] W = randn(4 * 6, new Random(15));
        float[] H = new float[36];
        for (int i = 0; i < 6; i++) {
            H[i * 6 + i] = 1;
        }
        var e = assertThrows(IllegalArgumentException.class, () -> Gptq.quantize(W, 4, 6, H,
                new Gptq.Options(null, 8, 0.01, false, false, TWO_FOUR), ops));
        assertTrue(e.getMessage().contains("not divisible by M = 4"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> new Gptq.Options(QuantScheme.of(4, -1, true), 16, 0.01, true, false, TWO_FOUR));
        assertThrows(IllegalArgumentException.class, () -> new Gptq.Options(null, 16, 0.01, false, false, null));
        assertThrows(IllegalArgumentException.class, () -> new Gptq.Options(null, 6, 0.01, false, false, TWO_FOUR));
    }

    static void assertNofM(float[] Q, int N, int K, int n, int m) {
        for (int row = 0; row < N; row++) {
            for (int g = 0; g < K; g += m) {
                int nz = 0;
                for (int j = 0; j < m; j++) {
                    nz += Q[row * K + g + j] != 0f ? 1 : 0;
                }
                assertTrue(nz <= n, "row " + row + " group " + g + " has " + nz + " non-zeros");
            }
        }
    }
}
