package dev.shrink.gptq;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shrink.core.ops.Backends;
import dev.shrink.core.ops.Ops;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

class GptqTest {
    private final Ops ops = Backends.select("cpu-reference", 1);

    @Test
    void quantizerByHand() {
        float[] w = {-1f, 0.5f, 2f};
        Quantizer.Params a = Quantizer.find(w, 1, 3, 0, 3, QuantScheme.of(4, -1, false));
        assertEquals(0.2f, a.scale()[0], 1e-7);
        assertEquals(5f, a.zero()[0]);
        // round(−1/0.2) + 5 = 0; round(2.5) = 2 (half to even) + 5 = 7; round(10) + 5 = 15
        assertEquals(0, Quantizer.code(-1f, a.scale()[0], a.zero()[0], 15));
        assertEquals(7, Quantizer.code(0.5f, a.scale()[0], a.zero()[0], 15));
        assertEquals(15, Quantizer.code(2f, a.scale()[0], a.zero()[0], 15));
        Quantizer.Params s = Quantizer.find(w, 1, 3, 0, 3, QuantScheme.of(4, -1, true));
        assertEquals(4f / 15, s.scale()[0], 1e-7);
        assertEquals(8f, s.zero()[0]);
        // an all-zero row gets the range [−1, 1]
        Quantizer.Params z = Quantizer.find(new float[4], 1, 4, 0, 4, QuantScheme.of(4, -1, false));
        assertEquals(2f / 15, z.scale()[0], 1e-7);
        assertEquals(0f, Quantizer.quantize(0f, z.scale()[0], z.zero()[0], 15));
    }

