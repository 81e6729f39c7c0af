package dev.shrink.core.forward;

import dev.shrink.core.ShrinkException;
import dev.shrink.core.model.ArchitectureSpec;
import dev.shrink.core.model.ModelConfig;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;

/**
 * One decoder block's weights in float32, keyed by the spec's linear names (e.g.
 * "self_attn.q_proj"). Stages replace a linear's weight in place ({@link #setWeight}) and run the
 * block again; that is how quantized blocks feed the next block.
 */
public final class BlockWeights {
    private final int layer;
    private final float[] inputNorm;          // [C]
    private final float[] postAttentionNorm;  // [C]
    private final Map<String, float[]> weights = new LinkedHashMap<>(); // W: [N, K]
    private final Map<String, float[]> biases = new LinkedHashMap<>();  // b: [N]
    private final Map<String, int[]> shapes = new LinkedHashMap<>();    // (N, K)
    private final Map<String, dev.shrink.core.ops.LinearKernel> packed = new LinkedHashMap<>(); // kept packed
    private float[] qNorm;                    // [D] per-head RMSNorm of the queries (Qwen3), or null
    private float[] kNorm;                    // [D] of the keys, or null
    private float[] attentionOutputNorm;      // [C] Gemma's post_attention_layernorm, or null
    private float[] mlpOutputNorm;            // [C] Gemma's post_feedforward_layernorm, or null

    public BlockWeights(int layer, float[] inputNorm, float[] postAttentionNorm) {
        this.layer = layer;
        this.inputNorm = inputNorm;
        this.postAttentionNorm = postAttentionNorm;
    }

    /**
     * The block a background {@link #load} produced (the GPU block loops read the next block while
     * the current one runs): its exception or error (out of memory above all) rethrown as it was, an
     * interruption as a ShrinkException.
     */
    public static BlockWeights await(Future<BlockWeights> loading) {
        try {
            return loading.get();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new ShrinkException("interrupted while reading weights", e);
        } catch (ExecutionException e) {
            if (e.getCause() instanceof RuntimeException r) {
                throw r;
            }
            if (e.getCause() instanceof Error err) {
                throw err;
            }
            throw new ShrinkException("reading weights: " + e.getCause(), e.getCause());
        }
    }

    /**
     * Reads block {@code layer}, checking every shape against the config. Norm weights are held as the
     * multipliers the forward uses ({@link ArchitectureSpec#normWeight}: 1 + w for Gemma's stored w).
     */
    public static BlockWeights load(WeightSource src, ModelConfig cfg, ArchitectureSpec spec, int layer) {
        return load(src, cfg, spec, layer, null);
    }

    /**
     * {@link #load(WeightSource, ModelConfig, ArchitectureSpec, int)} where the quantized linears of
     * {@code src} that {@code packing} multiplies packed ({@link dev.shrink.core.ops.Ops#packed}) stay
     * packed and its float linears take the backend's own layout ({@link dev.shrink.core.ops.Ops#dense}):
     * their {@link #weight} is then not available, {@link #packed} is. For evaluation (the stages change
     * float weights); {@code packing} null: every linear as float32 arrays.
     */
    public static BlockWeights load(WeightSource src, ModelConfig cfg, ArchitectureSpec spec, int layer,
                                    dev.shrink.core.ops.Ops packing) {
        int C = cfg.hidden();
        BlockWeights b = new BlockWeights(layer,
                spec.normWeight(WeightSource.checked(src, spec.layer(layer, spec.inputNorm()), C)),
                spec.normWeight(WeightSource.checked(src, spec.layer(layer, spec.postAttentionNorm()), C)));
        if (spec.qNorm() != null) {
            b.setHeadNorms(spec.normWeight(WeightSource.checked(src, spec.layer(layer, spec.qNorm()), cfg.headDim())),
                    spec.normWeight(WeightSource.checked(src, spec.layer(layer, spec.kNorm()), cfg.headDim())));
        }
        if (spec.attentionOutputNorm() != null) {
            b.setOutputNorms(spec.normWeight(WeightSource.checked(src, spec.layer(layer, spec.attentionOutputNorm()), C)),
                    spec.normWeight(WeightSource.checked(src, spec.layer(layer, spec.mlpOutputNorm()), C)));
        }
        boolean sparse = cfg.sparseLayer(layer);
        for (ArchitectureSpec.Linear l : spec.linears()) {
            int[] nk = linearShape(cfg, l.role());
            if (sparse && (l.role() == ArchitectureSpec.Role.GATE || l.role() == ArchitectureSpec.Role.UP
                    || l.role() == ArchitectureSpec.Role.DOWN)) {
                continue; // a sparse block's MLP is its experts (below)
            }
            b.readLinear(src, spec.layer(layer, l.name()), l.name(), nk[0], nk[1], packing);
        }
        if (sparse) {
            for (var e : moeLinears(cfg, spec).entrySet()) {
                int[] nk = e.getValue();
                b.readLinear(src, spec.layer(layer, e.getKey()), e.getKey(), nk[0], nk[1], packing);
            }
        }
        return b;
    }

