package dev.shrink.awq;

import static dev.shrink.awq.AwqTestSupport.randn;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shrink.core.ops.Backends;
import dev.shrink.core.ops.Ops;
import dev.shrink.core.quant.QuantizedLinear;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;

/** The pure math of AWQ: the quantizer, the scale grid, the Gram loss, the clip search. */
class AwqMathTest {
    private final Ops ops = Backends.select("cpu-reference", 1);

    @Test
    void quantizerByHand() {
        // FORMATS.md: s = max(max − min, 1e−5)/15, z = clamp(−round(min/s), 0, 15), q = clamp(round(w/s) + z, 0, 15)
        float[] w = {-1f, 0.5f, 2f};
        QuantizedLinear q = AwqQuantizer.quantize("x", w, 1, 3, 3, null);
        assertEquals(0.2f, q.scales()[0], 1e-7f);
        assertEquals(5, q.zeros()[0]);
        assertArrayEquals(new int[] {0, 7, 15}, q.codes(), "round(2.5) = 2, half to even");
        assertArrayEquals(new float[] {-1f, 0.4f, 2f}, AwqQuantizer.pseudoQuantize(w, 1, 3, 3), 1e-6f);
        // the range need not include 0; the zero point clamps at 0, so the top of [1, 4] saturates
        assertArrayEquals(new float[] {1f, 2f, 3f, 3f}, AwqQuantizer.pseudoQuantize(new float[] {1, 2, 3, 4}, 1, 4, 4), 1e-6f);
        // a constant group: scale 1e−5/15, the reference's quirk
        float[] c = AwqQuantizer.pseudoQuantize(new float[] {0.7f, 0.7f}, 1, 2, 2);
        assertEquals(1e-5f, c[0], 1e-9f);
        // groups are per (row, group); dequantize() of quantize() is pseudoQuantize()
        float[] W = randn(8 * 64, 1f, new Random(1));
        QuantizedLinear g = AwqQuantizer.quantize("y", W, 8, 64, 32, null);
        assertEquals(2, g.groupCount());
        assertArrayEquals(AwqQuantizer.pseudoQuantize(W, 8, 64, 32), g.dequantize());
        assertArrayEquals(AwqQuantizer.pseudoQuantize(W, 8, 64, 64), AwqQuantizer.quantize("z", W, 8, 64, -1, null).dequantize());
    }

    @Test
    void scaleGrid() {
        float[] xMean = {0.5f, 2f, 8f, 0f};
        for (double a : ScaleSearch.ratios(ScaleSearch.GRID)) {
            float[] s = ScaleSearch.scales(xMean, null, a);
            float max = Float.NEGATIVE_INFINITY, min = Float.POSITIVE_INFINITY;
            for (float v : s) {
                max = Math.max(max, v);
                min = Math.min(min, v);
            }
            assertEquals(1.0, (double) max * min, 1e-5, "normalised by sqrt(max·min), α = " + a);
        }
        assertArrayEquals(new float[] {1, 1, 1, 1}, ScaleSearch.scales(xMean, null, 0), "α = 0 without duo: plain RTN");
        // α = 0.5: sqrt(x_mean), the dead channel clamped at 1e−4, then normalised by sqrt(sqrt(8)·1e−4)
        float[] s = ScaleSearch.scales(xMean, null, 0.5);
        double norm = Math.sqrt(Math.sqrt(8) * 1e-4);
        assertEquals(Math.sqrt(2) / norm, s[1], 1e-3 * s[1]);
        assertEquals(1e-4 / norm, s[3], 1e-3 * s[3]);
        // duo at α = 0: 1 / (w_mean + 1e−4), normalised
        float[] wMean = {0.25f, 0.5f, 1f, 0.5f};
        float[] d = ScaleSearch.scales(xMean, wMean, 0);
        assertEquals((0.5 + 1e-4) / (0.25 + 1e-4), d[0] / d[1], 1e-5);
        assertEquals(d[1], d[3], 1e-7);
        assertEquals(ScaleSearch.GRID, ScaleSearch.ratios(ScaleSearch.GRID).length);
        assertEquals(0.95, ScaleSearch.ratios(ScaleSearch.GRID)[19], 1e-12);
    }

