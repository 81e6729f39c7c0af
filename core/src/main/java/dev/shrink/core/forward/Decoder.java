package dev.shrink.core.forward;

import dev.shrink.core.model.ArchitectureSpec;
import dev.shrink.core.model.ArchitectureSpec.Role;
import dev.shrink.core.model.ModelConfig;
import dev.shrink.core.ops.Ops;

/**
 * The LLaMA-family decoder forward in float32 math, block by block, through {@link Ops}.
 * Pre-norm blocks: x += Attn(RMSNorm(x)); x += MLP(RMSNorm(x)), with rotate-half RoPE, grouped
 * KV heads and a SwiGLU MLP, as transformers' LlamaForCausalLM computes them.
 *
 * <p>Dimensions: B sequences of T tokens each, M = B·T rows, C hidden, H/Hkv heads, D head dim,
 * F intermediate, V vocabulary. The residual stream x is [M, C].
 */
public final class Decoder {
    private final ModelConfig cfg;
    private final ArchitectureSpec spec;
    private final Ops ops;
    private final boolean checking;
    private final KvCacheType kvCache;
    private float[] cos; // [P, D/2]
    private float[] sin; // [P, D/2]
    private int tablePositions;

    public Decoder(ModelConfig cfg, ArchitectureSpec spec, Ops ops) {
        this(cfg, spec, ops, KvCacheType.FP16, false);
    }

    /**
     * A decoder whose attention reads K and V through {@code kvCache}'s quantizer (docs/KV_CACHE.md):
     * K after RoPE and V are quantized and dequantized per token and KV head as a cache would store
     * them, in cached decoding and in cache-less windows alike.
     */
    public Decoder(ModelConfig cfg, ArchitectureSpec spec, Ops ops, KvCacheType kvCache) {
        this(cfg, spec, ops, kvCache, false);
    }

    private Decoder(ModelConfig cfg, ArchitectureSpec spec, Ops ops, KvCacheType kvCache, boolean checking) {
        this.cfg = cfg;
        this.spec = spec;
        this.ops = ops;
        this.kvCache = kvCache;
        this.checking = checking;
        ensureRope(Math.min(cfg.maxPositions(), 16));
    }

    /**
     * The same forward with every op's output checked for NaN and ±Inf: the first op that produces
     * one throws {@link NonFinite.OpException} naming it and its block. For diagnosis only (a pass
     * over every intermediate array): a forward whose result was not finite is run again with it.
     */
    public Decoder checking() {
        return new Decoder(cfg, spec, ops, kvCache, true);
    }

    /** In a checking decoder: throws when x[0..n) holds a non-finite value, naming {@code where}. */
    private void checkAt(float[] x, int n, String where) {
        if (checking) {
            int i = NonFinite.first(x, n);
            if (i >= 0) {
                throw new NonFinite.OpException(where, x[i]);
            }
        }
    }

    private void check(float[] x, int layer, String what) {
        if (checking) {
            checkAt(x, x.length, "layer " + layer + " " + what);
        }
    }

    public Ops ops() {
        return ops;
    }

    public ModelConfig config() {
        return cfg;
    }

    public ArchitectureSpec spec() {
        return spec;
    }

    /** How attention reads K and V: fp16 (as computed) or through the int8 / int4 cache quantizer. */
    public KvCacheType kvCache() {
        return kvCache;
    }

    /**
     * RoPE tables for positions 0..P−1 at least: angle = (float) p · inv_freq[i], as torch computes
     * the outer product in float32; cos and sin of that float angle. The tables grow with the
     * positions actually used (doubling, so decoding token by token recomputes them only log(P)
     * times), never to max_position_embeddings itself, which configs set as high as 2^29.
     */
    private void ensureRope(int needed) {
        if (needed <= tablePositions) {
            return;
        }
        int half = cfg.headDim() / 2;
        long grown = Math.max(needed, Math.min(2L * tablePositions, cfg.maxPositions()));
        if (grown * half > Integer.MAX_VALUE - 8) {
            throw new IllegalArgumentException("RoPE tables for " + needed + " positions exceed a Java array");
        }
        int P = (int) grown;
        double[] inv = cfg.rope().inverseFrequencies(cfg.headDim());
        float[] c = new float[P * half];
        float[] s = new float[P * half];
        for (int p = 0; p < P; p++) {
            for (int i = 0; i < half; i++) {
                float angle = (float) p * (float) inv[i];
                c[p * half + i] = (float) Math.cos(angle);
                s[p * half + i] = (float) Math.sin(angle);
            }
        }
        cos = c;
        sin = s;
        tablePositions = P;
    }