    /** The (N, K) of a dense block linear of {@code role} as the config gives it (the MLP's: intermediate_size). */
    public static int[] linearShape(ModelConfig cfg, ArchitectureSpec.Role role) {
        int C = cfg.hidden();
        return switch (role) {
            case Q -> new int[] {cfg.qDim(), C};
            case K, V -> new int[] {cfg.kvDim(), C};
            case O -> new int[] {C, cfg.qDim()};
            case GATE, UP -> new int[] {cfg.intermediate(), C};
            case DOWN -> new int[] {C, cfg.intermediate()};
        };
    }

    /**
     * The linears of a sparse block's MLP by name under the layer prefix, in forward order, each with its
     * (N, K): the router [E, C], each expert's gate, up [F, C] and down [C, F], then the shared expert's
     * (Qwen2-MoE) and its gate [1, C]. The resident GPU model reads the same list.
     */
    public static Map<String, int[]> moeLinears(ModelConfig cfg, ArchitectureSpec spec) {
        ArchitectureSpec.Moe m = spec.moe();
        int C = cfg.hidden(), F = cfg.moe().expertIntermediate();
        Map<String, int[]> out = new LinkedHashMap<>();
        out.put(m.router(), new int[] {cfg.moe().experts(), C});
        for (int e = 0; e < cfg.moe().experts(); e++) {
            out.put(m.expert(e, m.gate()), new int[] {F, C});
            out.put(m.expert(e, m.up()), new int[] {F, C});
            out.put(m.expert(e, m.down()), new int[] {C, F});
        }
        if (cfg.moe().sharedExpert()) {
            int S = cfg.moe().sharedIntermediate();
            out.put(m.shared(m.gate()), new int[] {S, C});
            out.put(m.shared(m.up()), new int[] {S, C});
            out.put(m.shared(m.down()), new int[] {C, S});
            out.put(m.sharedExpertGate(), new int[] {1, C});
        }
        return out;
    }

    /** Reads linear {@code name} (full prefix {@code base}) of shape [N, K], with its bias [N] where the weights have one. */
    private void readLinear(WeightSource src, String base, String name, int N, int K, dev.shrink.core.ops.Ops packing) {
        dev.shrink.core.quant.QuantizedLinear q = packing == null ? null : src.quantized(base);
        if (q != null && q.N() == N && q.K() == K) {
            NonFinite.checkWeight(src.origin(base + ".scales"), base + ".scales", q.scales());
            dev.shrink.core.ops.LinearKernel k = packing.packed(q);
            if (k != null) { // multiplied packed; its bias is part of it
                packed.put(name, k);
                shapes.put(name, new int[] {N, K});
                return;
            }
        }
        if (packing != null) { // a float linear in the backend's own layout, made once (decode without repacking)
            float[] w = WeightSource.checked(src, base + ".weight", N, K);
            float[] b = src.has(base + ".bias") ? WeightSource.checked(src, base + ".bias", N) : null;
            dev.shrink.core.ops.LinearKernel k = packing.dense(w, N, K, b);
            if (k != null) {
                packed.put(name, k);
                shapes.put(name, new int[] {N, K});
                return;
            }
        }
        weights.put(name, WeightSource.checked(src, base + ".weight", N, K));
        shapes.put(name, new int[] {N, K});
        if (src.has(base + ".bias")) {
            biases.put(name, WeightSource.checked(src, base + ".bias", N));
        }
    }

    public int layer() {
        return layer;
    }

    public float[] inputNorm() {
        return inputNorm;
    }

