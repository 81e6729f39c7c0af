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
 *
 * <p>With float inputs given per batch ({@link #floatInputs}, GPTAQ's asymmetric calibration), it
 * also accumulates D = Σ (x_fp − x)·xᵀ, where x_fp is the same token's input to the same linear in
 * the float model; {@link #asymmetry} returns (2/n)·D, normalised as H.
 */
final class HessianTaps implements Taps {
    private final int layer;
    private final Set<String> wanted;
    private final Ops ops;
    private final Map<String, float[]> byLinear = new HashMap<>();
    private final Map<String, float[]> dByLinear = new HashMap<>();
    private Map<String, float[]> fpInputs;
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
        if (fpInputs != null) {
            float[] fp = fpInputs.get(linear);
            if (fp == null || fp.length != M * K) {
                throw new IllegalStateException("no float-model input of " + linear + " for this batch");
            }
            float[] d = new float[M * K];
            for (int i = 0; i < d.length; i++) {
                d[i] = fp[i] - x[i];
            }
            float[] D = dByLinear.computeIfAbsent(linear, k -> new float[K * K]);
            // D[K, K] += (x_fp − x)ᵀ · x
            ops.gemm(true, false, K, K, M, 1f, d, 0, K, x, 0, K, 1f, D, 0, K);
        }
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

    /** The float model's inputs of this batch's tokens, by linear (GPTAQ); null: symmetric calibration. */
    void floatInputs(Map<String, float[]> inputs) {
        this.fpInputs = inputs;
    }

    float[] hessian(String linear, int sequences) {
        return normalised(byLinear.get(linear), linear, sequences);
    }

    /** (2/n)·Σ (x_fp − x)·xᵀ of a linear's inputs (GPTAQ's dXXT), or null without float inputs. */
    float[] asymmetry(String linear, int sequences) {
        if (dByLinear.isEmpty()) {
            return null;
        }
        // linears sharing an input share D: find it through the shared S
        float[] D = dByLinear.get(linear);
        if (D == null) {
            float[] S = byLinear.get(linear);
            for (Map.Entry<String, float[]> e : byLinear.entrySet()) {
                if (e.getValue() == S && dByLinear.containsKey(e.getKey())) {
                    D = dByLinear.get(e.getKey());
                }
            }
        }
        return normalised(D, linear, sequences);
    }

    private static float[] normalised(float[] S, String linear, int sequences) {
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
