package dev.shrink.gptq;

import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Random;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The range-shrink search of {@link Quantizer#find} ({@code --mse}): over random groups (Gaussian,
 * heavy-tailed, one outlier, skewed), the chosen parameters never give a larger error Σ|w − Q(w)|^norm
 * per (row, group) than plain min/max, since p = 1 is on the grid, and with norm 2 that is the squared
 * error; on groups with an outlier the search gains.
 */
class MseGridTest {

    @ParameterizedTest
    @CsvSource({"4, true, 2.0", "4, false, 2.0", "3, true, 2.0", "3, false, 2.0", "4, true, 2.4", "3, false, 2.4",
        "2, false, 2.0"})
    void neverWorseThanMinMax(int bits, boolean sym, double norm) {
        Random rnd = new Random(bits * 7 + (sym ? 1 : 0));
        int N = 64, K = 128, gs = 32;
        QuantScheme plain = QuantScheme.of(bits, gs, sym);
        QuantScheme mse = new QuantScheme(bits, gs, sym, true, 0.8, 100, norm);
        double gained = 0;
        for (int trial = 0; trial < 8; trial++) {
            float[] W = new float[N * K];
            for (int i = 0; i < W.length; i++) {
                double g = rnd.nextGaussian();
                W[i] = (float) switch (trial % 4) {
                    case 0 -> g;
                    case 1 -> g * g * g;                                       // heavy tails
                    case 2 -> i % 29 == 0 ? 8 * g : g;                          // outliers
                    default -> Math.abs(g) + 0.3;                                // one-sided
                };
            }
            for (int c0 = 0; c0 < K; c0 += gs) {
                Quantizer.Params a = Quantizer.find(W, N, K, c0, gs, plain);
                Quantizer.Params b = Quantizer.find(W, N, K, c0, gs, mse);
                for (int n = 0; n < N; n++) {
                    double ea = error(W, n * K + c0, gs, a.scale()[n], a.zero()[n], plain.maxq(), norm);
                    double eb = error(W, n * K + c0, gs, b.scale()[n], b.zero()[n], plain.maxq(), norm);
                    assertTrue(eb <= ea * (1 + 1e-5), "row " + n + " group at " + c0 + ": search " + eb + " > min/max " + ea);
                    gained += ea - eb;
                }
            }
        }
        assertTrue(gained > 0, "the search never found a better range");
    }

    private static double error(float[] W, int base, int len, float scale, float zero, int maxq, double norm) {
        double e = 0;
        for (int i = 0; i < len; i++) {
            e += Math.pow(Math.abs(Quantizer.quantize(W[base + i], scale, zero, maxq) - W[base + i]), norm);
        }
        return e;
    }
}
