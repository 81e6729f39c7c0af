package dev.shrink.gptq;

import dev.shrink.core.forward.Taps;
import dev.shrink.core.ops.Ops;
import java.util.HashMap;
import java.util.Map;
import java.util.Set;

/**
 * Accumulates S = Σ x·xᵀ over the calibration tokens for the inputs of chosen linears of one
 * block (one GEMM per batch: S += Xᵀ·X). Linears that share an input array (q/k/v, gate/up) share
 * one accumulator. {@link #hessian} returns H = (2/n)·S with n the number of sequences, the
 * reference's normalisation.
 */
final class HessianTaps implements Taps {
    private final int layer;
    private final Set<String> wanted;
    private final Ops ops;
    private final Map<String, float[]> byLinear = new HashMap<>();
    private float[] lastInput;
    private float[] lastSum;
    private int lastK;
    double seconds;

    HessianTaps(int layer, Set<String> wanted, Ops ops) {
        this.layer = layer;
        this.wanted = wanted;
        this.ops = ops;
    }

    @Override
    public void linearInput(int layer, String linear, float[] x, int M, int K) {
        if (layer != this.layer || !wanted.contains(linear)) {
            return;
        }
        if (x == lastInput && K == lastK) {
            // same input array as the previous linear (q/k/v, gate/up): same accumulator, already added
            byLinear.putIfAbsent(linear, lastSum);
            if (byLinear.get(linear) == lastSum) {
                return;
            }
        }
        long t0 = System.nanoTime();
        float[] S = byLinear.computeIfAbsent(linear, k -> new float[K * K]);
        // S[K, K] += xᵀ · x, x: [M, K]
        ops.gemm(true, false, K, K, M, 1f, x, 0, K, x, 0, K, 1f, S, 0, K);
        lastInput = x;
        lastSum = S;
        lastK = K;
        seconds += (System.nanoTime() - t0) / 1e9;
    }

    /** A new batch starts: inputs of different batches are never shared. */
    void nextBatch() {
        lastInput = null;
        lastSum = null;
    }

    float[] hessian(String linear, int sequences) {
        float[] S = byLinear.get(linear);
        if (S == null) {
            throw new IllegalStateException("no inputs seen for " + linear);
        }
        float[] H = S.clone();
        float f = 2f / sequences;
        for (int i = 0; i < H.length; i++) {
            H[i] *= f;
        }
        return H;
    }
}
