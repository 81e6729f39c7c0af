package dev.shrink.core.forward;

/**
 * The math of the decoder forward over arrays of type {@code A} that live where the backend keeps
 * them (host float[] for cpu and cpu-reference, device buffers for cuda), with block weights of type
 * {@code W} as the backend holds them. {@link Forward} is written once against this interface; the
 * stages and evaluation run that one forward on every backend (docs/FORWARD.md).
 *
 * <p>Conventions: row-major float32 arrays; offsets and leading dimensions in elements; dimension
 * letters as in {@link dev.shrink.core.ops.Ops}: B sequences of T tokens, M = B·T rows, C hidden,
 * H/Hkv heads of head dim D, K input and N output features. Outputs are overwritten.
 *
 * @param <A> the array type
 * @param <W> one block's weights
 */
public interface ForwardOps<A, W> {

    /** Short name written into reports, e.g. "cpu-vector", "cuda". */
    String name();

    /** A new array of n floats (contents unspecified). */
    A alloc(long n);

    /** Hands back an array made by {@link #alloc} that the forward no longer uses (device backends reuse it). */
    default void release(A a) {
    }

    /**
     * dst[dstOff + i·dstLd + j] = src[srcOff + i·srcLd + j] for i &lt; rows, j &lt; width: a sub-matrix
     * copy (a sequence's rows, one candidate's columns).
     */
    void copy(A src, long srcOff, int srcLd, A dst, long dstOff, int dstLd, int rows, int width);

    /** x[i] += d[i] for i &lt; n: the residual add. */
    void add(A x, A d, long n);

    /** y = x / sqrt(mean(x²) + eps) · weight per row; x, y: [M, C] (y may be x), weight: [C]. */
    void rmsNorm(A x, A weight, float eps, int M, int C, A y);

    /** y[M, N] = x[M, K] · Wᵀ (+ b) for linear {@code name} (spec name) of block {@code w}. */
    void linear(W w, String name, A x, int M, int K, int N, A y);

    /** x[i] *= s for i &lt; n (Gemma's √hidden embedding normalizer). */
    void scale(A x, float s, long n);

    /** x[i] = cap · tanh(x[i] / cap) for i &lt; n (Gemma 2's final logit soft-capping), cap &gt; 0. */
    void softcap(A x, float cap, long n);

    /**
     * Rotate-half RoPE in place on x: [B·T, heads, D]; token t of every sequence sits at position
     * {@code start + t}; with block {@code layer}'s RoPE ({@link dev.shrink.core.model.ModelConfig#rope(int)}).
     */
    void rope(A x, int B, int T, int heads, int D, int start, int layer);

    /** In place on x: [rows, heads·D], what {@code type}'s cache stores and gives back ({@link KvCacheType#roundTrip}). */
    void kvRoundTrip(A x, int rows, int heads, int D, KvCacheType type);

    /**
     * Causal attention of B independent sequences of T tokens, each from position 0, with grouped KV
     * heads and an optional sliding window ({@link dev.shrink.core.ops.Ops#attention(float[], float[],
     * float[], int, int, int, int, int, int, float[])}): q, out: [B·T, H·D]; k, v: [B·T, Hkv·D]. The scores
     * are (q·k)·{@code scale}, soft-capped to c·tanh(s/c) with {@code softcap} c &gt; 0 (0: none).
     */
    void attention(A q, A k, A v, int B, int T, int H, int Hkv, int D, int window, double scale, float softcap, A out);

    /**
     * One sequence continuing its cache: appends k, v ([T, Hkv·D], positions cache.length()..) to
     * {@code cache}'s layer {@code layer} and attends q ([T, H·D]) to everything cached.
     *
     * @throws UnsupportedOperationException on a backend without host caches
     */
    void attendCached(KvCache cache, int layer, A q, A k, A v, int T, int H, int Hkv, int D, int window, double scale,
                      float softcap, A out);

    /** out[i] = silu(gate[i]) · up[i] for i &lt; n; out may be gate. */
    void swiglu(A gate, A up, long n, A out);

    /** out[i] = gelu_tanh(gate[i]) · up[i] for i &lt; n ({@link dev.shrink.core.ops.Ops#geglu}); out may be gate. */
    void geglu(A gate, A up, long n, A out);

    /**
     * The rows to allocate an expert's arrays for when n tokens are routed to it (at least n): n itself on
     * the host; a backend that pools arrays by size rounds it up, so that it keeps a few dozen sizes rather
     * than one array for every routed count it has seen.
     */
    default int rowCapacity(int n) {
        return n;
    }

    /** x[i] = 0 for i &lt; n. */
    void zero(A x, long n);

    /** A copy of x[0..n) in host memory (a mixture of experts' router logits [M, E], routed on the host). */
    float[] toHost(A x, long n);

    /**
     * dst[i, :] = src[rows[i], :] for i &lt; rows.length: the rows routed to one expert. src: [*, C] (each
     * rows[i] one of its rows), dst: [rows.length, C].
     */
    void gatherRows(A src, int[] rows, int C, A dst);

    /**
     * out[rows[i], :] += weights[i] · y[i, :] for i &lt; rows.length: an expert's output added into the
     * mixture, each product rounded to float before the add (transformers' {@code y * w} then
     * {@code index_add_}). y: [rows.length, C]; out: [*, C]; the rows are distinct.
     */
    void addScaledRows(A y, int[] rows, float[] weights, int C, A out);

    /** The first NaN or ±Inf among x[0..n) (NaN when the backend cannot say which), or null when all are finite. */
    Float firstNonFinite(A x, long n);

    /** Block {@code w}'s layer index. */
    int layer(W w);

    /** Block {@code w}'s input_layernorm weight: [C]. */
    A inputNorm(W w);

    /** Block {@code w}'s RMSNorm weight [C] of the MLP's input (LLaMA's post_attention_layernorm, Gemma's pre_feedforward_layernorm). */
    A postAttentionNorm(W w);

    /** Block {@code w}'s per-head RMSNorm weight of the queries, [D] (Qwen3's q_norm), or null. */
    A qNorm(W w);

    /** Block {@code w}'s per-head RMSNorm weight of the keys, [D], or null. */
    A kNorm(W w);

    /** Block {@code w}'s RMSNorm weight [C] of the attention's output (Gemma's post_attention_layernorm), or null. */
    A attentionOutputNorm(W w);

    /** Block {@code w}'s RMSNorm weight [C] of the MLP's output (Gemma's post_feedforward_layernorm), or null. */
    A mlpOutputNorm(W w);
}
