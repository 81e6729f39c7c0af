package dev.shrink.awq;

import dev.shrink.core.forward.BlockWeights;
import dev.shrink.core.model.ArchitectureSpec;

/**
 * Applies AWQ's plans to a block's float weights, in place (llm-awq's {@code apply_scale} and
 * {@code apply_clip}). Scaling is exact in full precision: the previous op's output is divided by
 * s and the consumers' input columns are multiplied by s, so the block computes the same function:
 * <pre>
 *   RMSNorm → linears:   g' = g / s,  W' = W · diag(s)                  (x·diag(g/s)·(W·diag(s))ᵀ = x·diag(g)·Wᵀ)
 *   linear → linear:     W₁' = diag(s)⁻¹ · W₁, b₁' = b₁ / s,  W₂' = W₂ · diag(s)
 * </pre>
 * Clipping clamps each (row, group) of W to [−maxVal, maxVal].
 */
public final class AwqApply {
    private AwqApply() {
    }

    /**
     * Applies {@code plan} to {@code w}: divides the previous op (a norm of the spec, or a linear's
     * output rows and bias) by s and multiplies the consumers' columns by s.
     *
     * @throws IllegalArgumentException if the previous op or a consumer does not fit s
     */
    public static void scale(BlockWeights w, ArchitectureSpec spec, ScalePlan plan) {
        float[] s = plan.scales();
        int K = s.length;
        String prev = plan.previous();
        if ((prev + ".weight").equals(spec.inputNorm())) {
            divide(w.inputNorm(), s, prev);
        } else if ((prev + ".weight").equals(spec.postAttentionNorm())) {
            divide(w.postAttentionNorm(), s, prev);
        } else {
            int[] nk = w.shape(prev);
            if (nk[0] != K) {
                throw new IllegalArgumentException(prev + " has " + nk[0] + " outputs, the scales " + K);
            }
            divideRows(w.weight(prev), nk[0], nk[1], s);
            float[] b = w.bias(prev);
            if (b != null) {
                divide(b, s, prev + ".bias");
            }
        }
        for (String c : plan.consumers()) {
            int[] nk = w.shape(c);
            if (nk[1] != K) {
                throw new IllegalArgumentException(c + " has " + nk[1] + " inputs, the scales " + K);
            }
            multiplyColumns(w.weight(c), nk[0], nk[1], s);
        }
        ArchitectureSpec.Moe moe = spec.moe();
        if (moe != null && (prev + ".weight").equals(spec.postAttentionNorm())) {
            // a mixture's router and shared expert's gate read the same normed input: their columns times s
            // keep the routing and the gate as they were (they stay in float; llm-compressor's MoE mappings do so)
            for (String name : w.linearNames()) {
                if (name.equals(moe.router()) || name.equals(moe.sharedExpertGate())) {
                    int[] nk = w.shape(name);
                    multiplyColumns(w.weight(name), nk[0], nk[1], s);
                }
            }
        }
    }

    /** v[k] /= s[k]. */
    static void divide(float[] v, float[] s, String what) {
        if (v.length != s.length) {
            throw new IllegalArgumentException(what + " has " + v.length + " values, the scales " + s.length);
        }
        for (int k = 0; k < v.length; k++) {
            v[k] /= s[k];
        }
    }

    /** W [N, K]: row n divided by s[n]. */
    static void divideRows(float[] W, int N, int K, float[] s) {
        for (int n = 0; n < N; n++) {
            float d = s[n];
            for (int k = 0; k < K; k++) {
                W[n * K + k] /= d;
            }
        }
    }

    /** W [N, K]: column k multiplied by s[k]. */
    static void multiplyColumns(float[] W, int N, int K, float[] s) {
        for (int n = 0; n < N; n++) {
            for (int k = 0; k < K; k++) {
                W[n * K + k] *= s[k];
            }
        }
    }

    /** X [T, K]: column k divided by s[k] (the consumers' inputs after scaling). */
    static float[] divideColumns(float[] X, int T, int K, float[] s) {
        float[] out = new float[T * K];
        for (int t = 0; t < T; t++) {
            for (int k = 0; k < K; k++) {
                out[t * K + k] = X[t * K + k] / s[k];
            }
        }
        return out;
    }

    /** Clamps W [N, K] to the plan's [−maxVal, maxVal] per (row, group), in place. */
    public static void clip(float[] W, ClipPlan plan) {
        int N = plan.N(), K = plan.K(), G = plan.groups();
        int len = K / G;
        if (W.length != N * K) {
            throw new IllegalArgumentException(plan.linear() + ": W has " + W.length + " values, the plan is for [" + N + ", " + K + "]");
        }
        for (int n = 0; n < N; n++) {
            for (int g = 0; g < G; g++) {
                float m = plan.maxVal()[n * G + g];
                int base = n * K + g * len;
                for (int i = 0; i < len; i++) {
                    W[base + i] = Math.max(-m, Math.min(m, W[base + i]));
                }
            }
        }
    }
}
