package dev.shrink.core.forward;

import dev.shrink.core.model.ArchitectureSpec;
import dev.shrink.core.model.ArchitectureSpec.Role;
import dev.shrink.core.model.ModelConfig;
import dev.shrink.core.model.MoeConfig;
import java.util.Set;

/**
 * The decoder block forward of the LLaMA family, written once for every backend (docs/FORWARD.md):
 * pre-norm blocks x += Attn(RMSNorm(x)); x += MLP(RMSNorm(x)) with rotate-half RoPE, grouped KV
 * heads, optional per-head q/k RMSNorms (Qwen3), optional sliding windows and a SwiGLU MLP, as transformers' LlamaForCausalLM computes them;
 * Gemma 2 / 3 as the same block with data of their spec and config: RMSNorms of the attention and MLP
 * outputs before the residual adds, GeGLU, query_pre_attn_scalar's attention scale, soft-capped scores,
 * a RoPE per layer type, scaled embeddings and soft-capped logits ({@link #scaleEmbeddings}, {@link #capLogits}),
 * over the arrays of a {@link ForwardOps} backend: host float[] ({@link Decoder}, the CPU stages) or
 * device buffers (the GPU's resident evaluation). Taps deliver the backend's arrays.
 *
 * <p>Dimensions: B sequences of T tokens each, M = B·T rows, C hidden, H/Hkv heads, D head dim,
 * F intermediate. The residual stream x is [M, C].
 */
public final class Forward<A, W> {
    private final ModelConfig cfg;
    private final ArchitectureSpec spec;
    private final ForwardOps<A, W> ops;
    private final KvCacheType kvCache;
    private final boolean checking;

    /**
     * @param kvCache  how attention reads K and V: fp16 (as computed) or through an int8 / int4 cache
     *                 quantizer (docs/KV_CACHE.md), in cached decoding and cache-less windows alike
     * @param checking check every op's output for NaN and ±Inf, throwing {@link NonFinite.OpException}
     *                 naming the first op that produced one (for diagnosis: a pass over every array)
     */
    public Forward(ModelConfig cfg, ArchitectureSpec spec, ForwardOps<A, W> ops, KvCacheType kvCache, boolean checking) {
        this.cfg = cfg;
        this.spec = spec;
        this.ops = ops;
        this.kvCache = kvCache;
        this.checking = checking;
    }

    public ForwardOps<A, W> ops() {
        return ops;
    }

    public ModelConfig config() {
        return cfg;
    }

    public ArchitectureSpec spec() {
        return spec;
    }

    public KvCacheType kvCache() {
        return kvCache;
    }

    /** This forward with every op's output checked (see the constructor). */
    public Forward<A, W> checking() {
        return new Forward<>(cfg, spec, ops, kvCache, true);
    }

    /** In a checking forward: throws when x[0..n) holds a non-finite value, naming {@code where}. */
    public void check(A x, long n, String where) {
        if (checking) {
            Float bad = ops.firstNonFinite(x, n);
            if (bad != null) {
                throw new NonFinite.OpException(where, bad);
            }
        }
    }

    private void check(A x, long n, int layer, String what) {
        if (checking) {
            check(x, n, "layer " + layer + " " + what);
        }
    }

    /**
     * Runs block {@code w} in place on x: [B·T, C]. Without caches (caches == null) each of the B
     * sequences starts at position 0; with caches (one per sequence, a host backend's) the T new
     * tokens follow what the cache holds and their keys and values are appended to it.
     */
    public void block(W w, A x, int B, int T, KvCache[] caches, ArrayTaps<A> taps) {
        int C = cfg.hidden();
        int M = B * T;
        long MC = (long) M * C;
        int layer = ops.layer(w);
        float eps = (float) cfg.rmsNormEps();
        taps.blockInput(layer, x, M, C);

        // Attention: h = RMSNorm(x); x += Attn(h)·Woᵀ
        A h = ops.alloc(MC);
        ops.rmsNorm(x, ops.inputNorm(w), eps, M, C, h);
        check(h, MC, layer, "input_layernorm (RMSNorm)");
        A o = attention(w, h, B, T, 1, caches, taps);
        outputNorm(ops.attentionOutputNorm(w), o, M, layer, "the attention output");
        ops.add(x, o, MC);
        ops.release(o);
        check(x, MC, layer, "residual add after attention");

        // MLP: h = RMSNorm(x); x += (silu(h·Wgᵀ) ⊙ h·Wuᵀ)·Wdᵀ
        ops.rmsNorm(x, ops.postAttentionNorm(w), eps, M, C, h);
        check(h, MC, layer, spec.postAttentionNorm().replace(".weight", "") + " (RMSNorm)");
        A d = mlp(w, h, M, 1, taps);
        ops.release(h);
        outputNorm(ops.mlpOutputNorm(w), d, M, layer, "the MLP output");
        ops.add(x, d, MC);
        ops.release(d);
        check(x, MC, layer, "residual add after the MLP");
        taps.blockOutput(layer, x, M, C);
    }