    /** x[t, :] = E[tokens[t], :]; E: [V, C] → x: [M, C]. */
    public float[] embed(float[] E, int[] tokens) {
        int C = cfg.hidden();
        float[] x = new float[tokens.length * C];
        for (int t = 0; t < tokens.length; t++) {
            int id = tokens[t];
            if (id < 0 || id >= cfg.vocab()) {
                throw new IllegalArgumentException("token id " + id + " outside the vocabulary of " + cfg.vocab());
            }
            System.arraycopy(E, id * C, x, t * C, C);
        }
        return x;
    }

    /**
     * Runs block {@code w} in place on x: [B·T, C]. Without a cache (caches == null) each of the B
     * sequences starts at position 0; with caches (one per sequence) the T new tokens follow what
     * the cache holds and their keys and values are appended to it.
     */
    public void block(BlockWeights w, float[] x, int B, int T, KvCache[] caches, Taps taps) {
        int C = cfg.hidden();
        int M = B * T;
        int layer = w.layer();
        taps.blockInput(layer, x, M, C);

        // Attention: h = RMSNorm(x); x += Attn(h)·Woᵀ
        float[] h = new float[M * C];
        ops.rmsNorm(x, w.inputNorm(), (float) cfg.rmsNormEps(), M, C, h);
        check(h, layer, "input_layernorm (RMSNorm)");
        float[] o = attention(w, h, B, T, 1, caches, taps);
        addInPlace(x, o);
        check(x, layer, "residual add after attention");

        // MLP: h = RMSNorm(x); x += (silu(h·Wgᵀ) ⊙ h·Wuᵀ)·Wdᵀ
        ops.rmsNorm(x, w.postAttentionNorm(), (float) cfg.rmsNormEps(), M, C, h);
        check(h, layer, "post_attention_layernorm (RMSNorm)");
        float[] d = mlp(w, h, M, 1, taps);
        addInPlace(x, d);
        check(x, layer, "residual add after the MLP");
        taps.blockOutput(layer, x, M, C);
    }

    /**
     * Runs block {@code w} on x: [B·T, C] only as far as it must to deliver the inputs of
     * {@code linears} (spec names) to {@code taps}, with the same operations in the same order as
     * {@link #block}, so the taps see identical values; x is not changed. GPTQ's true-sequential
     * passes use it: the q/k/v group needs only the first norm, {o} the attention, and so on.
     */
    public void tapInputs(BlockWeights w, float[] x, int B, int T, java.util.Set<String> linears, Taps taps) {
        int C = cfg.hidden();
        int M = B * T;
        int layer = w.layer();
        int depth = 0; // 0: q/k/v, 1: o, 2: gate/up, 3: down
        for (String name : linears) {
            for (ArchitectureSpec.Linear l : spec.linears()) {
                if (l.name().equals(name)) {
                    depth = Math.max(depth, switch (l.role()) {
                        case Q, K, V -> 0;
                        case O -> 1;
                        case GATE, UP -> 2;
                        case DOWN -> 3;
                    });
                }
            }
        }
        float[] h = new float[M * C];
        ops.rmsNorm(x, w.inputNorm(), (float) cfg.rmsNormEps(), M, C, h);
        if (depth == 0) {
            for (Role r : new Role[] {Role.Q, Role.K, Role.V}) {
                taps.linearInput(layer, spec.linear(r).name(), h, M, C);
            }
            return;
        }
        float[] o = attention(w, h, B, T, 1, null, taps);
        if (depth == 1) {
            return;
        }
        float[] x2 = x.clone();
        addInPlace(x2, o);
        ops.rmsNorm(x2, w.postAttentionNorm(), (float) cfg.rmsNormEps(), M, C, h);
        if (depth == 2) {
            taps.linearInput(layer, spec.linear(Role.GATE).name(), h, M, C);
            taps.linearInput(layer, spec.linear(Role.UP).name(), h, M, C);
            return;
        }
        mlp(w, h, M, 1, taps);
    }

