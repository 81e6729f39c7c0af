package dev.shrink.core.model;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.shrink.core.ShrinkException;
import dev.shrink.core.util.StrictJson;
import dev.shrink.core.util.InputFiles;
import java.io.IOException;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * The parts of a Hugging Face {@code config.json} the decoder needs, for the LLaMA family
 * (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM), Gemma 2 / Gemma 3
 * (Gemma2ForCausalLM, Gemma3ForCausalLM, text only) and the mixtures of experts (MixtralForCausalLM,
 * Qwen2MoeForCausalLM, Qwen3MoeForCausalLM), with transformers' defaults for absent keys.
 *
 * @param architecture    e.g. "LlamaForCausalLM"
 * @param hidden          C, hidden_size
 * @param intermediate    F, intermediate_size of the SwiGLU MLP
 * @param layers          L, num_hidden_layers
 * @param heads           H, num_attention_heads
 * @param kvHeads         Hkv, num_key_value_heads (= H without GQA)
 * @param headDim         D, head_dim (hidden / heads when absent)
 * @param vocab           V, vocab_size
 * @param maxPositions    max_position_embeddings: the perplexity window length
 * @param rmsNormEps      rms_norm_eps
 * @param rope            the rotary embedding's parameters
 * @param tiedEmbeddings  tie_word_embeddings: the output head is the embedding matrix (no lm_head.weight)
 * @param attentionBias   q/k/v (and o for LLaMA's attention_bias) carry biases
 * @param torchDtype      the weights' declared dtype ("bfloat16", ...), or null
 * @param bosTokenId      BOS id prepended once to evaluation text, or null when the model has none
 * @param eosTokenIds     ids that end generation (may be empty)
 * @param slidingWindow   the attention window of the sliding blocks ({@link #slidingWindow(int)}), or 0 for full attention
 * @param activation      the MLP's gate activation: silu (SwiGLU) or gelu with the tanh approximation (GeGLU, Gemma)
 * @param attentionScale  the factor of q·k before the softmax: 1/√head_dim, Gemma's query_pre_attn_scalar^-0.5
 * @param attentionSoftcap Gemma 2's attn_logit_softcapping c: scores become c·tanh(s/c) before the mask; 0: none
 * @param finalSoftcap    Gemma 2's final_logit_softcapping of the logits, the same way; 0: none
 * @param localRope       Gemma 3's RoPE of its sliding-window blocks (rope_local_base_freq), or null when
 *                        every block uses {@code rope}
 * @param moe             the mixture of experts (Mixtral, Qwen2-MoE, Qwen3-MoE), or null for a dense model
 * @param raw             the whole JSON, kept so writers can copy unknown keys through unchanged
 */
public record ModelConfig(
        String architecture,
        int hidden,
        int intermediate,
        int layers,
        int heads,
        int kvHeads,
        int headDim,
        int vocab,
        int maxPositions,
        double rmsNormEps,
        RopeConfig rope,
        boolean tiedEmbeddings,
        boolean attentionBias,
        String torchDtype,
        Integer bosTokenId,
        List<Integer> eosTokenIds,
        int slidingWindow,
        Activation activation,
        double attentionScale,
        float attentionSoftcap,
        float finalSoftcap,
        RopeConfig localRope,
        MoeConfig moe,
        ObjectNode raw) {

    /** The gate activation of the MLP: out = act(gate) · up. */
    public enum Activation {
        /** silu(g) = g·sigmoid(g): SwiGLU (LLaMA, Mistral, Qwen). */
        SILU,
        /** gelu with the tanh approximation (transformers' gelu_pytorch_tanh): GeGLU (Gemma). */
        GELU_TANH
    }

    /** Whether this is a Gemma 2 or Gemma 3 config. */
    public boolean gemma() {
        return isGemma(architecture);
    }

    private static boolean isGemma(String arch) {
        return arch.equals("Gemma2ForCausalLM") || arch.equals("Gemma3ForCausalLM");
    }

    /** Whether block {@code layer}'s MLP is a sparse mixture of experts ({@link MoeConfig#sparse}); false for dense models. */
    public boolean sparseLayer(int layer) {
        return moe != null && moe.sparse(layer);
    }

    /**
     * Rotary embedding: inv_freq[i] = 1 / theta^(2i/D), then adjusted by the scaling type.
     *
     * @param theta  rope_theta
     * @param type   "default", "linear" or "llama3"
     * @param factor scaling factor (linear, llama3)
     * @param lowFreqFactor  llama3's low_freq_factor
     * @param highFreqFactor llama3's high_freq_factor
     * @param originalMaxPositions llama3's original_max_position_embeddings
     */
    public record RopeConfig(double theta, String type, double factor, double lowFreqFactor,
                             double highFreqFactor, int originalMaxPositions, LongRope longRope) {

        public RopeConfig(double theta, String type, double factor, double lowFreqFactor, double highFreqFactor,
                          int originalMaxPositions) {
            this(theta, type, factor, lowFreqFactor, highFreqFactor, originalMaxPositions, null);
        }

        /**
         * The RoPE a forward uses whose positions reach {@code seqLen − 1}: for "longrope" (Phi-3) its
         * short or long variant (transformers switches per forward on max(position) + 1 &gt;
         * original_max_position_embeddings); every other type is the same whatever the length.
         */
        public RopeConfig forLength(int seqLen) {
            if (longRope == null) {
                return this;
            }
            String t = longRope.isLong(seqLen) ? "longrope-long" : "longrope-short";
            return t.equals(type) ? this : new RopeConfig(theta, t, factor, lowFreqFactor, highFreqFactor,
                    originalMaxPositions, longRope);
        }

        /** What cos and sin are multiplied by: LongRoPE's attention factor, else 1. */
        public double attentionFactor() {
            return longRope == null ? 1.0 : longRope.attentionFactor();
        }

        /** inv_freq: [D/2], computed in double then rounded to float as torch does in float32. */
        public double[] inverseFrequencies(int headDim) {
            if (longRope != null) { // "longrope" itself: the short factors, as transformers starts
                return longRope.inverseFrequencies(theta, headDim, type.equals("longrope-long"));
            }
            int half = headDim / 2;
            double[] inv = new double[half];
            for (int i = 0; i < half; i++) {
                // torch: 1.0 / (base ** (arange(0, dim, 2, dtype=int64).float() / dim)) in float32
                float exponent = (float) (2 * i) / (float) headDim;
                inv[i] = (float) (1.0 / (float) Math.pow(theta, exponent));
            }
            switch (type) {
                case "default" -> { }
                case "linear" -> {
                    for (int i = 0; i < half; i++) {
                        inv[i] /= factor;
                    }
                }
                case "llama3" -> {
                    double lowWavelen = originalMaxPositions / lowFreqFactor;
                    double highWavelen = originalMaxPositions / highFreqFactor;
                    for (int i = 0; i < half; i++) {
                        double wavelen = 2 * Math.PI / inv[i];
                        if (wavelen > lowWavelen) {
                            inv[i] = inv[i] / factor;
                        } else if (wavelen >= highWavelen) {
                            double smooth = (originalMaxPositions / wavelen - lowFreqFactor)
                                    / (highFreqFactor - lowFreqFactor);
                            inv[i] = (1 - smooth) * inv[i] / factor + smooth * inv[i];
                        }
                    }
                }
                default -> throw new IllegalStateException("rope type " + type);
            }
            return inv;
        }
    }

    public int kvDim() {
        return kvHeads * headDim;
    }

    public int qDim() {
        return heads * headDim;
    }

    /** Reads and checks {@code dir/config.json} (strict JSON: {@link StrictJson}). */
    public static ModelConfig read(Path configFile) {
        return parse(StrictJson.readObject(configFile, "not found: a Hugging Face model folder needs config.json"),
                configFile);
    }

    /**
     * Parses a config object; {@code source} names the file in error messages. Every field read is
     * strictly typed: a wrong type (a string where a number belongs, 8.5 for a size), an integer
     * that does not fit, a size that is not positive, a non-finite number is an error naming the
     * field. {@code null} means "absent" only where transformers accepts None (num_key_value_heads,
     * head_dim, bos/eos_token_id, sliding_window, rope_scaling, torch_dtype); elsewhere it is an error.
     */
    public static ModelConfig parse(ObjectNode root, Path source) {
        Reader r = new Reader(root, source);
        String arch = r.architecture();
        ArchitectureSpec.forArchitecture(arch, source); // throws for an unsupported family
        int hidden = r.requiredInt("hidden_size");
        int heads = r.requiredInt("num_attention_heads");
        int kvHeads = r.optionalInt("num_key_value_heads", heads, true);
        boolean gemma = isGemma(arch);
        int headDim = r.optionalInt("head_dim", gemma ? 256 : 0, true); // Gemma's configs default to 256
        if (headDim == 0) {
            if (hidden % heads != 0) {
                throw ShrinkException.at(source, "hidden_size " + hidden + " is not divisible by num_attention_heads " + heads + " and head_dim is missing");
            }
            headDim = hidden / heads;
        }
        if (kvHeads > heads) {
            throw ShrinkException.at(source, "num_key_value_heads " + kvHeads + " is more than num_attention_heads " + heads);
        }
        if (heads % kvHeads != 0) {
            throw ShrinkException.at(source, "num_attention_heads " + heads + " is not a multiple of num_key_value_heads " + kvHeads);
        }
        if (headDim % 2 != 0) {
            throw ShrinkException.at(source, "head_dim " + headDim + " is odd: rotary embeddings need an even head_dim");
        }
        if ((long) heads * headDim > Integer.MAX_VALUE) {
            throw ShrinkException.at(source, "num_attention_heads " + heads + " × head_dim " + headDim
                    + " is too large (the attention width must fit in an int)");
        }
        Activation activation;
        if (gemma) { // Gemma's MLP reads hidden_activation (hidden_act, where present, is not used)
            String act = r.string("hidden_activation", "gelu_pytorch_tanh", true);
            if (!act.equals("gelu_pytorch_tanh")) {
                throw ShrinkException.at(source, "hidden_activation '" + act + "' is not supported (only gelu_pytorch_tanh)");
            }
            activation = Activation.GELU_TANH;
            // transformers 5 writes null for "not set" (Gemma 3's vision variants set true)
            if (!root.path("use_bidirectional_attention").isNull() && r.bool("use_bidirectional_attention", false)) {
                throw ShrinkException.at(source, "use_bidirectional_attention: true is not supported (causal attention only)");
            }
        } else {
            String act = r.string("hidden_act", "silu", false);
            if (!act.equals("silu") && !act.equals("swish")) {
                throw ShrinkException.at(source, "hidden_act '" + act + "' is not supported (only silu)");
            }
            activation = Activation.SILU;
        }
        // Qwen2's q/k/v always carry biases; Qwen2-MoE's as qkv_bias says (transformers 5; default true)
        boolean qwen = arch.equals("Qwen2ForCausalLM") || arch.equals("Qwen2MoeForCausalLM") && r.bool("qkv_bias", true);
        int intermediate = r.requiredInt("intermediate_size");
        int layers = r.requiredInt("num_hidden_layers");
        int vocab = r.requiredInt("vocab_size");
        int maxPositions = r.optionalInt("max_position_embeddings", switch (arch) {
            case "Gemma2ForCausalLM" -> 8192;
            case "Gemma3ForCausalLM", "MixtralForCausalLM" -> 131072;
            case "Qwen2MoeForCausalLM", "Qwen3MoeForCausalLM" -> 32768;
            default -> 2048;
        }, false);
        double eps = r.positiveNumber(root, "rms_norm_eps", 1e-6, "");
        RopeConfig rope, localRope = null;
        if (arch.equals("Gemma3ForCausalLM")) {
            RopeConfig[] both = r.gemma3Rope();
            rope = both[0];
            localRope = both[1];
            checkFinitePositive(source, "rope_local_base_freq", localRope.theta());
        } else {
            rope = r.rope(arch.equals("MixtralForCausalLM") ? 1e6 : 10000.0); // Mixtral's default rope_theta
        }
        checkFinitePositive(source, "rope_theta", rope.theta());
        checkFinitePositive(source, "rope factor", rope.factor());
        if (rope.longRope() != null && (rope.longRope().shortFactor().length != headDim / 2
                || rope.longRope().longFactor().length != headDim / 2)) {
            throw ShrinkException.at(source, "longrope short_factor and long_factor need head_dim / 2 = " + headDim / 2
                    + " entries each, found " + rope.longRope().shortFactor().length + " and "
                    + rope.longRope().longFactor().length);
        }
        boolean tied = r.bool("tie_word_embeddings", gemma); // Gemma's configs default to tied embeddings
        boolean bias = r.bool("attention_bias", false);
        String dtype = r.string("torch_dtype", null, true);
        if (dtype == null) {
            dtype = r.string("dtype", null, true);
        }
        int bos = r.optionalTokenId("bos_token_id");
        List<Integer> eos = r.tokenIds("eos_token_id");
        int window = r.slidingWindow(arch);
        r.quantizationConfig();
        double scale = 1.0 / Math.sqrt(headDim);
        float attnCap = 0, finalCap = 0;
        if (gemma) {
            // transformers: scaling = query_pre_attn_scalar**-0.5; Gemma 2 soft-caps by default (50, 30), Gemma 3 not
            scale = Math.pow(r.positiveNumber(root, "query_pre_attn_scalar", 256, ""), -0.5);
            boolean g2 = arch.equals("Gemma2ForCausalLM");
            attnCap = r.softcap("attn_logit_softcapping", g2 ? 50 : 0);
            finalCap = r.softcap("final_logit_softcapping", g2 ? 30 : 0);
            r.layerTypes(layers);
        }
        MoeConfig moe = r.moe(arch, intermediate);
        return new ModelConfig(arch, hidden, intermediate, layers, heads, kvHeads, headDim, vocab, maxPositions, eps, rope,
                tied, qwen || bias, dtype, bos < 0 ? null : bos, eos, window, activation, scale, attnCap, finalCap,
                localRope, moe, root.deepCopy());
    }

    /**
     * Values that make the forward's math non-finite are refused here, naming the field: RMSNorm
     * divides by sqrt(mean(x²) + eps) (eps ≤ 0 gives 0/0 on a zero row, NaN for eps < −mean), and
     * RoPE's inverse frequencies are 1/theta^(2i/D) (theta ≤ 0: NaN or infinite angles).
     */
    private static void checkFinitePositive(Path source, String key, double value) {
        if (!(value > 0) || !Double.isFinite(value)) {
            throw ShrinkException.at(source, "'" + key + "' must be a finite number above 0, found " + value
                    + " (the forward's math would give NaN or infinite values)");
        }
    }

    /**
     * The attention window of block {@code layer}, or 0 for full attention, as transformers decides
     * it: Mistral and Mixtral use {@code sliding_window} in every block; Qwen2, Qwen2-MoE and Qwen3 only with
     * {@code use_sliding_window} and then in the blocks marked "sliding_attention" by {@code layer_types}, or
     * without that list in blocks {@code ≥ max_window_layers} (default 28); Qwen3-MoE with
     * {@code use_sliding_window} in every block; Gemma in the blocks {@link #slidingLayer} names; LLaMA has none. A query at position p sees the keys p − window + 1 .. p (transformers'
     * masking_utils: kv_idx &gt; q_idx − sliding_window).
     */
    public int slidingWindow(int layer) {
        if (gemma()) {
            return slidingLayer(layer) ? slidingWindow : 0;
        }
        if (slidingWindow <= 0 || !(architecture.equals("Qwen2ForCausalLM") || architecture.equals("Qwen3ForCausalLM")
                || architecture.equals("Qwen2MoeForCausalLM"))) {
            return slidingWindow;
        }
        JsonNode types = raw.get("layer_types");
        if (types != null && types.isArray() && layer < types.size()) {
            return "sliding_attention".equals(types.get(layer).asText()) ? slidingWindow : 0;
        }
        return layer >= raw.path("max_window_layers").asInt(28) ? slidingWindow : 0;
    }

    /**
     * Whether Gemma's block {@code layer} is a "sliding_attention" one: as {@code layer_types} says, or
     * without that list as transformers fills it in: Gemma 2 every even block (0, 2, ...), Gemma 3 all
     * but every {@code sliding_window_pattern}-th (default 6: blocks 5, 11, ... attend to all keys).
     * Gemma 3's sliding blocks also use {@link #localRope}. False for the other families.
     */
    public boolean slidingLayer(int layer) {
        if (!gemma()) {
            return false;
        }
        JsonNode types = raw.get("layer_types");
        if (types != null && types.isArray() && layer < types.size()) {
            return "sliding_attention".equals(types.get(layer).asText());
        }
        if (architecture.equals("Gemma2ForCausalLM")) {
            return layer % 2 == 0;
        }
        int pattern = raw.path("sliding_window_pattern").asInt(6);
        return (layer + 1) % pattern != 0;
    }

    /** The RoPE of block {@code layer}: Gemma 3's local one in its sliding blocks, else {@link #rope()}. */
    public RopeConfig rope(int layer) {
        return localRope != null && slidingLayer(layer) ? localRope : rope;
    }

    /** Block {@code layer}'s RoPE for a forward whose positions reach {@code seqLen − 1} ({@link RopeConfig#forLength}). */
    public RopeConfig rope(int layer, int seqLen) {
        return rope(layer).forLength(seqLen);
    }

    /** The shortest attention window of any block, or 0 when every block attends to all keys. */
    public int shortestWindow() {
        int w = 0;
        for (int l = 0; l < layers; l++) {
            int x = slidingWindow(l);
            if (x > 0 && (w == 0 || x < w)) {
                w = x;
            }
        }
        return w;
    }

    /** Field access that names config.json and the key in every error. */
    private record Reader(ObjectNode root, Path source) {
        private ShrinkException bad(String key, String rule, JsonNode found) {
            return ShrinkException.at(source, "field '" + key + "' " + rule + ", found " + shown(found));
        }

        private static String shown(JsonNode n) {
            String s = n == null ? "nothing" : n.isTextual() ? n.toString() : n.isContainerNode() ? StrictJson.kind(n)
                    : n.toString();
            return s.length() > 60 ? s.substring(0, 57) + "..." : s;
        }

        String architecture() {
            JsonNode archs = root.get("architectures");
            if (archs == null || !archs.isArray() || archs.isEmpty()) {
                throw ShrinkException.at(source, "missing 'architectures' (e.g. [\"LlamaForCausalLM\"])");
            }
            if (!archs.get(0).isTextual()) {
                throw bad("architectures", "must be a list of class names (e.g. [\"LlamaForCausalLM\"])", archs.get(0));
            }
            return archs.get(0).textValue();
        }

        int requiredInt(String key) {
            JsonNode n = root.get(key);
            if (n == null || n.isNull()) {
                throw ShrinkException.at(source, "missing required field '" + key + "'");
            }
            return positiveInt(key, n);
        }

        private int positiveInt(String key, JsonNode n) {
            if (!n.isIntegralNumber()) {
                throw bad(key, "must be a positive integer", n);
            }
            if (!n.canConvertToInt() || n.intValue() <= 0) {
                throw bad(key, "must be a positive integer of at most " + Integer.MAX_VALUE, n);
            }
            return n.intValue();
        }

        /** A positive int, {@code fallback} when absent (or null, where transformers allows None). */
        int optionalInt(String key, int fallback, boolean nullable) {
            JsonNode n = root.get(key);
            if (n == null || n.isNull() && nullable) {
                return fallback;
            }
            return positiveInt(key, n);
        }

        /** A non-negative int, 0 when absent or null (sliding_window: null or 0 is full attention). */
        int nonNegativeInt(String key) {
            JsonNode n = root.get(key);
            if (n == null || n.isNull()) {
                return 0;
            }
            if (!n.isIntegralNumber() || !n.canConvertToInt() || n.intValue() < 0) {
                throw bad(key, "must be an integer from 0 to " + Integer.MAX_VALUE, n);
            }
            return n.intValue();
        }

        /** A token id: a non-negative int, or −1 when absent or null. */
        int optionalTokenId(String key) {
            JsonNode n = root.get(key);
            return n == null || n.isNull() ? -1 : tokenId(key, n);
        }

        private int tokenId(String key, JsonNode n) {
            if (!n.isIntegralNumber() || !n.canConvertToInt() || n.intValue() < 0) {
                throw bad(key, "must be a token id (an integer ≥ 0)", n);
            }
            return n.intValue();
        }

        /** One token id or a list of them; empty when absent or null. */
        List<Integer> tokenIds(String key) {
            JsonNode n = root.get(key);
            List<Integer> out = new ArrayList<>();
            if (n == null || n.isNull()) {
                return out;
            }
            if (n.isArray()) {
                for (JsonNode e : n) {
                    out.add(tokenId(key, e));
                }
            } else {
                out.add(tokenId(key, n));
            }
            return out;
        }

        String string(String key, String fallback, boolean nullable) {
            JsonNode n = root.get(key);
            if (n == null || n.isNull() && nullable) {
                return fallback;
            }
            if (!n.isTextual()) {
                throw bad(key, "must be a string", n);
            }
            return n.textValue();
        }

        boolean bool(String key, boolean fallback) {
            JsonNode n = root.get(key);
            if (n == null) {
                return fallback;
            }
            if (!n.isBoolean()) {
                throw bad(key, "must be true or false", n);
            }
            return n.booleanValue();
        }

        /** A finite positive number of {@code obj} ({@code prefix} names its parent in messages). */
        double positiveNumber(JsonNode obj, String key, double fallback, String prefix) {
            JsonNode n = obj.get(key);
            if (n == null) {
                return fallback;
            }
            if (!n.isNumber() || !Double.isFinite(n.doubleValue()) || n.doubleValue() <= 0) {
                throw bad(prefix + key, "must be a positive number", n);
            }
            return n.doubleValue();
        }

        /**
         * sliding_window as transformers reads it: LLaMA ignores it; Mistral defaults to 4096 when the
         * key is absent (null: full attention); Qwen2 uses it only with use_sliding_window. 0: none.
         */
        int slidingWindow(String arch) {
            boolean present = switch (arch) {
                case "MistralForCausalLM", "MixtralForCausalLM", "Gemma2ForCausalLM", "Gemma3ForCausalLM" -> true;
                case "Qwen2ForCausalLM", "Qwen3ForCausalLM", "Qwen2MoeForCausalLM", "Qwen3MoeForCausalLM" ->
                        bool("use_sliding_window", false);
                case "Phi3ForCausalLM" -> root.hasNonNull("sliding_window"); // transformers' Phi3 honours it when set
                default -> false;
            };
            if (!present) {
                return 0;
            }
            if (!root.has("sliding_window") && !arch.startsWith("Qwen") && !arch.equals("MixtralForCausalLM")) {
                return 4096; // Mistral's and Gemma's default (Mixtral's is None)
            }
            JsonNode n = root.get("sliding_window");
            if (n == null || n.isNull()) {
                return 0;
            }
            if (!n.isIntegralNumber() || !n.canConvertToInt() || n.asInt() <= 0) {
                throw ShrinkException.at(source, "field 'sliding_window' must be a positive integer or null, found " + n
                        + " (a window of no keys gives NaN attention)");
            }
            return n.asInt();
        }

        /** quantization_config: an object or null (its keys are read by the format's reader). */
        void quantizationConfig() {
            JsonNode n = root.get("quantization_config");
            if (n != null && !n.isNull() && !n.isObject()) {
                throw bad("quantization_config", "must be an object", n);
            }
        }

        /**
         * The mixture of experts of a Mixtral, Qwen2-MoE or Qwen3-MoE config (null for the dense families),
         * with transformers' defaults: Mixtral num_local_experts 8, num_experts_per_tok 2, experts of
         * intermediate_size, always renormalised, every block sparse; Qwen2-MoE num_experts 60, k 4,
         * moe_intermediate_size 1408, shared_expert_intermediate_size 5632; Qwen3-MoE num_experts (or
         * num_local_experts, as transformers 5 writes it) 128, k 8, moe_intermediate_size 768; both Qwen
         * norm_topk_prob false, decoder_sparse_step 1, mlp_only_layers [] (null too).
         */
        MoeConfig moe(String arch, int intermediate) {
            boolean qwen2 = arch.equals("Qwen2MoeForCausalLM"), qwen3 = arch.equals("Qwen3MoeForCausalLM");
            if (arch.equals("MixtralForCausalLM")) {
                int experts = optionalInt("num_local_experts", 8, false);
                int k = optionalInt("num_experts_per_tok", 2, false);
                checkTopK(k, experts);
                return new MoeConfig(experts, k, true, intermediate, 0, 1, List.of());
            }
            if (!qwen2 && !qwen3) {
                return null;
            }
            String expertsKey = !root.has("num_experts") && root.has("num_local_experts") ? "num_local_experts" : "num_experts";
            JsonNode e = root.get(expertsKey);
            int experts = qwen2 ? 60 : 128;
            if (e != null) {
                if (!e.isIntegralNumber() || !e.canConvertToInt() || e.intValue() < 0) {
                    throw bad(expertsKey, "must be an integer from 0 to " + Integer.MAX_VALUE, e);
                }
                experts = e.intValue();
            }
            int k = optionalInt("num_experts_per_tok", qwen2 ? 4 : 8, false);
            if (experts > 0) {
                checkTopK(k, experts);
            }
            boolean norm = bool("norm_topk_prob", false);
            int width = optionalInt("moe_intermediate_size", qwen2 ? 1408 : 768, false);
            int shared = qwen2 ? optionalInt("shared_expert_intermediate_size", 5632, false) : 0;
            int step = optionalInt("decoder_sparse_step", 1, false);
            List<Integer> mlpOnly = new ArrayList<>();
            JsonNode only = root.get("mlp_only_layers");
            if (only != null && !only.isNull()) {
                if (!only.isArray()) {
                    throw bad("mlp_only_layers", "must be a list of layer indices", only);
                }
                for (JsonNode i : only) {
                    if (!i.isIntegralNumber() || !i.canConvertToInt() || i.intValue() < 0) {
                        throw bad("mlp_only_layers", "must hold layer indices (integers ≥ 0)", i);
                    }
                    mlpOnly.add(i.intValue());
                }
            }
            return new MoeConfig(experts, k, norm, width, shared, step, List.copyOf(mlpOnly));
        }

        private void checkTopK(int k, int experts) {
            if (k > experts) {
                throw ShrinkException.at(source, "num_experts_per_tok " + k + " is more than the " + experts
                        + " experts (each token is routed to that many of them)");
            }
        }

        /** A soft-capping value: a positive number, {@code fallback} when absent, 0 (none) when null. */
        float softcap(String key, float fallback) {
            JsonNode n = root.get(key);
            if (n == null) {
                return fallback;
            }
            return n.isNull() ? 0 : (float) positiveNumber(root, key, fallback, "");
        }

        /** layer_types, where present: one "sliding_attention" or "full_attention" per block. */
        void layerTypes(int layers) {
            JsonNode n = root.get("layer_types");
            if (n == null || n.isNull()) {
                return;
            }
            if (!n.isArray() || n.size() != layers) {
                throw bad("layer_types", "must be a list of " + layers + " layer types (one per num_hidden_layers)", n);
            }
            for (JsonNode t : n) {
                if (!t.isTextual() || !List.of("sliding_attention", "full_attention").contains(t.textValue())) {
                    throw bad("layer_types", "must hold only \"sliding_attention\" and \"full_attention\"", t);
                }
            }
            JsonNode p = root.get("sliding_window_pattern");
            if (p != null && !p.isNull()) {
                positiveInt("sliding_window_pattern", p);
            }
        }

        /**
         * Gemma 3's two RoPEs, {global (full attention), local (sliding attention)}: transformers 5's
         * rope_parameters per layer type ({"full_attention": {...}, "sliding_attention": {...}}), or the
         * older keys rope_theta (default 1e6) with rope_scaling for the global one and
         * rope_local_base_freq (default 1e4) for the local one.
         */
        RopeConfig[] gemma3Rope() {
            JsonNode p = root.get("sliding_window_pattern");
            if (p != null && !p.isNull()) {
                positiveInt("sliding_window_pattern", p);
            }
            JsonNode params = root.get("rope_parameters");
            if (params != null && params.isObject() && (params.has("full_attention") || params.has("sliding_attention"))) {
                RopeConfig[] out = new RopeConfig[2];
                String[] types = {"full_attention", "sliding_attention"};
                double[] thetas = {1e6, 1e4};
                for (int i = 0; i < 2; i++) {
                    JsonNode t = params.get(types[i]);
                    if (t != null && !t.isNull() && !t.isObject()) {
                        throw bad("rope_parameters." + types[i], "must be an object or null", t);
                    }
                    String where = "rope_parameters." + types[i] + ".";
                    double theta = t == null || t.isNull() ? thetas[i] : positiveNumber(t, "rope_theta", thetas[i], where);
                    out[i] = ropeOf(t == null || t.isNull() ? null : t, theta, where);
                }
                return out;
            }
            RopeConfig global = rope(1e6);
            double local = root.path("rope_local_base_freq").isNull() ? 1e4
                    : positiveNumber(root, "rope_local_base_freq", 1e4, "");
            return new RopeConfig[] {global, ropeOf(null, local, "")};
        }

        /**
         * rope_theta at the top level (transformers ≤ 4) or inside rope_parameters (transformers 5); rope_scaling
         * too; {@code defaultTheta} when neither sets it.
         */
        RopeConfig rope(double defaultTheta) {
            JsonNode params = root.get("rope_parameters");
            JsonNode scaling = root.get("rope_scaling");
            for (String k : new String[] {"rope_parameters", "rope_scaling"}) {
                JsonNode n = root.get(k);
                if (n != null && !n.isNull() && !n.isObject()) {
                    throw bad(k, "must be an object or null", n);
                }
            }
            // transformers 5 keeps rope_theta in rope_parameters; a null at the top level means "not here"
            double theta = root.path("rope_theta").isNull() ? defaultTheta
                    : positiveNumber(root, "rope_theta", defaultTheta, "");
            JsonNode spec = null;
            if (params != null && params.isObject()) {
                theta = positiveNumber(params, "rope_theta", theta, "rope_parameters.");
                spec = params;
            }
            String where = "rope_parameters.";
            if (scaling != null && scaling.isObject()) {
                spec = scaling;
                where = "rope_scaling.";
            }
            return ropeOf(spec, theta, where);
        }

        /**
         * Phi-3's LongRoPE: short_factor and long_factor lists, original_max_position_embeddings (in the
         * RoPE object or at the top level), an optional factor and attention_factor, no partial rotary.
         */
        private LongRope longRope(JsonNode spec, String where) {
            JsonNode partial = spec.has("partial_rotary_factor") ? spec.get("partial_rotary_factor")
                    : root.get("partial_rotary_factor");
            if (partial != null && !partial.isNull() && (!partial.isNumber() || partial.asDouble() != 1.0)) {
                throw ShrinkException.at(source, "partial_rotary_factor " + partial + " is not supported (RoPE over the "
                        + "whole head only)");
            }
            double[][] f = new double[2][];
            String[] keys = {"short_factor", "long_factor"};
            for (int i = 0; i < 2; i++) {
                JsonNode n = spec.get(keys[i]);
                if (n == null || !n.isArray() || n.isEmpty()) {
                    throw bad(where + keys[i], "must be a list of numbers (longrope)", n);
                }
                f[i] = new double[n.size()];
                for (int j = 0; j < n.size(); j++) {
                    if (!n.get(j).isNumber() || !(n.get(j).asDouble() > 0) || !Double.isFinite(n.get(j).asDouble())) {
                        throw bad(where + keys[i] + "[" + j + "]", "must be a finite number above 0", n.get(j));
                    }
                    f[i][j] = n.get(j).asDouble();
                }
            }
            JsonNode o = spec.has("original_max_position_embeddings") ? spec.get("original_max_position_embeddings")
                    : root.get("original_max_position_embeddings");
            if (o == null || o.isNull()) {
                throw ShrinkException.at(source, "longrope needs original_max_position_embeddings");
            }
            int orig = positiveInt("original_max_position_embeddings", o);
            int maxPositions = root.has("max_position_embeddings") ? positiveInt("max_position_embeddings",
                    root.get("max_position_embeddings")) : 2048;
            Double factor = spec.hasNonNull("factor") ? positiveNumber(spec, "factor", 1.0, where) : null;
            double attention = spec.hasNonNull("attention_factor") ? positiveNumber(spec, "attention_factor", 1.0, where)
                    : LongRope.defaultAttentionFactor(maxPositions, orig, factor);
            return new LongRope(f[0], f[1], orig, attention);
        }

        /** The RoPE of theta with the scaling {@code spec} gives (null: none); {@code where} prefixes its keys in messages. */
        private RopeConfig ropeOf(JsonNode spec, double theta, String where) {
            String type = "default";
            double factor = 1, low = 1, high = 4;
            int orig = 8192;
            if (spec != null) {
                for (String k : new String[] {"type", "rope_type"}) {
                    JsonNode t = spec.get(k);
                    if (t != null && !t.isTextual()) {
                        throw bad(where + k, "must be a string", t);
                    }
                }
                type = spec.path("rope_type").asText(spec.path("type").asText("default"));
                factor = positiveNumber(spec, "factor", 1.0, where);
                low = positiveNumber(spec, "low_freq_factor", 1.0, where);
                high = positiveNumber(spec, "high_freq_factor", 4.0, where);
                JsonNode o = spec.get("original_max_position_embeddings");
                orig = o == null || o.isNull() ? 8192 : positiveInt(where + "original_max_position_embeddings", o);
            }
            if (!List.of("default", "linear", "llama3", "longrope").contains(type)) {
                throw ShrinkException.at(source, "rope type '" + type + "' is not supported (default, linear, llama3, "
                        + "longrope)");
            }
            if (type.equals("longrope")) {
                return new RopeConfig(theta, type, factor, low, high, orig, longRope(spec, where));
            }
            if (type.equals("llama3") && !(high > low)) {
                throw ShrinkException.at(source, where + "high_freq_factor " + high + " must be above low_freq_factor " + low);
            }
            return new RopeConfig(theta, type, factor, low, high, orig);
        }
    }
}