    public float[] postAttentionNorm() {
        return postAttentionNorm;
    }

    /** The per-head RMSNorm weight [D] of the queries (before RoPE), or null when the family has none. */
    public float[] qNorm() {
        return qNorm;
    }

    /** The per-head RMSNorm weight [D] of the keys, or null. */
    public float[] kNorm() {
        return kNorm;
    }

    /** Sets the per-head q and k norms (both or neither). */
    public void setHeadNorms(float[] q, float[] k) {
        if ((q == null) != (k == null)) {
            throw new IllegalArgumentException("q_norm and k_norm go together");
        }
        qNorm = q;
        kNorm = k;
    }

    /** The RMSNorm weight [C] of the attention's output (Gemma's post_attention_layernorm), or null. */
    public float[] attentionOutputNorm() {
        return attentionOutputNorm;
    }

    /** The RMSNorm weight [C] of the MLP's output (Gemma's post_feedforward_layernorm), or null. */
    public float[] mlpOutputNorm() {
        return mlpOutputNorm;
    }

    /** Sets the norms of the attention and MLP outputs (both or neither). */
    public void setOutputNorms(float[] attention, float[] mlp) {
        if ((attention == null) != (mlp == null)) {
            throw new IllegalArgumentException("the attention and MLP output norms go together");
        }
        attentionOutputNorm = attention;
        mlpOutputNorm = mlp;
    }

    /**
     * A block of the same layer with {@code inputNorm} and {@code postAttentionNorm} as its first two
     * norms and this block's other norms (per-head and output norms, shared, not copied); no linears.
     * Stages that build a changed block (GPTQ's copy, AWQ's candidates) start from it.
     */
    public BlockWeights withNorms(float[] inputNorm, float[] postAttentionNorm) {
        BlockWeights b = new BlockWeights(layer, inputNorm, postAttentionNorm);
        b.setHeadNorms(qNorm, kNorm);
        b.setOutputNorms(attentionOutputNorm, mlpOutputNorm);
        return b;
    }

    /**
     * Linear {@code linear} in the backend's own layout ({@link #load} with a packing backend), or null when it
     * is held as a float32 array. {@link #weight} of such a linear reads a new float copy back from it.
     */
    public dev.shrink.core.ops.LinearKernel packed(String linear) {
        return packed.get(linear);
    }

    public float[] weight(String linear) {
        float[] w = weights.get(linear);
        if (w == null && packed.containsKey(linear)) {
            return packed.get(linear).weights(); // read back from the backend's layout (a new array each call)
        }
        if (w == null) {
            throw new IllegalArgumentException("no linear " + linear);
        }
        return w;
    }

    /** The bias of a linear, or null. */
    public float[] bias(String linear) {
        dev.shrink.core.ops.LinearKernel k = packed.get(linear);
        return k != null ? k.bias() : biases.get(linear);
    }

    /** (N = out, K = in) of a linear. */
    public int[] shape(String linear) {
        return shapes.get(linear).clone();
    }

    public void setWeight(String linear, float[] w) {
        int[] nk = shapes.get(linear);
        if (nk == null || w.length != nk[0] * nk[1]) {
            throw new IllegalArgumentException("weight for " + linear + " has the wrong size");
        }
        packed.remove(linear); // the new float weights replace a backend-layout form
        weights.put(linear, w);
    }

    /** Heap bytes of the weights held: float arrays (norms, linears, biases) and the linears in a backend's layout. */
    public long bytes() {
        long b = 0;
        for (float[] a : new float[][] {inputNorm, postAttentionNorm, qNorm, kNorm, attentionOutputNorm, mlpOutputNorm}) {
            b += a == null ? 0 : 4L * a.length;
        }
        for (float[] w : weights.values()) {
            b += 4L * w.length;
        }
        for (float[] w : biases.values()) {
            b += 4L * w.length;
        }
        for (dev.shrink.core.ops.LinearKernel k : packed.values()) {
            b += k.bytes();
        }
        return b;
    }

    public Iterable<String> linearNames() {
        return shapes.keySet();
    }

    /** Adds an already-read linear (used by tests and synthetic models). */
    public void putLinear(String linear, float[] w, float[] bias, int n, int k) {
        weights.put(linear, w);
        shapes.put(linear, new int[] {n, k});
        if (bias != null) {
            biases.put(linear, bias);
        }
    }
}
