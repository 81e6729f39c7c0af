package dev.shrink.core.forward;

import dev.shrink.core.model.ArchitectureSpec;
import dev.shrink.core.model.ModelConfig;
import dev.shrink.core.ops.Ops;

/**
 * The host form of the one decoder {@link Forward}: float[] activations and {@link BlockWeights} on
 * the Java heap, the math through an {@link Ops} backend, plus the model-level ends (embedding
 * gather, final norm, logits) that the CPU's evaluation and stages use. The block itself is
 * {@link Forward}'s, shared with the GPU (docs/FORWARD.md).
 *
 * <p>Dimensions: B sequences of T tokens each, M = B·T rows, C hidden, H/Hkv heads, D head dim,
 * F intermediate, V vocabulary. The residual stream x is [M, C].
 */
public final class Decoder {
    private final Forward<float[], BlockWeights> forward;
    private final Ops ops;

    public Decoder(ModelConfig cfg, ArchitectureSpec spec, Ops ops) {
        this(cfg, spec, ops, KvCacheType.FP16);
    }

    /**
     * A decoder whose attention reads K and V through {@code kvCache}'s quantizer (docs/KV_CACHE.md):
     * K after RoPE and V are quantized and dequantized per token and KV head as a cache would store
     * them, in cached decoding and in cache-less windows alike.
     */
    public Decoder(ModelConfig cfg, ArchitectureSpec spec, Ops ops, KvCacheType kvCache) {
        this(new Forward<>(cfg, spec, new HostForwardOps(cfg, ops), kvCache, false), ops);
    }

    private Decoder(Forward<float[], BlockWeights> forward, Ops ops) {
        this.forward = forward;
        this.ops = ops;
    }

    /**
     * The same forward with every op's output checked for NaN and ±Inf: the first op that produces
     * one throws {@link NonFinite.OpException} naming it and its block. For diagnosis only (a pass
     * over every intermediate array): a forward whose result was not finite is run again with it.
     */
    public Decoder checking() {
        return new Decoder(forward.checking(), ops);
    }

    /** The block forward this decoder runs. */
    public Forward<float[], BlockWeights> forward() {
        return forward;
    }

    public Ops ops() {
        return ops;
    }

    public ModelConfig config() {
        return forward.config();
    }

    public ArchitectureSpec spec() {
        return forward.spec();
    }

    /** How attention reads K and V: fp16 (as computed) or through the int8 / int4 cache quantizer. */
    public KvCacheType kvCache() {
        return forward.kvCache();
    }

    /** x[t, :] = E[tokens[t], :] (times √C where the family scales embeddings: {@link Forward#scaleEmbeddings}); E: [V, C] → x: [M, C]. */
    public float[] embed(float[] E, int[] tokens) {
        int C = forward.config().hidden();
        return embed(tokens, (id, x, off) -> System.arraycopy(E, id * C, x, off, C));
    }

    /** {@link #embed(float[], int[])} with E's rows read from a linear kernel that holds E (a tied model's head). */
    public float[] embed(dev.shrink.core.ops.LinearKernel E, int[] tokens) {
        return embed(tokens, E::row);
    }

    private float[] embed(int[] tokens, RowCopy rows) {
        ModelConfig cfg = forward.config();
        int C = cfg.hidden();
        float[] x = new float[tokens.length * C];
        for (int t = 0; t < tokens.length; t++) {
            int id = tokens[t];
            if (id < 0 || id >= cfg.vocab()) {
                throw new IllegalArgumentException("token id " + id + " outside the vocabulary of " + cfg.vocab());
            }
            rows.copy(id, x, t * C);
        }
        forward.scaleEmbeddings(x, tokens.length);
        return x;
    }

    /** Copies E's row {@code id} to x[off ..). */
    @FunctionalInterface
    private interface RowCopy {
        void copy(int id, float[] x, int off);
    }

    /** {@link Forward#block}: block {@code w} in place on x: [B·T, C], from position 0 or continuing caches. */
    public void block(BlockWeights w, float[] x, int B, int T, KvCache[] caches, Taps taps) {
        forward.block(w, x, B, T, caches, taps);
    }

    /** {@link Forward#tapInputs}: the inputs of {@code linears} delivered to taps; x is not changed. */
    public void tapInputs(BlockWeights w, float[] x, int B, int T, java.util.Set<String> linears, Taps taps) {
        forward.tapInputs(w, x, B, T, linears, taps);
    }

    /** {@link Forward#attention}: the attention sub-block's output for a normed input, R candidate sets at once. */
    public float[] attention(BlockWeights w, float[] h, int B, int T, int R, KvCache[] caches, Taps taps) {
        return forward.attention(w, h, B, T, R, caches, taps);
    }

    /** {@link Forward#mlp}: the MLP sub-block's output for a normed input, R candidate sets at once. */
    public float[] mlp(BlockWeights w, float[] h, int M, int R, Taps taps) {
        return forward.mlp(w, h, M, R, taps);
    }

    /** Marks the T tokens just run through every block as cached. */
    public void advance(KvCache[] caches, int T) {
        for (KvCache c : caches) {
            c.advance(T);
        }
    }

    /** Final RMSNorm in place on x: [M, C]. */
    public void finalNorm(float[] normWeight, float[] x, int M) {
        forward.finalNorm(normWeight, x, M);
    }

    /** logits: [rows, V] = x[row0 .. row0+rows, :] · headᵀ, head: [V, C] (soft-capped: {@link Forward#capLogits}). */
    public float[] logits(float[] head, float[] x, int row0, int rows) {
        int C = forward.config().hidden(), V = forward.config().vocab();
        float[] out = new float[rows * V];
        ops.gemm(false, true, rows, V, C, 1f, x, row0 * C, C, head, 0, C, 0f, out, 0, V);
        forward.capLogits(out, out.length);
        forward.check(out, out.length, "the logits (lm_head)");
        return out;
    }

    /** {@link #logits(float[], float[], int, int)} with the head in a backend's own layout ({@link Ops#dense}): the same values. */
    public float[] logits(dev.shrink.core.ops.LinearKernel head, float[] x, int row0, int rows) {
        int C = forward.config().hidden(), V = forward.config().vocab();
        float[] in = row0 == 0 && x.length == rows * C ? x : java.util.Arrays.copyOfRange(x, row0 * C, (row0 + rows) * C);
        float[] out = new float[rows * V];
        head.apply(in, rows, out);
        forward.capLogits(out, out.length);
        forward.check(out, out.length, "the logits (lm_head)");
        return out;
    }
}
