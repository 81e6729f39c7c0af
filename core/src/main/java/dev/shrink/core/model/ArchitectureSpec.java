package dev.shrink.core.model;

import dev.shrink.core.ShrinkException;
import java.nio.file.Path;
import java.util.List;

/**
 * What a model family looks like, as data: tensor names, the linears of a decoder block, the
 * order in which GPTQ quantizes them (true-sequential groups) and AWQ's scale mappings.
 * Algorithms read this; they never branch on the family.
 *
 * @param family          short name ("llama", "mistral", "qwen2")
 * @param architectures   config.json "architectures" values that select this spec
 * @param embedTokens     token embedding [V, C]
 * @param finalNorm       the last RMSNorm's weight [C]
 * @param lmHead          output head [V, C]; absent when embeddings are tied
 * @param layerPrefix     a block's tensor prefix with %d for the layer index
 * @param inputNorm       the attention RMSNorm's weight, under the layer prefix
 * @param postAttentionNorm the MLP's input RMSNorm's weight, under the layer prefix (LLaMA's
 *                        post_attention_layernorm, Gemma's pre_feedforward_layernorm)
 * @param linears         the block's linears in forward order, under the layer prefix
 * @param sequentialGroups GPTQ's true-sequential order: each group sees the inputs produced with
 *                         the earlier groups already quantized
 * @param awqMappings     AWQ's scale mappings: the op whose output is scaled down, the linears whose
 *                        columns are scaled up, the module whose output is compared
 * @param qNorm           the per-head RMSNorm of the queries before RoPE (Qwen3's q_norm, weight [D]),
 *                        under the layer prefix, or null
 * @param kNorm           the same for the keys (k_norm), or null
 * @param attentionOutputNorm the RMSNorm of the attention's output before the residual add (Gemma's
 *                        post_attention_layernorm), under the layer prefix, or null
 * @param mlpOutputNorm   the RMSNorm of the MLP's output before the residual add (Gemma's
 *                        post_feedforward_layernorm), or null
 * @param unitOffsetNorms every RMSNorm weight w is stored as an offset from 1: the norm multiplies by
 *                        (1 + w) (Gemma). Readers add the 1 ({@link #normWeight}); writers that change a
 *                        norm store its value less 1 ({@link #storedNorm})
 * @param scaledEmbeddings the embedded tokens are multiplied by √hidden (Gemma's normalizer, in float32)
 * @param storedFused     linears the checkpoint stores fused, by the fused name under the layer prefix:
 *                        the parts (spec linear names) whose weights are its rows, in order (Phi-3's
 *                        self_attn.qkv_proj = q|k|v, mlp.gate_up_proj = gate|up). Readers split them
 *                        and the GPTQ, AWQ and pruned writers join them back ({@code FusedLinears});
 *                        empty for every other family
 * @param moe             the tensor names of the sparse MLP of a mixture of experts (Mixtral, Qwen2-MoE,
 *                        Qwen3-MoE), or null; its blocks with a dense MLP (Qwen's mlp_only_layers) use
 *                        {@code linears}' gate, up and down ({@link ModelConfig#sparseLayer})
 */
