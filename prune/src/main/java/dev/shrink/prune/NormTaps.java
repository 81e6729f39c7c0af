package dev.shrink.prune;

import dev.shrink.core.forward.Taps;
import java.util.HashMap;
import java.util.Map;
import java.util.Set;

/**
 * Accumulates Wanda's input statistics for chosen linears of one block: sumSq[j] = Σ x_j² over
 * every calibration token (x: a row of the linear's input, [K]), in double. Linears that share an
 * input array in one call (q/k/v, gate/up) share one accumulator.
 */
final class NormTaps implements Taps {
    private final int layer;
    private final Set<String> wanted;
    private final Map<String, double[]> byLinear = new HashMap<>();
    private float[] lastInput;
    private double[] lastSum;

    NormTaps(int layer, Set<String> wanted) {
        this.layer = layer;
        this.wanted = wanted;
    }

    @Override
    public void linearInput(int layer, String linear, float[] x, int M, int K) {
        if (layer != this.layer || !wanted.contains(linear)) {
            return;
        }
        if (x == lastInput && lastSum.length == K) {
            // same input array as the previous linear (q/k/v, gate/up): same accumulator, already added
            byLinear.putIfAbsent(linear, lastSum);
            if (byLinear.get(linear) == lastSum) {
                return;
            }
        }
        double[] s = byLinear.computeIfAbsent(linear, k -> new double[K]);
        // s[j] += Σ_m x[m, j]², x: [M, K]
        for (int m = 0; m < M; m++) {
            int row = m * K;
            for (int j = 0; j < K; j++) {
                double v = x[row + j];
                s[j] += v * v;
            }
        }
        lastInput = x;
        lastSum = s;
    }

    /** A new batch starts: inputs of different batches are never shared. */
    void nextBatch() {
        lastInput = null;
        lastSum = null;
    }

    /** Σ x_j² over every token seen for {@code linear}: [K]. */
    double[] sumSq(String linear) {
        double[] s = byLinear.get(linear);
        if (s == null) {
            throw new IllegalStateException("no inputs seen for " + linear);
        }
        return s;
    }
}