    @Test
    void wMeanByHand() {
        // rows of two consumers, groups of 2: |w| / (max |w| in its (row, group) + 1e−6), averaged over the 2 rows
        float[] a = {1, -2, 4, 0};
        float[] b = {3, 3, -1, 1};
        float[] m = ScaleSearch.wMean(List.of(a, b), 4, 2);
        assertEquals((0.5 + 1) / 2, m[0], 1e-5);
        assertEquals((1 + 1) / 2.0, m[1], 1e-5);
        assertEquals((1 + 1) / 2.0, m[2], 1e-5);
        assertEquals((0 + 1) / 2.0, m[3], 1e-5);
    }

    /** The Gram form of a linear's loss is the forward comparison's number. */
    @Test
    void gramLossEqualsTheForwardLoss() {
        int M = 300, K = 64, N = 32;
        Random rnd = new Random(2);
        float[] X = randn(M * K, 1f, rnd);
        float[] W = randn(N * K, 0.2f, rnd);
        float[] s = ScaleSearch.scales(meanAbs(X, M, K), null, 0.5);
        float[] Wq = ScaleSearch.scaledQuantized(W, N, K, s, 32);
        double direct = forwardLoss(X, M, K, W, Wq, N);
        double gram = ScaleSearch.linearLoss(W, Wq, N, K, gram(X, M, K), M, ops);
        assertEquals(direct, gram, 1e-4 * direct);
    }

    /** AWQ's premise: with a few salient input channels, some α > 0 beats plain round-to-nearest. */
    @Test
    void salientChannelsMakeAPositiveRatioWin() {
        int M = 400, K = 128, N = 64;
        Random rnd = new Random(3);
        float[] X = randn(M * K, 1f, rnd);
        for (int m = 0; m < M; m++) {
            for (int k = 0; k < 4; k++) {
                X[m * K + k * 17] *= 40f; // four salient channels
            }
        }
        float[] W = randn(N * K, 0.1f, rnd);
        float[] G = gram(X, M, K);
        float[] xMean = meanAbs(X, M, K);
        double[] losses = new double[ScaleSearch.GRID];
        double[] ratios = ScaleSearch.ratios(ScaleSearch.GRID);
        for (int i = 0; i < losses.length; i++) {
            float[] Wq = ScaleSearch.scaledQuantized(W, N, K, ScaleSearch.scales(xMean, null, ratios[i]), 32);
            losses[i] = ScaleSearch.linearLoss(W, Wq, N, K, G, M, ops);
        }
        int best = ScaleSearch.best(losses);
        assertTrue(best > 0, "best ratio " + ratios[best]);
        assertTrue(losses[best] < 0.8 * losses[0], "AWQ " + losses[best] + " vs RTN " + losses[0]);
    }

    /** With uniform activation magnitudes every candidate is plain RTN: the losses tie and α = 0 is kept. */
    @Test
    void uniformActivationsKeepRatioZero() {
        int M = 64, K = 64, N = 16;
        Random rnd = new Random(4);
        float[] X = new float[M * K];
        for (int i = 0; i < X.length; i++) {
            X[i] = rnd.nextBoolean() ? 1f : -1f; // |x| = 1 in every channel
        }
        float[] W = randn(N * K, 0.3f, rnd);
        float[] G = gram(X, M, K);
        double[] losses = new double[ScaleSearch.GRID];
        double[] ratios = ScaleSearch.ratios(ScaleSearch.GRID);
        for (int i = 0; i < losses.length; i++) {
            float[] s = ScaleSearch.scales(meanAbs(X, M, K), null, ratios[i]);
            losses[i] = ScaleSearch.linearLoss(W, ScaleSearch.scaledQuantized(W, N, K, s, 32), N, K, G, M, ops);
        }
        for (double l : losses) {
            assertEquals(losses[0], l, 0.0);
        }
        assertEquals(0, ScaleSearch.best(losses));
        assertEquals(-1, ScaleSearch.best(new double[] {Double.NaN, Double.NaN}));
    }

