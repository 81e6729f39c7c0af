package dev.shrink.distill;

/**
 * The math of training, by name: every op of the decoder forward beside its backward, the losses
 * and the optimizer update, over arrays of type {@code A}. Two implementations: {@link F64TrainOps}
 * (double[], plain loops: the specification, which the finite-difference tests check) and
 * {@link F32TrainOps} (float[], the GEMMs through the {@link dev.shrink.core.ops.Ops} backend, rows
 * and heads in parallel: what training runs), tested against each other. The model wiring
 * ({@link TrainModel}) is written once against this interface, so the whole model's gradient is
 * checked in float64 with the very code that trains in float32; a GPU backend can implement the
 * same interface over device buffers.
 *
 * <p>Conventions: arrays are row-major; dimension letters B sequences of T tokens, M = B·T rows,
 * C hidden, K input and N output features of a linear, H query heads and Hkv key/value heads of
 * head dim D, F intermediate, V vocabulary. Forward ops write their outputs (overwrite). Every
 * backward op <em>adds</em> into its gradient outputs ({@code dx += ...}), so gradients of values
 * used twice (the residual stream, a tied embedding, accumulation over micro-batches) need no
 * extra code; callers start gradients at zero.
 *
 * @param <A> the array type: float[] or double[] on the CPU
 */
public interface TrainOps<A> {

    /** Short name for reports ("cpu-f32", "cpu-f64"). */
    String name();

    /**
     * Marks the start of a training step: arrays made from here to {@link #endStep()} are that
     * step's (activations, scratch) and may be reclaimed when it ends. The CPU ops leave them to the
     * garbage collector; a device backend reuses their memory for the next step.
     */
    default void beginStep() {
    }

    /** Ends the step begun by {@link #beginStep()}: its arrays must not be used any more. */
    default void endStep() {
    }

    /** A new array of n zeros. */
    A zeros(int n);

    /** An array holding {@code values}; may be {@code values} itself (float32 backends take it over). */
    A adopt(float[] values);

    /** A float32 copy of the array's contents. */
    float[] toFloats(A a);

    /** The number of elements. */
    int size(A a);

    /** dst[i] = src[i] for all i; same sizes. */
    void copy(A src, A dst);

    /** a[i] = 0 for all i. */
    void zero(A a);

    /** x[i] += d[i] for all i; same sizes. */
    void add(A x, A d);

    // ---- embedding ----

    /** x[t, :] = E[tokens[t], :]; E: [V, C], x: [M, C] with M = tokens.length. */
    void embedForward(A E, int[] tokens, int C, A x);

    /** dE[tokens[t], :] += dx[t, :]; dx: [M, C], dE: [V, C]. */
    void embedBackward(A dx, int[] tokens, int C, A dE);

    // ---- RMSNorm ----

    /**
     * y = x · r · w per row with r = 1 / sqrt(mean(x²) + eps); x, y: [M, C], w: [C]; saves r: [M]
     * for the backward.
     */
    void rmsNormForward(A x, A w, double eps, int M, int C, A y, A rstd);

    /**
     * Backward of {@link #rmsNormForward}: dw[c] += Σ_m dy·x·r; dx += r·(dy ⊙ w) − r³·x·(Σ_c dy·w·x)/C.
     */
    void rmsNormBackward(A dy, A x, A w, A rstd, int M, int C, A dx, A dw);

    // ---- linear ----

    /** y[M, N] = x[M, K] · Wᵀ (+ b); W: [N, K] (PyTorch layout), b: [N] or null. */
    void linearForward(A x, A W, A b, int M, int K, int N, A y);

    /** Backward of {@link #linearForward}: dx += dy · W; dW += dyᵀ · x; db += Σ_m dy (db may be null). */
    void linearBackward(A dy, A x, A W, int M, int K, int N, A dx, A dW, A db);

    // ---- rotary embedding ----

    /**
     * Rotate-half RoPE in place on x: [B·T, heads, D], token t of each sequence at position t:
     * x1' = x1·cos − x2·sin, x2' = x2·cos + x1·sin for the two halves of every head.
     */
    void ropeForward(A x, int B, int T, int heads, int D, RopeTable rope);

    /** Backward of {@link #ropeForward} in place on dx (the rotation is orthogonal: rotate by −angle). */
    void ropeBackward(A dx, int B, int T, int heads, int D, RopeTable rope);

    // ---- attention ----

    /**
     * Causal self-attention of B independent sequences with grouped KV heads:
     * out = softmax(q·kᵀ/√D + causal mask)·v. q, out: [B·T, H·D]; k, v: [B·T, Hkv·D]; query head h
     * reads kv head h / (H / Hkv). Saves lse: [B, H, T], the log-sum-exp of each softmax row, so the
     * backward recomputes the probabilities instead of keeping B·H·T² of them.
     */
    void attentionForward(A q, A k, A v, int B, int T, int H, int Hkv, int D, A out, A lse);

    /**
     * Backward of {@link #attentionForward}: with P the softmax, dV += Pᵀ·dO, dP = dO·Vᵀ,
     * dS = P ⊙ (dP − rowsum(dO ⊙ O)), dQ += dS·K/√D, dK += dSᵀ·Q/√D.
     */
    void attentionBackward(A dOut, A q, A k, A v, A out, A lse, int B, int T, int H, int Hkv, int D,
                           A dq, A dk, A dv);