    @Test
    void choleskyIdentities() {
        int n = 37;
        double[] A = spd(n, new Random(1));
        double[] L = A.clone();
        assertTrue(Cholesky.factorLower(L, n));
        assertClose(A, mul(L, transpose(L, n), n), 1e-9);
        double[] inv = Cholesky.inverseFromLower(L, n);
        assertClose(identity(n), mul(inv, A, n), 1e-8);
        double[] U = inv.clone();
        assertTrue(Cholesky.factorUpper(U, n));
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < i; j++) {
                assertEquals(0, U[i * n + j], "upper triangular");
            }
        }
        assertClose(inv, mul(transpose(U, n), U, n), 1e-9);
        double[] notPd = {1, 2, 2, 1};
        assertFalse(Cholesky.factorLower(notPd, 2));
    }

    /** With H = I the inverse factor is diagonal: no error feedback, GPTQ equals round-to-nearest. */
    @ParameterizedTest
    @CsvSource({"4, 16, true", "4, -1, false", "3, 8, false", "8, 16, true", "2, 16, false"})
    void identityHessianGivesRoundToNearest(int bits, int group, boolean sym) {
        int N = 12, K = 48;
        float[] W = randn(N * K, new Random(2));
        float[] H = new float[K * K];
        for (int i = 0; i < K; i++) {
            H[i * K + i] = 1f;
        }
        QuantScheme s = QuantScheme.of(bits, group, sym);
        GptqResult g = Gptq.quantize(W, N, K, H, new Gptq.Options(s, 16, 0.01, false, false), ops);
        GptqResult r = Gptq.roundToNearest(W, N, K, s);
        assertArrayEquals(r.codes(), g.codes());
        assertArrayEquals(r.Q(), g.Q());
    }

    /** GPTQ's purpose: a smaller output error ‖X·(W − Q)ᵀ‖² than round-to-nearest on correlated inputs. */
    @ParameterizedTest
    @CsvSource({"false, false", "true, false", "true, true"})
    void beatsRoundToNearestOnOutputError(boolean actOrder, boolean staticGroups) {
        int N = 32, K = 64, M = 512;
        Random rnd = new Random(3);
        float[] W = randn(N * K, rnd);
        float[] X = correlatedInputs(M, K, rnd);
        float[] H = new float[K * K];
        ops.gemm(true, false, K, K, M, 2f / M, X, 0, K, X, 0, K, 0f, H, 0, K);
        QuantScheme s = QuantScheme.of(4, 16, true);
        GptqResult g = Gptq.quantize(W, N, K, H, new Gptq.Options(s, 16, 0.01, actOrder, staticGroups), ops);
        GptqResult r = Gptq.roundToNearest(W, N, K, s);
        double eg = outputError(X, W, g.Q(), M, N, K), er = outputError(X, W, r.Q(), M, N, K);
        assertTrue(eg < 0.7 * er, () -> "GPTQ error " + eg + " vs RTN " + er);
        assertDequantConsistent(g, N, K, s);
        if (staticGroups) {
            for (int k = 0; k < K; k++) {
                assertEquals(k / 16, g.gIdx()[k]);
            }
        }
        int[] perGroup = new int[s.groups(K)];
        for (int k = 0; k < K; k++) {
            perGroup[g.gIdx()[k]]++;
        }
        for (int c : perGroup) {
            assertEquals(16, c, "every group holds group-size columns");
        }
    }

    /** Act-order groups follow decreasing diag(H): the largest-diagonal columns form group 0. */
    @Test
    void actOrderGroupsFollowTheDiagonal() {
        int N = 8, K = 32;
        float[] W = randn(N * K, new Random(4));
        float[] H = new float[K * K];
        for (int i = 0; i < K; i++) {
            H[i * K + i] = (i * 7) % K + 1; // a permutation of 1..K
        }
        GptqResult g = Gptq.quantize(W, N, K, H, new Gptq.Options(QuantScheme.of(4, 8, false), 8, 0.01, true, false), ops);
        for (int k = 0; k < K; k++) {
            int rank = K - (int) H[k * K + k]; // 0 for the largest diagonal
            assertEquals(rank / 8, g.gIdx()[k], "column " + k);
        }
    }

    @Test
    void dampRisesUntilCholeskyWorks() {
        int N = 4, K = 2;
        float[] W = randn(N * K, new Random(5));
        float[] H = {1f, 1.015f, 1.015f, 1f}; // smallest eigenvalue −0.015
        GptqResult g = Gptq.quantize(W, N, K, H, new Gptq.Options(QuantScheme.of(4, -1, true), 128, 0.01, false, false), ops);
        assertTrue(g.dampRaised());
        assertEquals(0.02, g.damp(), 1e-9);
        float[] bad = {1f, 3f, 3f, 1f}; // eigenvalue −2: no damp ≤ 1 helps
        assertThrows(Gptq.NotPositiveDefinite.class, () -> Gptq.quantize(W, N, K, bad,
                new Gptq.Options(QuantScheme.of(4, -1, true), 128, 0.01, false, false), ops));
    }

    @Test
    void deadColumnsAreZeroed() {
        int N = 4, K = 16;
        float[] W = randn(N * K, new Random(6));
        float[] H = new float[K * K];
        for (int i = 0; i < K; i++) {
            H[i * K + i] = i == 3 ? 0f : 1f;
        }
        GptqResult g = Gptq.quantize(W, N, K, H, new Gptq.Options(QuantScheme.of(4, -1, false), 8, 0.01, false, false), ops);
        assertEquals(1, g.deadColumns());
        for (int n = 0; n < N; n++) {
            assertEquals(0f, g.Q()[n * K + 3], "dead column quantizes the zeroed weight");
        }
    }

    static void assertDequantConsistent(GptqResult g, int N, int K, QuantScheme s) {
        for (int n = 0; n < N; n++) {
            for (int k = 0; k < K; k++) {
                int grp = g.gIdx()[k];
                int c = g.codes()[n * K + k];
                assertTrue(c >= 0 && c <= s.maxq());
                assertEquals(g.scales()[grp * N + n] * (c - g.zeros()[grp * N + n]), g.Q()[n * K + k], 1e-6);
            }
        }
    }

    static double outputError(float[] X, float[] W, float[] Q, int M, int N, int K) {
        double e = 0;
        for (int m = 0; m < M; m++) {
            for (int n = 0; n < N; n++) {
                double s = 0;
                for (int k = 0; k < K; k++) {
                    s += X[m * K + k] * ((double) W[n * K + k] - Q[n * K + k]);
                }
                e += s * s;
            }
        }
        return e;
    }

    /** Inputs with strongly correlated channels (a low-rank mix plus noise), like real activations. */
    static float[] correlatedInputs(int M, int K, Random rnd) {
        int r = 4;
        float[] mix = randn(r * K, rnd);
        float[] X = new float[M * K];
        for (int m = 0; m < M; m++) {
            float[] z = randn(r, rnd);
            for (int k = 0; k < K; k++) {
                float v = 0.1f * (float) rnd.nextGaussian();
                for (int j = 0; j < r; j++) {
                    v += z[j] * mix[j * K + k];
                }
                X[m * K + k] = v;
            }
        }
        return X;
    }

    static float[] randn(int n, Random rnd) {
        float[] a = new float[n];
        for (int i = 0; i < n; i++) {
            a[i] = (float) rnd.nextGaussian();
        }
        return a;
    }

    static double[] spd(int n, Random rnd) {
        double[] B = new double[n * n];
        for (int i = 0; i < n * n; i++) {
            B[i] = rnd.nextGaussian();
        }
        double[] A = mul(B, transpose(B, n), n);
        for (int i = 0; i < n; i++) {
            A[i * n + i] += n;
        }
        return A;
    }

    static double[] identity(int n) {
        double[] I = new double[n * n];
        for (int i = 0; i < n; i++) {
            I[i * n + i] = 1;
        }
        return I;
    }

    static double[] transpose(double[] A, int n) {
        double[] t = new double[n * n];
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < n; j++) {
                t[j * n + i] = A[i * n + j];
            }
        }
        return t;
    }

    static double[] mul(double[] A, double[] B, int n) {
        double[] C = new double[n * n];
        for (int i = 0; i < n; i++) {
            for (int k = 0; k < n; k++) {
                for (int j = 0; j < n; j++) {
                    C[i * n + j] += A[i * n + k] * B[k * n + j];
                }
            }
        }
        return C;
    }

    static void assertClose(double[] a, double[] b, double tol) {
        for (int i = 0; i < a.length; i++) {
            assertEquals(a[i], b[i], tol * Math.max(1, Math.abs(a[i])), "element " + i);
        }
    }
}