    /** The clip search's choice is, per (row, group), the first minimiser of the group's output error. */
    @Test
    void clipSearchPicksTheBestFactorPerGroup() {
        int N = 16, K = 64, T = 100, gs = 32;
        Random rnd = new Random(5);
        float[] W = randn(N * K, 0.1f, rnd);
        for (int n = 0; n < N; n += 3) {
            W[n * K + rnd.nextInt(K)] = 1.5f; // outliers stretch some groups' range
        }
        float[] X = randn(T * K, 1f, rnd);
        ClipPlan p = ClipSearch.search("l", W, N, K, X, T, gs, ops);
        int G = K / gs;
        for (int n = 0; n < N; n++) {
            for (int g = 0; g < G; g++) {
                float m0 = 0;
                for (int j = 0; j < gs; j++) {
                    m0 = Math.max(m0, Math.abs(W[n * K + g * gs + j]));
                }
                double bestErr = Double.POSITIVE_INFINITY;
                int best = -1;
                for (int i = 0; i < ClipSearch.steps(); i++) {
                    float mv = m0 * (float) (1 - i / 20.0);
                    float[] c = new float[gs];
                    for (int j = 0; j < gs; j++) {
                        c[j] = Math.max(-mv, Math.min(mv, W[n * K + g * gs + j]));
                    }
                    float[] q = AwqQuantizer.pseudoQuantize(c, 1, gs, gs);
                    double e = 0;
                    for (int t = 0; t < T; t++) {
                        double d = 0;
                        for (int j = 0; j < gs; j++) {
                            d += (double) X[t * K + g * gs + j] * (q[j] - W[n * K + g * gs + j]);
                        }
                        e += d * d;
                    }
                    if (e / T < bestErr * (1 - 1e-9)) {
                        bestErr = e / T;
                        best = i;
                    }
                }
                assertEquals(best, p.steps()[n * G + g], "row " + n + " group " + g);
                assertEquals(m0 * (float) (1 - best / 20.0), p.maxVal()[n * G + g], 1e-7f);
            }
        }
        assertTrue(p.errorAfter() < p.errorBefore(), p.errorAfter() + " vs " + p.errorBefore());
        assertTrue(p.clippedFraction() > 0 && p.meanFactor() < 1);
        float[] Wc = W.clone();
        AwqApply.clip(Wc, p);
        for (int n = 0; n < N; n++) {
            for (int k = 0; k < K; k++) {
                float m = p.maxVal()[n * G + k / gs];
                assertTrue(Math.abs(Wc[n * K + k]) <= m);
                assertEquals(Math.max(-m, Math.min(m, W[n * K + k])), Wc[n * K + k]);
            }
        }
        assertEquals(512, ClipSearch.SAMPLE_TOKENS);
        assertEquals(128, ClipSearch.sampleStride(128 * 512));
        assertEquals(1, ClipSearch.sampleStride(100));
    }

    static float[] meanAbs(float[] X, int M, int K) {
        double[] s = new double[K];
        for (int m = 0; m < M; m++) {
            for (int k = 0; k < K; k++) {
                s[k] += Math.abs(X[m * K + k]);
            }
        }
        float[] out = new float[K];
        for (int k = 0; k < K; k++) {
            out[k] = (float) (s[k] / M);
        }
        return out;
    }

    static float[] gram(float[] X, int M, int K) {
        float[] G = new float[K * K];
        for (int i = 0; i < K; i++) {
            for (int j = 0; j < K; j++) {
                double s = 0;
                for (int m = 0; m < M; m++) {
                    s += (double) X[m * K + i] * X[m * K + j];
                }
                G[i * K + j] = (float) s;
            }
        }
        return G;
    }

    static double forwardLoss(float[] X, int M, int K, float[] W, float[] Wq, int N) {
        double sum = 0;
        for (int m = 0; m < M; m++) {
            for (int n = 0; n < N; n++) {
                double y = 0, yq = 0;
                for (int k = 0; k < K; k++) {
                    y += (double) X[m * K + k] * W[n * K + k];
                    yq += (double) X[m * K + k] * Wq[n * K + k];
                }
                sum += (y - yq) * (y - yq);
            }
        }
        return sum / ((double) M * N);
    }
}