    /** Gemma's RMSNorm of a sub-block's output y: [M, C] in place before its residual add; nothing when norm is null. */
    private void outputNorm(A norm, A y, int M, int layer, String what) {
        if (norm != null) {
            ops.rmsNorm(y, norm, (float) cfg.rmsNormEps(), M, cfg.hidden(), y);
            check(y, (long) M * cfg.hidden(), layer, "RMSNorm of " + what);
        }
    }

    /**
     * Runs block {@code w} on x: [B·T, C] only as far as it must to deliver the inputs of
     * {@code linears} (spec names) to {@code taps}, with the same operations in the same order as
     * {@link #block}, so the taps see identical values; x is not changed. GPTQ's true-sequential
     * passes use it: the q/k/v group needs only the first norm, {o} the attention, and so on.
     */
    public void tapInputs(W w, A x, int B, int T, Set<String> linears, ArrayTaps<A> taps) {
        int C = cfg.hidden();
        int M = B * T;
        long MC = (long) M * C;
        int layer = ops.layer(w);
        float eps = (float) cfg.rmsNormEps();
        int depth = 0; // 0: q/k/v, 1: o, 2: gate/up, 3: down (a sparse block's experts: the whole MLP)
        for (String name : linears) {
            if (cfg.sparseLayer(layer) && spec.linears().stream().noneMatch(l -> l.name().equals(name)
                    && l.role() != Role.GATE && l.role() != Role.UP && l.role() != Role.DOWN)) {
                depth = 3;
            }
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
        A h = ops.alloc(MC);
        try {
            ops.rmsNorm(x, ops.inputNorm(w), eps, M, C, h);
            if (depth == 0) {
                for (Role r : new Role[] {Role.Q, Role.K, Role.V}) {
                    taps.linearInput(layer, spec.linear(r).name(), h, M, C);
                }
                return;
            }
            A o = attention(w, h, B, T, 1, null, taps);
            if (depth == 1) {
                ops.release(o);
                return;
            }
            outputNorm(ops.attentionOutputNorm(w), o, M, layer, "the attention output");
            A x2 = ops.alloc(MC);
            ops.copy(x, 0, C, x2, 0, C, M, C);
            ops.add(x2, o, MC);
            ops.release(o);
            ops.rmsNorm(x2, ops.postAttentionNorm(w), eps, M, C, h);
            ops.release(x2);
            if (depth == 2 && !cfg.sparseLayer(layer)) {
                taps.linearInput(layer, spec.linear(Role.GATE).name(), h, M, C);
                taps.linearInput(layer, spec.linear(Role.UP).name(), h, M, C);
                return;
            }
            ops.release(mlp(w, h, M, 1, taps));
        } finally {
            ops.release(h);
        }
    }

    /**
     * The attention sub-block's output for a normed input: {@code o = Attn(h)·Woᵀ (+ b)}, where
     * q, k, v = h·Wᵀ (+ b), RoPE, softmax(q·kᵀ/√D)·v (the config's scale and soft-cap in place of 1/√D);
     * Gemma's norm of this output is not applied here. h: [M, C] with M = B·T → o: [M·R, C].
     *
     * <p>{@code R} candidate weight sets are evaluated at once (AWQ's grid search): the q, k and v
     * linears of {@code w} then hold R sets stacked along the output dim ([R·H·D, C], [R·Hkv·D, C],
     * biases [R·H·D] ...) so that one GEMM computes every candidate's projections; o is shared.
     * Row {@code m·R + r} of the result is token m under set r. With R = 1 this is exactly what
     * {@link #block} computes. Caches (one per sequence, as in {@link #block}) need R = 1.
     */
    public A attention(W w, A h, int B, int T, int R, KvCache[] caches, ArrayTaps<A> taps) {
        int C = cfg.hidden(), H = cfg.heads(), Hkv = cfg.kvHeads(), D = cfg.headDim();
        int M = B * T, qDim = H * D, kvDim = Hkv * D;
        if (R < 1 || (caches != null && R != 1)) {
            throw new IllegalArgumentException("R = " + R + (caches != null ? " with caches" : "") + "; need R ≥ 1, and 1 with caches");
        }
        int layer = ops.layer(w);
        String qn = spec.linear(Role.Q).name(), kn = spec.linear(Role.K).name(), vn = spec.linear(Role.V).name();
        String on = spec.linear(Role.O).name();
        taps.linearInput(layer, qn, h, M, C);
        taps.linearInput(layer, kn, h, M, C);
        taps.linearInput(layer, vn, h, M, C);
        A q = linear(w, qn, h, M, C, R * qDim);   // [M, R·H·D]
        A k = linear(w, kn, h, M, C, R * kvDim);  // [M, R·Hkv·D]
        A v = linear(w, vn, h, M, C, R * kvDim);  // [M, R·Hkv·D]
        A qNorm = ops.qNorm(w);
        if (qNorm != null) { // Qwen3: RMSNorm over each head's D values of q and k, before RoPE
            float eps = (float) cfg.rmsNormEps();
            ops.rmsNorm(q, qNorm, eps, M * R * H, D, q);
            ops.rmsNorm(k, ops.kNorm(w), eps, M * R * Hkv, D, k);
            check(q, (long) M * R * qDim, layer, "q_norm (per-head RMSNorm)");
            check(k, (long) M * R * kvDim, layer, "k_norm (per-head RMSNorm)");
        }
        int window = cfg.slidingWindow(layer);
        A attn = ops.alloc((long) M * R * qDim);  // [M, R, H·D]
        if (caches == null && R == 1) {
            // every sequence from position 0: all B at once
            rotateAndAttend(q, k, v, B, T, 0, layer, window, null, attn);
        } else if (caches == null) {
            // candidate r's columns of every sequence; its output rows interleaved: row m·R + r
            A qr = ops.alloc((long) M * qDim), kr = ops.alloc((long) M * kvDim), vr = ops.alloc((long) M * kvDim);
            A out = ops.alloc((long) M * qDim);
            for (int r = 0; r < R; r++) {
                ops.copy(q, (long) r * qDim, R * qDim, qr, 0, qDim, M, qDim);
                ops.copy(k, (long) r * kvDim, R * kvDim, kr, 0, kvDim, M, kvDim);
                ops.copy(v, (long) r * kvDim, R * kvDim, vr, 0, kvDim, M, kvDim);
                rotateAndAttend(qr, kr, vr, B, T, 0, layer, window, null, out);
                ops.copy(out, 0, qDim, attn, (long) r * qDim, R * qDim, M, qDim);
            }
            ops.release(qr);
            ops.release(kr);
            ops.release(vr);
            ops.release(out);
        } else {
            // each sequence continues its own cache
            A qb = ops.alloc((long) T * qDim), kb = ops.alloc((long) T * kvDim), vb = ops.alloc((long) T * kvDim);
            A out = ops.alloc((long) T * qDim);
            for (int b = 0; b < B; b++) {
                ops.copy(q, (long) b * T * qDim, qDim, qb, 0, qDim, T, qDim);
                ops.copy(k, (long) b * T * kvDim, kvDim, kb, 0, kvDim, T, kvDim);
                ops.copy(v, (long) b * T * kvDim, kvDim, vb, 0, kvDim, T, kvDim);
                rotateAndAttend(qb, kb, vb, 1, T, caches[b].length(), layer, window, caches[b], out);
                ops.copy(out, 0, qDim, attn, (long) b * T * qDim, qDim, T, qDim);
            }
            ops.release(qb);
            ops.release(kb);
            ops.release(vb);
            ops.release(out);
        }
        ops.release(q);
        ops.release(k);
        ops.release(v);
        taps.linearInput(layer, on, attn, M * R, qDim);
        A o = linear(w, on, attn, M * R, qDim, C);
        ops.release(attn);
        return o;
    }

    /** RoPE on q and k of B sequences from position {@code start}, the KV cache's round trip, attention (cached when {@code cache} is set). */
    private void rotateAndAttend(A q, A k, A v, int B, int T, int start, int layer, int window, KvCache cache, A out) {
        int H = cfg.heads(), Hkv = cfg.kvHeads(), D = cfg.headDim();
        long rows = (long) B * T;
        ops.rope(q, B, T, H, D, start, layer);
        ops.rope(k, B, T, Hkv, D, start, layer);
        check(q, rows * H * D, layer, "rotary embedding of the queries");
        check(k, rows * Hkv * D, layer, "rotary embedding of the keys");
        ops.kvRoundTrip(k, B * T, Hkv, D, kvCache); // what a quantized cache gives back (nothing for fp16)
        ops.kvRoundTrip(v, B * T, Hkv, D, kvCache);
        double scale = cfg.attentionScale();
        float cap = cfg.attentionSoftcap();
        if (cache == null) {
            ops.attention(q, k, v, B, T, H, Hkv, D, window, scale, cap, out);
        } else {
            ops.attendCached(cache, layer, q, k, v, T, H, Hkv, D, window, scale, cap, out);
        }
        check(out, rows * H * D, layer, "attention (softmax(q·kᵀ/√D)·v)");
    }

    /**
     * The MLP sub-block's output for a normed input: {@code d = (silu(h·Wgᵀ) ⊙ h·Wuᵀ)·Wdᵀ} (gelu_tanh
     * in place of silu for Gemma's GeGLU); Gemma's norm of this output is not applied here.
     * h: [M, C] → d: [M·R, C].
     *
     * <p>{@code R} candidate weight sets at once, as in {@link #attention}: gate and up of
     * {@code w} then hold R sets stacked along the output dim ([R·F, C]); down is shared. Row
     * {@code m·R + r} of the result is token m under set r; R = 1 is exactly {@link #block}'s MLP.
     */
    public A mlp(W w, A h, int M, int R, ArrayTaps<A> taps) {
        if (R < 1) {
            throw new IllegalArgumentException("R = " + R + " must be at least 1");
        }
        if (cfg.sparseLayer(ops.layer(w))) {
            if (R != 1) {
                throw new IllegalArgumentException("R = " + R + " candidate sets of a mixture of experts; need R = 1");
            }
            return experts(w, h, M, taps);
        }
        return glu(w, spec.linear(Role.GATE).name(), spec.linear(Role.UP).name(), spec.linear(Role.DOWN).name(), h, M, M,
                cfg.intermediate(), R, taps);
    }

    /**
     * One gated MLP of width F on rows h: [M, C] → [M·R, C] with R candidate sets of gate and up
     * ({@link #mlp}): the dense MLP, a mixture's expert on its routed rows, Qwen2-MoE's shared expert.
     * Its arrays are allocated for {@code cap} ≥ M rows ({@link ForwardOps#rowCapacity}) and hold M.
     */
    private A glu(W w, String gn, String un, String dn, A h, int M, int cap, int F, int R, ArrayTaps<A> taps) {
        int C = cfg.hidden();
        int layer = ops.layer(w);
        taps.linearInput(layer, gn, h, M, C);
        taps.linearInput(layer, un, h, M, C);
        A g = linear(w, gn, h, M, cap, C, R * F);   // [M, R·F] = [M·R, F]
        A u = linear(w, un, h, M, cap, C, R * F);   // [M, R·F]
        long n = (long) M * R * F;
        if (cfg.activation() == ModelConfig.Activation.GELU_TANH) {
            ops.geglu(g, u, n, g);
        } else {
            ops.swiglu(g, u, n, g);
        }
        ops.release(u);
        check(g, n, layer, cfg.activation() == ModelConfig.Activation.GELU_TANH ? "GeGLU (gelu_tanh(gate) · up)"
                : "SwiGLU (silu(gate) · up)");
        taps.linearInput(layer, dn, g, M * R, F);
        A d = linear(w, dn, g, M * R, cap * R, F, C);   // [M·R, C]
        ops.release(g);
        return d;
    }

    /**
     * A sparse block's MLP, a mixture of experts (Mixtral, Qwen2-MoE, Qwen3-MoE), as transformers computes
     * it: router logits h·W_routerᵀ [M, E] (to the host: {@link Routing}), each token's top-k experts
     * with their softmax weights; each expert runs on its routed rows only (so taps see each expert
     * linear's input on those rows) and its output, times the weights, is added into the result in
     * increasing expert index; Qwen2-MoE then adds sigmoid(h·w_gateᵀ) · shared_expert(h). h: [M, C] → [M, C].
     */
    private A experts(W w, A h, int M, ArrayTaps<A> taps) {
        MoeConfig mc = cfg.moe();
        ArchitectureSpec.Moe names = spec.moe();
        int C = cfg.hidden(), E = mc.experts();
        long MC = (long) M * C;
        int layer = ops.layer(w);
        taps.linearInput(layer, names.router(), h, M, C);
        A logits = linear(w, names.router(), h, M, C, E);
        Routing route = Routing.of(ops.toHost(logits, (long) M * E), M, E, mc.topK(), mc.normTopK());
        ops.release(logits);
        A out = ops.alloc(MC);
        ops.zero(out, MC);
        for (int e = 0; e < E; e++) {
            int[] rows = route.rows(e);
            if (rows.length == 0) {
                continue;
            }
            int cap = Math.max(rows.length, ops.rowCapacity(rows.length));
            A he = ops.alloc((long) cap * C);
            ops.gatherRows(h, rows, C, he);
            A d = glu(w, names.expert(e, names.gate()), names.expert(e, names.up()), names.expert(e, names.down()), he,
                    rows.length, cap, mc.expertIntermediate(), 1, taps);
            ops.release(he);
            ops.addScaledRows(d, rows, route.weights(e), C, out);
            ops.release(d);
        }
        check(out, MC, layer, "the routed experts' weighted sum");
        if (mc.sharedExpert()) {
            A s = glu(w, names.shared(names.gate()), names.shared(names.up()), names.shared(names.down()), h, M, M,
                    mc.sharedIntermediate(), 1, taps);
            taps.linearInput(layer, names.sharedExpertGate(), h, M, C);
            A g = linear(w, names.sharedExpertGate(), h, M, C, 1);
            float[] gate = ops.toHost(g, M);
            ops.release(g);
            int[] all = new int[M];
            for (int m = 0; m < M; m++) {
                all[m] = m;
                gate[m] = (float) (1 / (1 + Math.exp(-gate[m]))); // sigmoid
            }
            ops.addScaledRows(s, all, gate, C, out);
            ops.release(s);
            check(out, MC, layer, "the shared expert's gated add");
        }
        return out;
    }

    /** y = x·Wᵀ + b for linear {@code name}: x: [M, K] → y: [M, N]. */
    private A linear(W w, String name, A x, int M, int K, int N) {
        return linear(w, name, x, M, M, K, N);
    }

    /** {@link #linear(Object, String, Object, int, int, int)} into an array allocated for {@code cap} ≥ M rows. */
    private A linear(W w, String name, A x, int M, int cap, int K, int N) {
        A y = ops.alloc((long) cap * N);
        ops.linear(w, name, x, M, K, N, y);
        if (checking) {
            int layer = ops.layer(w);
            check(y, (long) M * N, "layer " + layer + " " + name + " (linear " + spec.layer(layer, name) + ")");
        }
        return y;
    }

    /** The embedded tokens x: [M, C] in place times √hidden (in float32) where the family scales them (Gemma). */
    public void scaleEmbeddings(A x, int M) {
        if (spec.scaledEmbeddings()) {
            ops.scale(x, (float) Math.sqrt(cfg.hidden()), (long) M * cfg.hidden());
        }
    }

    /** Logits [n] in place soft-capped to c·tanh(l / c) where the config sets final_logit_softcapping c (Gemma 2). */
    public void capLogits(A logits, long n) {
        if (cfg.finalSoftcap() > 0) {
            ops.softcap(logits, cfg.finalSoftcap(), n);
        }
    }

    /** Final RMSNorm in place on x: [M, C]. */
    public void finalNorm(A normWeight, A x, int M) {
        ops.rmsNorm(x, normWeight, (float) cfg.rmsNormEps(), M, cfg.hidden(), x);
        check(x, (long) M * cfg.hidden(), "the final norm (RMSNorm)");
    }
}