public record ArchitectureSpec(
        String family,
        List<String> architectures,
        String embedTokens,
        String finalNorm,
        String lmHead,
        String layerPrefix,
        String inputNorm,
        String postAttentionNorm,
        List<Linear> linears,
        List<List<String>> sequentialGroups,
        List<AwqMapping> awqMappings,
        String qNorm,
        String kNorm,
        String attentionOutputNorm,
        String mlpOutputNorm,
        boolean unitOffsetNorms,
        boolean scaledEmbeddings,
        java.util.SequencedMap<String, List<String>> storedFused,
        Moe moe) {

    /** The roles of a block's linears; the forward pass wires them by role. */
    public enum Role { Q, K, V, O, GATE, UP, DOWN }

    /** A linear of the block: its name under the layer prefix (without ".weight"), its role, whether it may carry a bias. */
    public record Linear(String name, Role role, boolean bias) {
    }

    /**
     * One AWQ mapping: scales divide {@code previous} (a norm or a linear, by name under the layer
     * prefix) and multiply the columns of {@code consumers}; the loss is measured on {@code inspect}'s
     * output ("self_attn" or "mlp" mean the whole sub-block). {@code onlyWithoutGqa}: skip it
     * when the previous linear's output and the consumer's input differ in size (v → o under GQA).
     */
    public record AwqMapping(String previous, List<String> consumers, String inspect, boolean onlyWithoutGqa) {
    }

    /**
     * The tensor names of a sparse MLP, each under the layer prefix and without ".weight": the router
     * ([E, C], never quantized), expert e's gate, up ([F, C]) and down ([C, F]) linears
     * ({@code expertPrefix} with %d for e, then the part's name), and Qwen2-MoE's shared expert (its
     * prefix, the same part names) with its sigmoid gate ([1, C]), both null where the family has none.
     */
    public record Moe(String router, String expertPrefix, String gate, String up, String down, String sharedExpert,
                      String sharedExpertGate) {

        /** Expert e's linear {@code part} (gate, up or down), e.g. "block_sparse_moe.experts.3.w1". */
        public String expert(int e, String part) {
            return expertPrefix.formatted(e) + part;
        }

        /** The shared expert's linear {@code part}, e.g. "mlp.shared_expert.gate_proj". */
        public String shared(String part) {
            return sharedExpert + part;
        }
    }

    public String layer(int i, String name) {
        return layerPrefix.formatted(i) + name;
    }

    /** Every decoder linear's full prefix (e.g. "model.layers.3.mlp.down_proj"), layer by layer in forward order. */
    public List<String> decoderLinears(int layers) {
        List<String> out = new java.util.ArrayList<>();
        for (int i = 0; i < layers; i++) {
            for (Linear l : linears) {
                out.add(layer(i, l.name()));
            }
        }
        return out;
    }

    /**
     * The fused linears that serving engines (vLLM) build from several of a block's linears, by the
     * fused name under the layer prefix: q|k|v as "self_attn.qkv_proj", gate|up as "mlp.gate_up_proj".
     * A quantized folder's exclusion list names a fused linear too when all of its parts are excluded.
     */
    public java.util.SequencedMap<String, List<String>> fusedLinears() {
        if (!storedFused.isEmpty()) {
            return storedFused;
        }
        java.util.SequencedMap<String, List<String>> fused = new java.util.LinkedHashMap<>();
        fused.put("self_attn.qkv_proj", List.of(linear(Role.Q).name(), linear(Role.K).name(), linear(Role.V).name()));
        fused.put("mlp.gate_up_proj", List.of(linear(Role.GATE).name(), linear(Role.UP).name()));
        return fused;
    }

    /**
     * The decoder linears left unquantized, for a quantized folder's exclusion lists
     * ({@code modules_to_not_convert}, GPTQModel's {@code dynamic}): each one's full prefix in model
     * order, followed at the end of its layer by the fused names (q|k|v, then gate|up) a serving engine
     * uses when all of a fused linear's parts are left out (vLLM looks exclusions up under "self_attn.qkv_proj", transformers under "q_proj").
     * A family whose checkpoints store linears fused (Phi-3) has modules of the fused names only, so its
     * parts are not listed apart.
     */
    public List<String> notConverted(int layers, java.util.function.Predicate<String> isQuantized) {
        return notConverted(0, layers, isQuantized);
    }

    private List<String> notConverted(int from, int to, java.util.function.Predicate<String> isQuantized) {
        List<String> out = new java.util.ArrayList<>();
        for (int i = from; i < to; i++) {
            for (Linear l : linears) {
                if (storedFused.values().stream().anyMatch(parts -> parts.contains(l.name()))) {
                    continue; // the checkpoint has no such module: its fused one is listed below
                }
                if (!isQuantized.test(layer(i, l.name()))) {
                    out.add(layer(i, l.name()));
                }
            }
            for (var f : fusedLinears().entrySet()) {
                final int layer = i;
                if (f.getValue().stream().noneMatch(part -> isQuantized.test(layer(layer, part)))) {
                    out.add(layer(i, f.getKey()));
                }
            }
        }
        return out;
    }

    /**
     * {@link #notConverted(int, java.util.function.Predicate)} knowing which blocks are mixtures of
     * experts: a sparse block lists, in forward order, its attention's linears left in float, then its
     * router and shared expert's gate (never quantized: transformers' loaders must leave them as
     * nn.Linear; vLLM builds them unquantized anyway), any expert or shared expert linear left in float,
     * then the fused attention name; it has no dense MLP to list.
     */
    public List<String> notConverted(ModelConfig cfg, java.util.function.Predicate<String> isQuantized) {
        if (moe == null) {
            return notConverted(cfg.layers(), isQuantized);
        }
        List<String> out = new java.util.ArrayList<>();
        for (int i = 0; i < cfg.layers(); i++) {
            if (!cfg.sparseLayer(i)) {
                out.addAll(notConverted(i, i + 1, isQuantized));
                continue;
            }
            final int layer = i;
            for (Linear l : linears) {
                if (l.role != Role.GATE && l.role != Role.UP && l.role != Role.DOWN && !isQuantized.test(layer(i, l.name()))) {
                    out.add(layer(i, l.name()));
                }
            }
            for (String name : dev.shrink.core.forward.BlockWeights.moeLinears(cfg, this).keySet()) {
                if (!isQuantized.test(layer(i, name))) {
                    out.add(layer(i, name));
                }
            }
            var qkv = fusedLinears().firstEntry();
            if (qkv.getValue().stream().noneMatch(part -> isQuantized.test(layer(layer, part)))) {
                out.add(layer(i, qkv.getKey()));
            }
        }
        return out;
    }

    /**
     * Whether {@code tensor} is the weight of a block linear, e.g. "model.layers.3.mlp.down_proj.weight",
     * or of a fused one as the checkpoint stores it ("model.layers.3.self_attn.qkv_proj.weight").
     */
    public boolean isLinearWeight(String tensor) {
        int at = layerPrefix.indexOf("%d");
        String before = layerPrefix.substring(0, at), after = layerPrefix.substring(at + 2);
        if (!tensor.startsWith(before) || !tensor.endsWith(".weight")) {
            return false;
        }
        int i = before.length();
        while (i < tensor.length() && Character.isDigit(tensor.charAt(i))) {
            i++;
        }
        if (i == before.length() || !tensor.startsWith(after, i)) {
            return false;
        }
        String rest = tensor.substring(i + after.length(), tensor.length() - ".weight".length());
        return linears.stream().anyMatch(l -> l.name.equals(rest)) || storedFused.containsKey(rest);
    }

    public Linear linear(Role role) {
        for (Linear l : linears) {
            if (l.role == role) {
                return l;
            }
        }
        throw new IllegalStateException(family + " has no " + role);
    }

    /**
     * Whether the block is LLaMA's exactly (no per-head q/k norms, no norms of the sub-blocks' outputs,
     * plain RMSNorm weights and embeddings): the device-only loops of GPTQ, AWQ and the batch-1 decoder
     * and distillation handle only that; other families run the one forward (docs/FORWARD.md).
     */
    public boolean plainLlamaBlock() {
        return unlikeLlama() == null;
    }

    /** What of this family's block LLaMA's has not (for the messages of the loops that refuse it), or null. */
    public String unlikeLlama() {
        List<String> what = new java.util.ArrayList<>();
        if (qNorm != null || kNorm != null) {
            what.add("per-head q/k norms");
        }
        if (attentionOutputNorm != null || mlpOutputNorm != null) {
            what.add("norms of the attention and MLP outputs");
        }
        if (unitOffsetNorms) {
            what.add("(1 + w) norm weights");
        }
        if (scaledEmbeddings) {
            what.add("scaled embeddings");
        }
        if (!storedFused.isEmpty()) {
            what.add("fused " + String.join(" and ", storedFused.keySet()) + " tensors");
        }
        if (moe != null) {
            what.add("mixture-of-experts MLP");
        }
        return what.isEmpty() ? null : family + "'s " + String.join(", ", what);
    }

    /** The multiplier of an RMSNorm as computed from its stored weight: w itself, or 1 + w (in float32) for unit-offset norms. */
    public float[] normWeight(float[] stored) {
        if (!unitOffsetNorms) {
            return stored;
        }
        float[] g = new float[stored.length];
        for (int i = 0; i < g.length; i++) {
            g[i] = 1f + stored[i];
        }
        return g;
    }

    /** The stored weight of an RMSNorm whose multiplier is {@code g}: the inverse of {@link #normWeight}. */
    public float[] storedNorm(float[] g) {
        if (!unitOffsetNorms) {
            return g;
        }
        float[] w = new float[g.length];
        for (int i = 0; i < w.length; i++) {
            w[i] = g[i] - 1f;
        }
        return w;
    }

    private static ArchitectureSpec llamaLike(String family, List<String> archs, boolean qkvBias) {
        return llamaLike(family, archs, qkvBias, null, null);
    }

    private static ArchitectureSpec llamaLike(String family, List<String> archs, boolean qkvBias, String qNorm,
                                              String kNorm) {
        List<Linear> linears = List.of(
                new Linear("self_attn.q_proj", Role.Q, qkvBias),
                new Linear("self_attn.k_proj", Role.K, qkvBias),
                new Linear("self_attn.v_proj", Role.V, qkvBias),
                new Linear("self_attn.o_proj", Role.O, false),
                new Linear("mlp.gate_proj", Role.GATE, false),
                new Linear("mlp.up_proj", Role.UP, false),
                new Linear("mlp.down_proj", Role.DOWN, false));
        List<List<String>> groups = List.of(
                List.of("self_attn.k_proj", "self_attn.v_proj", "self_attn.q_proj"),
                List.of("self_attn.o_proj"),
                List.of("mlp.up_proj", "mlp.gate_proj"),
                List.of("mlp.down_proj"));
        List<AwqMapping> awq = List.of(
                new AwqMapping("input_layernorm", List.of("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"), "self_attn", false),
                new AwqMapping("self_attn.v_proj", List.of("self_attn.o_proj"), "self_attn.o_proj", true),
                new AwqMapping("post_attention_layernorm", List.of("mlp.gate_proj", "mlp.up_proj"), "mlp", false),
                new AwqMapping("mlp.up_proj", List.of("mlp.down_proj"), "mlp.down_proj", false));
        return new ArchitectureSpec(family, archs, "model.embed_tokens.weight", "model.norm.weight",
                "lm_head.weight", "model.layers.%d.", "input_layernorm.weight",
                "post_attention_layernorm.weight", linears, groups, awq, qNorm, kNorm, null, null, false, false,
                new java.util.LinkedHashMap<>(), null);
    }

    /**
     * A mixture of experts: {@code dense}'s block (its linears name the MLP of the blocks that stay dense)
     * with a sparse MLP of {@code moe}'s tensors.
     */
    private static ArchitectureSpec withMoe(ArchitectureSpec dense, Moe moe) {
        ArchitectureSpec l = dense;
        return new ArchitectureSpec(l.family, l.architectures, l.embedTokens, l.finalNorm, l.lmHead, l.layerPrefix,
                l.inputNorm, l.postAttentionNorm, l.linears, l.sequentialGroups, l.awqMappings, l.qNorm, l.kNorm,
                l.attentionOutputNorm, l.mlpOutputNorm, l.unitOffsetNorms, l.scaledEmbeddings, l.storedFused, moe);
    }

    /**
     * Gemma 2 and 3: LLaMA's linears in a "sandwich" block, x += N₂(Attn(N₁(x))); x += N₄(MLP(N₃(x)))
     * with N₁..N₄ input_layernorm, post_attention_layernorm, pre_feedforward_layernorm and
     * post_feedforward_layernorm, every RMSNorm multiplying by (1 + w), embeddings scaled by √hidden.
     * The MLP's input norm is pre_feedforward_layernorm, so AWQ scales that one for gate/up.
     */
    private static ArchitectureSpec gemma(String family, String arch, String qNorm, String kNorm) {
        ArchitectureSpec l = llamaLike(family, List.of(arch), false);
        List<AwqMapping> awq = List.of(
                l.awqMappings.get(0),
                l.awqMappings.get(1),
                new AwqMapping("pre_feedforward_layernorm", List.of("mlp.gate_proj", "mlp.up_proj"), "mlp", false),
                l.awqMappings.get(3));
        return new ArchitectureSpec(family, l.architectures, l.embedTokens, l.finalNorm, l.lmHead, l.layerPrefix,
                l.inputNorm, "pre_feedforward_layernorm.weight", l.linears, l.sequentialGroups, awq, qNorm, kNorm,
                "post_attention_layernorm.weight", "post_feedforward_layernorm.weight", true, true,
                new java.util.LinkedHashMap<>(), null);
    }

    /**
     * Phi-3: LLaMA's block whose checkpoints store q|k|v as one self_attn.qkv_proj and gate|up as one
     * mlp.gate_up_proj (rows in that order); LongRoPE comes from the config.
     */
    private static ArchitectureSpec phi3() {
        ArchitectureSpec l = llamaLike("phi3", List.of("Phi3ForCausalLM"), false);
        java.util.SequencedMap<String, List<String>> fused = new java.util.LinkedHashMap<>();
        fused.put("self_attn.qkv_proj", List.of("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"));
        fused.put("mlp.gate_up_proj", List.of("mlp.gate_proj", "mlp.up_proj"));
        return new ArchitectureSpec(l.family, l.architectures, l.embedTokens, l.finalNorm, l.lmHead, l.layerPrefix,
                l.inputNorm, l.postAttentionNorm, l.linears, l.sequentialGroups, l.awqMappings, null, null, null, null,
                false, false, fused, null);
    }

    public static final ArchitectureSpec LLAMA = llamaLike("llama", List.of("LlamaForCausalLM"), false);
    public static final ArchitectureSpec MISTRAL = llamaLike("mistral", List.of("MistralForCausalLM"), false);
    public static final ArchitectureSpec QWEN2 = llamaLike("qwen2", List.of("Qwen2ForCausalLM"), true);

    /** Qwen3: LLaMA's block with an RMSNorm over each query and key head before RoPE. */
    public static final ArchitectureSpec QWEN3 = llamaLike("qwen3", List.of("Qwen3ForCausalLM"), true,
            "self_attn.q_norm.weight", "self_attn.k_norm.weight");

    /** Gemma 2: the sandwich block, GeGLU, soft-capped attention and logits (in the config), alternating sliding windows. */
    public static final ArchitectureSpec GEMMA2 = gemma("gemma2", "Gemma2ForCausalLM", null, null);

    /** Gemma 3 (text): Gemma 2's block with Qwen3's per-head q/k norms (also (1 + w)), a second RoPE for sliding blocks. */
    public static final ArchitectureSpec GEMMA3 = gemma("gemma3", "Gemma3ForCausalLM", "self_attn.q_norm.weight",
            "self_attn.k_norm.weight");

    /** Phi-3: fused qkv_proj and gate_up_proj in the checkpoint (split when read), LongRoPE. */
    public static final ArchitectureSpec PHI3 = phi3();


    /** Mixtral: Mistral's block, every MLP a mixture of experts w1 (gate), w3 (up), w2 (down) under block_sparse_moe. */
    public static final ArchitectureSpec MIXTRAL = withMoe(llamaLike("mixtral", List.of("MixtralForCausalLM"), false),
            new Moe("block_sparse_moe.gate", "block_sparse_moe.experts.%d.", "w1", "w3", "w2", null, null));

    /** Qwen2-MoE: Qwen2's block (q/k/v biases), sparse MLPs of experts plus a sigmoid-gated shared expert. */
    public static final ArchitectureSpec QWEN2_MOE = withMoe(llamaLike("qwen2_moe", List.of("Qwen2MoeForCausalLM"), true),
            new Moe("mlp.gate", "mlp.experts.%d.", "gate_proj", "up_proj", "down_proj", "mlp.shared_expert.",
                    "mlp.shared_expert_gate"));

    /** Qwen3-MoE: Qwen3's block (per-head q/k norms), sparse MLPs of experts. */
    public static final ArchitectureSpec QWEN3_MOE = withMoe(llamaLike("qwen3_moe", List.of("Qwen3MoeForCausalLM"), true,
            "self_attn.q_norm.weight", "self_attn.k_norm.weight"),
            new Moe("mlp.gate", "mlp.experts.%d.", "gate_proj", "up_proj", "down_proj", null, null));

    public static final List<ArchitectureSpec> ALL = List.of(LLAMA, MISTRAL, QWEN2, QWEN3, GEMMA2, GEMMA3, PHI3,
            MIXTRAL, QWEN2_MOE, QWEN3_MOE);

    /**
     * Refuses a mixture-of-experts model for a stage that does not handle one yet: "FOLDER: mixture-of-experts
     * models (FAMILY) are not WHAT yet" (e.g. "quantized", "pruned"); nothing for the dense families.
     */
    public void requireDense(Path folder, String what) {
        if (moe != null) {
            throw ShrinkException.at(folder, "mixture-of-experts models (" + family + ") are not " + what
                    + " yet; eval, generate and inspect run them");
        }
    }

    /** The spec for a config.json "architectures" value, or an error naming the file and the supported ones. */
    public static ArchitectureSpec forArchitecture(String architecture, Path configFile) {
        for (ArchitectureSpec s : ALL) {
            if (s.architectures.contains(architecture)) {
                return s;
            }
        }
        throw ShrinkException.at(configFile, "unsupported architecture '" + architecture
                + "' (supported: " + String.join(", ", ALL.stream().flatMap(a -> a.architectures.stream()).toList()) + ")");
    }
}