    /**
     * The attention sub-block's output for a normed input: {@code o = Attn(h)·Woᵀ (+ b)}, where
     * q, k, v = h·Wᵀ (+ b), RoPE, softmax(q·kᵀ/√D)·v. h: [M, C] with M = B·T → o: [M·R, C].
     *
     * <p>{@code R} candidate weight sets are evaluated at once (AWQ's grid search): the q, k and v
     * linears of {@code w} then hold R sets stacked along the output dim ([R·H·D, C], [R·Hkv·D, C],
     * biases [R·H·D] ...) so that one GEMM computes every candidate's projections; o is shared.
     * Row {@code m·R + r} of the result is token m under set r. With R = 1 this is exactly what
     * {@link #block} computes. Caches (one per sequence, as in {@link #block}) need R = 1.
     */
    public float[] attention(BlockWeights w, float[] h, int B, int T, int R, KvCache[] caches, Taps taps) {
        int C = cfg.hidden(), H = cfg.heads(), Hkv = cfg.kvHeads(), D = cfg.headDim();
        int M = B * T, qDim = H * D, kvDim = Hkv * D;
        if (R < 1 || (caches != null && R != 1)) {
            throw new IllegalArgumentException("R = " + R + (caches != null ? " with caches" : "") + "; need R ≥ 1, and 1 with caches");
        }
        int layer = w.layer();
        String qn = spec.linear(Role.Q).name(), kn = spec.linear(Role.K).name(), vn = spec.linear(Role.V).name();
        String on = spec.linear(Role.O).name();
        taps.linearInput(layer, qn, h, M, C);
        taps.linearInput(layer, kn, h, M, C);
        taps.linearInput(layer, vn, h, M, C);
        float[] q = linear(w, qn, h, M, C, R * qDim);   // [M, R·H·D]
        float[] k = linear(w, kn, h, M, C, R * kvDim);  // [M, R·Hkv·D]
        float[] v = linear(w, vn, h, M, C, R * kvDim);  // [M, R·Hkv·D]
        int window = cfg.slidingWindow(layer);
        float[] attn = new float[M * R * qDim];         // [M, R, H·D]
        int[] positions = new int[T];
        for (int b = 0; b < B; b++) {
            int start = caches == null ? 0 : caches[b].length();
            ensureRope(start + T);
            for (int t = 0; t < T; t++) {
                positions[t] = start + t;
            }
            for (int r = 0; r < R; r++) {
                float[] qb = rows(q, b * T, T, R * qDim, r * qDim, qDim);
                float[] kb = rows(k, b * T, T, R * kvDim, r * kvDim, kvDim);
                float[] vb = rows(v, b * T, T, R * kvDim, r * kvDim, kvDim);
                ops.rope(qb, T, H, D, positions, cos, sin);
                ops.rope(kb, T, Hkv, D, positions, cos, sin);
                check(qb, layer, "rotary embedding of the queries");
                check(kb, layer, "rotary embedding of the keys");
                kvCache.roundTrip(kb, T, Hkv, D); // what a quantized cache gives back (nothing for fp16)
                kvCache.roundTrip(vb, T, Hkv, D);
                float[] out = new float[T * qDim];
                if (caches == null) {
                    ops.attention(qb, kb, vb, T, T, H, Hkv, D, window, out);
                } else {
                    caches[b].append(layer, kb, 0, vb, 0, T);
                    ops.attention(qb, caches[b].keys(layer), caches[b].values(layer), T, start + T, H, Hkv, D, window, out);
                }
                check(out, layer, "attention (softmax(q·kᵀ/√D)·v)");
                if (R == 1) {
                    System.arraycopy(out, 0, attn, b * T * qDim, T * qDim);
                } else {
                    for (int t = 0; t < T; t++) {
                        System.arraycopy(out, t * qDim, attn, ((b * T + t) * R + r) * qDim, qDim);
                    }
                }
            }
        }
        taps.linearInput(layer, on, attn, M * R, qDim);
        return linear(w, on, attn, M * R, qDim, C);
    }

