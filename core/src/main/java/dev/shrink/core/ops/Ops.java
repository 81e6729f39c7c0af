package dev.shrink.core.ops;

/**
 * The math every stage does, by name. Stage and model code call only these; the backends
 * (plain-Java reference, Vector API, later CUDA) implement them and are tested against the
 * reference, which is the spec.
 *
 * <p>All arrays are row-major float32 on the Java heap with explicit offsets. Dimension letters:
 * M rows of activations, K input features, N output features, T tokens of a sequence,
 * H query heads, Hkv key/value heads, D head dim, V vocabulary.
 */
public interface Ops {

    /** Short name written into reports, e.g. "cpu-vector". */
    String name();

    /**
     * C = alpha · op(A) · op(B) + beta · C, the BLAS sgemm on row-major arrays.
     * op(A): [M, K] (A stored [M, K] with leading dim lda, or [K, M] when transA);
     * op(B): [K, N] (B stored [K, N] with ldb, or [N, K] when transB); C: [M, N] with ldc.
     * With beta == 0, C is overwritten (its old contents, even NaN, are ignored).
     */
    void gemm(boolean transA, boolean transB, int M, int N, int K, float alpha,
              float[] A, int aOff, int lda, float[] B, int bOff, int ldb,
              float beta, float[] C, int cOff, int ldc);

    /** A linear layer without bias: y[M, N] = x[M, K] · Wᵀ, W: [N, K] (PyTorch layout). */
    default void linear(float[] x, int M, int K, float[] W, int N, float[] y) {
        gemm(false, true, M, N, K, 1f, x, 0, K, W, 0, K, 0f, y, 0, N);
    }

    /** RMSNorm per row: y = x / sqrt(mean(x²) + eps) · weight; x, y: [M, C], weight: [C]. y may be x. */
    void rmsNorm(float[] x, float[] weight, float eps, int M, int C, float[] y);

    /**
     * Rotary embedding, rotate-half layout (HF LLaMA), in place on x: [T, heads, D]; token t has
     * position positions[t]. cos, sin: [maxPos, D/2] tables.
     */
    void rope(float[] x, int T, int heads, int D, int[] positions, float[] cos, float[] sin);

    /**
     * Causal self-attention for one sequence with grouped KV heads.
     * q: [Tq, H, D]; k, v: [Tk, Hkv, D]; out: [Tq, H, D]. Query row i sits at absolute position
     * (Tk − Tq + i) and attends to keys 0..that position. Scale 1/sqrt(D), softmax in float32.
     */
    void attention(float[] q, float[] k, float[] v, int Tq, int Tk, int H, int Hkv, int D, float[] out);

    /**
     * {@link #attention} restricted to a sliding window: query row i, at absolute position
     * p = Tk − Tq + i, attends keys max(0, p − window + 1)..p only (the {@code window} most recent,
     * itself included; transformers' masking_utils sliding_window_overlay: kv_idx &gt; q_idx − window).
     * {@code window} ≤ 0 or ≥ Tk is plain causal attention. This default runs each query row that the
     * window cuts through the causal op on its window's keys; backends override it with a masked loop.
     */
    default void attention(float[] q, float[] k, float[] v, int Tq, int Tk, int H, int Hkv, int D, int window,
                           float[] out) {
        if (window <= 0 || window >= Tk) {
            attention(q, k, v, Tq, Tk, H, Hkv, D, out);
            return;
        }
        int qRow = H * D, kvRow = Hkv * D;
        float[] qi = new float[qRow];
        float[] oi = new float[qRow];
        for (int i = 0; i < Tq; i++) {
            int p = Tk - Tq + i, first = Math.max(0, p - window + 1);
            float[] ki = java.util.Arrays.copyOfRange(k, first * kvRow, (p + 1) * kvRow);
            float[] vi = java.util.Arrays.copyOfRange(v, first * kvRow, (p + 1) * kvRow);
            System.arraycopy(q, i * qRow, qi, 0, qRow);
            attention(qi, ki, vi, 1, p + 1 - first, H, Hkv, D, oi);
            System.arraycopy(oi, 0, out, i * qRow, qRow);
        }
    }

    /**
     * {@link #attention(float[], float[], float[], int, int, int, int, int, int, float[])} with the
     * score math of a family: s = (q·k)·{@code scale}, then with {@code softcap} c &gt; 0 (Gemma 2's
     * attn_logit_softcapping) s = c·tanh(s / c), before the mask and the float32 softmax (transformers'
     * eager attention). {@code scale} = 1/√D with {@code softcap} = 0 is exactly the plain op, which
     * this default runs; backends override it for the other values.
     *
     * @throws UnsupportedOperationException from this default for another scale or a soft-cap
     */
    default void attention(float[] q, float[] k, float[] v, int Tq, int Tk, int H, int Hkv, int D, int window,
                           double scale, float softcap, float[] out) {
        if (softcap != 0 || scale != 1.0 / Math.sqrt(D)) {
            throw new UnsupportedOperationException(name() + ": attention with scale " + scale + " and soft-cap " + softcap);
        }
        attention(q, k, v, Tq, Tk, H, Hkv, D, window, out);
    }

    /** SwiGLU: out[i] = silu(gate[i]) · up[i] for i < n; out may alias gate. */
    void swiglu(float[] gate, float[] up, int n, float[] out);

    /**
     * GeGLU (Gemma's MLP): out[i] = gelu_tanh(gate[i]) · up[i] for i &lt; n, out may alias gate, with
     * transformers' gelu_pytorch_tanh: gelu_tanh(g) = g/2 · (1 + tanh(√(2/π)·(g + 0.044715·g³))).
     *
     * @throws UnsupportedOperationException from this default (backends implement it)
     */
    default void geglu(float[] gate, float[] up, int n, float[] out) {
        throw new UnsupportedOperationException(name() + " has no GeGLU");
    }

    /**
     * Negative log-likelihood per row: nll[m] = logsumexp(logits[m, :]) − logits[m, target[m]],
     * computed in float32 with the max subtracted, accumulated per row in double.
     * logits: [M, V].
     */
    void crossEntropy(float[] logits, int M, int V, int[] targets, double[] nll);

    /**
     * {@code q} in a form this backend multiplies without dequantizing it to float32 first, with the
     * result {@code linear} gives on {@code q.dequantize()} (and its bias) bit for bit; or null where the
     * backend has none for its bits (then the caller dequantizes). Default: none.
     */
    default LinearKernel packed(dev.shrink.core.quant.QuantizedLinear q) {
        return null;
    }

    /**
     * The float32 linear W [N, K] (PyTorch layout) and bias ([N] or null) in a form this backend
     * multiplies faster than {@code linear} (laid out once, not per call), with the result
     * {@code linear} gives followed by y[m, n] += bias[n], bit for bit; or null where the backend has
     * none (then the caller keeps W and calls {@code linear}). The kernel keeps no reference to W.
     * Default: none.
     */
    default LinearKernel dense(float[] W, int N, int K, float[] bias) {
        return null;
    }
}