    /**
     * {@link #attentionForward} with a family's score math (core's {@link dev.shrink.core.ops.Ops#attention(float[],
     * float[], float[], int, int, int, int, int, int, double, float, float[])} for evaluation): s = (q·k)·{@code scale}
     * (Gemma's query_pre_attn_scalar^-0.5), then with {@code softcap} c &gt; 0 (Gemma 2's attn_logit_softcapping)
     * s = c·tanh(s/c), before the causal mask and the softmax; lse is of the capped scores. This default runs the
     * plain op for scale = 1/√D without a cap and throws otherwise (a backend without it: DistillRun refuses
     * those models on it up front).
     */
    default void attentionForward(A q, A k, A v, int B, int T, int H, int Hkv, int D, double scale, float softcap,
                                  A out, A lse) {
        requirePlain(D, scale, softcap);
        attentionForward(q, k, v, B, T, H, Hkv, D, out, lse);
    }

    /**
     * Backward of the scaled, soft-capped {@link #attentionForward(Object, Object, Object, int, int, int, int, int,
     * double, float, Object, Object)}: with dS the gradient of the capped scores (as in the plain op), the raw
     * scores' is dS ⊙ (1 − tanh²(s/c)) (s the scaled, uncapped score), and dQ += that·K·scale, dK += itsᵀ·Q·scale.
     */
    default void attentionBackward(A dOut, A q, A k, A v, A out, A lse, int B, int T, int H, int Hkv, int D,
                                   double scale, float softcap, A dq, A dk, A dv) {
        requirePlain(D, scale, softcap);
        attentionBackward(dOut, q, k, v, out, lse, B, T, H, Hkv, D, dq, dk, dv);
    }

    private void requirePlain(int D, double scale, float softcap) {
        if (softcap != 0 || scale != 1.0 / Math.sqrt(D)) {
            throw new UnsupportedOperationException(name() + ": attention with scale " + scale + " and soft-cap "
                    + softcap);
        }
    }

    // ---- soft-capping (Gemma 2's final logits) ----

    /**
     * x[i] = c·tanh(x[i]/c) in place for i &lt; n (c = {@code cap} &gt; 0), as the evaluation's
     * {@link dev.shrink.core.forward.Forward#capLogits}. This default throws (a backend without it).
     */
    default void softcapForward(A x, float cap, int n) {
        throw new UnsupportedOperationException(name() + ": soft-capping");
    }

    /**
     * Backward of {@link #softcapForward} in place on dy: dy[i] *= 1 − tanh²(x[i]/c), x the values
     * <em>before</em> the cap. This default throws (a backend without it).
     */
    default void softcapBackward(A dy, A x, float cap, int n) {
        throw new UnsupportedOperationException(name() + ": soft-capping");
    }

    // ---- SwiGLU ----

    /** out[i] = silu(g[i]) · u[i], silu(g) = g·σ(g); n elements. out must not alias g or u. */
    void swigluForward(A g, A u, int n, A out);

    /** Backward of {@link #swigluForward}: dg += dOut·u·σ(g)·(1 + g·(1 − σ(g))); du += dOut·silu(g). */
    void swigluBackward(A dOut, A g, A u, int n, A dg, A du);

    // ---- GeGLU (Gemma) ----

    /**
     * out[i] = gelu_tanh(g[i]) · u[i], gelu_tanh(g) = g/2 · (1 + tanh(√(2/π)·(g + 0.044715·g³)))
     * = g·σ(2a) with a = √(2/π)·(g + 0.044715·g³) (transformers' gelu_pytorch_tanh); n elements.
     * out must not alias g or u.
     */
    void gegluForward(A g, A u, int n, A out);

    /**
     * Backward of {@link #gegluForward}: with s = σ(2a), gelu' = s + g·s·(1 − s)·2√(2/π)·(1 + 3·0.044715·g²):
     * dg += dOut·u·gelu'; du += dOut·gelu_tanh(g).
     */
    void gegluBackward(A dOut, A g, A u, int n, A dg, A du);

    // ---- losses ----

    /**
     * The distillation loss of M rows of logits and its gradient, per {@link Losses}: for each row
     * m, {@code klScale · T² · D(teacher, student)} (D the KL or reverse KL at temperature T, 0 when
     * klScale = 0) plus {@code ceScale · CE(student, targets[m])} when targets[m] ≥ 0.
     * zs (student), zt (teacher, may be null when klScale = 0): [M, V]. Adds the gradient w.r.t. zs
     * into dzs (which may be zs itself: it is then overwritten by the gradient, row by row).
     *
     * @return the unscaled sums over rows: Σ T²·D and Σ CE (of the rows with a target), and the counts
     */
    Losses.Sums distillLoss(A zs, A zt, int[] targets, Losses.Kind kind, double temperature, int M, int V,
                            double klScale, double ceScale, A dzs);

    /**
     * Mean squared error between hidden states: returns Σ (a − b)² over n elements; adds
     * scale · 2 · (a − b) into da (da may be null: no gradient).
     */
    double squaredError(A a, A b, int n, double scale, A da);

    // ---- optimizer ----

    /** Σ a[i]², accumulated in double. */
    double sumSquares(A a);

    /** a[i] *= s. */
    void scale(A a, double s);

    /** One AdamW update of p with gradient g and moments m, v ({@link AdamW#step}). */
    void adamw(A p, A g, A m, A v, AdamW.Step step);

    /** a[idx[i]] = 0 for every listed index (a pruned weight's mask). */
    void zeroAt(A a, int[] idx);
}