    /**
     * The MLP sub-block's output for a normed input: {@code d = (silu(h·Wgᵀ) ⊙ h·Wuᵀ)·Wdᵀ}.
     * h: [M, C] → d: [M·R, C].
     *
     * <p>{@code R} candidate weight sets at once, as in {@link #attention}: gate and up of
     * {@code w} then hold R sets stacked along the output dim ([R·F, C]); down is shared. Row
     * {@code m·R + r} of the result is token m under set r; R = 1 is exactly {@link #block}'s MLP.
     */
    public float[] mlp(BlockWeights w, float[] h, int M, int R, Taps taps) {
        int C = cfg.hidden(), F = cfg.intermediate();
        if (R < 1) {
            throw new IllegalArgumentException("R = " + R + " must be at least 1");
        }
        int layer = w.layer();
        String gn = spec.linear(Role.GATE).name(), un = spec.linear(Role.UP).name(), dn = spec.linear(Role.DOWN).name();
        taps.linearInput(layer, gn, h, M, C);
        taps.linearInput(layer, un, h, M, C);
        float[] g = linear(w, gn, h, M, C, R * F);   // [M, R·F] = [M·R, F]
        float[] u = linear(w, un, h, M, C, R * F);   // [M, R·F]
        ops.swiglu(g, u, M * R * F, g);
        check(g, layer, "SwiGLU (silu(gate) · up)");
        taps.linearInput(layer, dn, g, M * R, F);
        return linear(w, dn, g, M * R, F, C);        // [M·R, C]
    }

    /** Marks the T tokens just run through every block as cached. */
    public void advance(KvCache[] caches, int T) {
        for (KvCache c : caches) {
            c.advance(T);
        }
    }

    /** y = x·Wᵀ + b for linear {@code name}: x: [M, K] → y: [M, N]. */
    private float[] linear(BlockWeights w, String name, float[] x, int M, int K, int N) {
        float[] y = new float[M * N];
        ops.linear(x, M, K, w.weight(name), N, y);
        float[] bias = w.bias(name);
        if (bias != null) {
            for (int m = 0; m < M; m++) {
                for (int n = 0; n < N; n++) {
                    y[m * N + n] += bias[n];
                }
            }
        }
        check(y, w.layer(), name + " (linear " + spec.layer(w.layer(), name) + ")");
        return y;
    }

    /** Final RMSNorm in place on x: [M, C]. */
    public void finalNorm(float[] normWeight, float[] x, int M) {
        ops.rmsNorm(x, normWeight, (float) cfg.rmsNormEps(), M, cfg.hidden(), x);
        checkAt(x, M * cfg.hidden(), "the final norm (RMSNorm)");
    }

    /** logits: [rows, V] = x[row0 .. row0+rows, :] · headᵀ, head: [V, C]. */
    public float[] logits(float[] head, float[] x, int row0, int rows) {
        int C = cfg.hidden(), V = cfg.vocab();
        float[] out = new float[rows * V];
        ops.gemm(false, true, rows, V, C, 1f, x, row0 * C, C, head, 0, C, 0f, out, 0, V);
        checkAt(out, out.length, "the logits (lm_head)");
        return out;
    }

    /** Rows row0..row0+n of a matrix with leading dim ld, columns col0..col0+width: a [n, width] copy. */
    private static float[] rows(float[] a, int row0, int n, int ld, int col0, int width) {
        float[] s = new float[n * width];
        if (ld == width && col0 == 0) {
            System.arraycopy(a, row0 * ld, s, 0, n * width);
            return s;
        }
        for (int i = 0; i < n; i++) {
            System.arraycopy(a, (row0 + i) * ld + col0, s, i * width, width);
        }
        return s;
    }

    private static void addInPlace(float[] x, float[] d) {
        for (int i = 0; i < x.length; i++) {
            x[i] += d[i];
        }
    }
}
