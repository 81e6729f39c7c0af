package dev.shrink.core.model;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.shrink.core.ShrinkException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * The parts of a Hugging Face {@code config.json} the decoder needs, for the LLaMA family
 * (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM).
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
 * @param slidingWindow   Mistral's attention window, or 0 for full attention
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
        ObjectNode raw) {

    private static final ObjectMapper JSON = new ObjectMapper();

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
                             double highFreqFactor, int originalMaxPositions) {

        /** inv_freq: [D/2], computed in double then rounded to float as torch does in float32. */
        public double[] inverseFrequencies(int headDim) {
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

    /** Reads and checks {@code dir/config.json}. */
    public static ModelConfig read(Path configFile) {
        JsonNode root;
        try {
            root = JSON.readTree(Files.readString(configFile));
        } catch (NoSuchFileException e) {
            throw ShrinkException.at(configFile, "not found: a Hugging Face model folder needs config.json");
        } catch (IOException e) {
            throw ShrinkException.at(configFile, "not valid JSON: " + firstLine(e.getMessage()), e);
        }
        if (root == null || !root.isObject()) {
            throw ShrinkException.at(configFile, "not a JSON object");
        }
        return parse((ObjectNode) root, configFile);
    }

    /** Parses a config object; {@code source} names the file in error messages. */
    public static ModelConfig parse(ObjectNode root, Path source) {
        Reader r = new Reader(root, source);
        String arch = r.architecture();
        ArchitectureSpec.forArchitecture(arch, source); // throws for an unsupported family
        int hidden = r.requiredInt("hidden_size");
        int heads = r.requiredInt("num_attention_heads");
        int kvHeads = r.optionalInt("num_key_value_heads", heads);
        int headDim = r.optionalInt("head_dim", 0);
        if (headDim == 0) {
            if (hidden % heads != 0) {
                throw ShrinkException.at(source, "hidden_size " + hidden + " is not divisible by num_attention_heads " + heads + " and head_dim is missing");
            }
            headDim = hidden / heads;
        }
        if (heads % kvHeads != 0) {
            throw ShrinkException.at(source, "num_attention_heads " + heads + " is not a multiple of num_key_value_heads " + kvHeads);
        }
        if (headDim % 2 != 0) {
            throw ShrinkException.at(source, "head_dim " + headDim + " is odd: rotary embeddings need an even head_dim");
        }
        String act = root.path("hidden_act").asText("silu");
        if (!act.equals("silu") && !act.equals("swish")) {
            throw ShrinkException.at(source, "hidden_act '" + act + "' is not supported (only silu)");
        }
        boolean qwen = arch.equals("Qwen2ForCausalLM");
        double rmsNormEps = root.path("rms_norm_eps").asDouble(1e-6);
        RopeConfig rope = r.rope();
        checkFinitePositive(source, "rms_norm_eps", rmsNormEps);
        checkFinitePositive(source, "rope_theta", rope.theta());
        checkFinitePositive(source, "rope factor", rope.factor());
        return new ModelConfig(
                arch,
                hidden,
                r.requiredInt("intermediate_size"),
                r.requiredInt("num_hidden_layers"),
                heads,
                kvHeads,
                headDim,
                r.requiredInt("vocab_size"),
                r.optionalInt("max_position_embeddings", 2048),
                rmsNormEps,
                rope,
                root.path("tie_word_embeddings").asBoolean(false),
                qwen || root.path("attention_bias").asBoolean(false),
                root.hasNonNull("torch_dtype") ? root.get("torch_dtype").asText()
                        : root.hasNonNull("dtype") ? root.get("dtype").asText() : null,
                root.hasNonNull("bos_token_id") ? root.get("bos_token_id").asInt() : null,
                r.intList("eos_token_id"),
                r.slidingWindow(arch),
                root.deepCopy());
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
     * it: Mistral uses {@code sliding_window} in every block; Qwen2 only with {@code use_sliding_window}
     * and then in the blocks marked "sliding_attention" by {@code layer_types}, or without that list
     * in blocks {@code ≥ max_window_layers} (default 28); LLaMA has none. A query at position p sees
     * the keys p − window + 1 .. p (transformers' masking_utils: kv_idx &gt; q_idx − sliding_window).
     */
    public int slidingWindow(int layer) {
        if (slidingWindow <= 0 || !architecture.equals("Qwen2ForCausalLM")) {
            return slidingWindow;
        }
        JsonNode types = raw.get("layer_types");
        if (types != null && types.isArray() && layer < types.size()) {
            return "sliding_attention".equals(types.get(layer).asText()) ? slidingWindow : 0;
        }
        return layer >= raw.path("max_window_layers").asInt(28) ? slidingWindow : 0;
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

    private static String firstLine(String s) {
        if (s == null) {
            return "";
        }
        int nl = s.indexOf('\n');
        return nl < 0 ? s : s.substring(0, nl);
    }

    /** Field access that names config.json and the key in every error. */
    private record Reader(ObjectNode root, Path source) {
        String architecture() {
            JsonNode archs = root.get("architectures");
            if (archs == null || !archs.isArray() || archs.isEmpty()) {
                throw ShrinkException.at(source, "missing 'architectures' (e.g. [\"LlamaForCausalLM\"])");
            }
            return archs.get(0).asText();
        }

        int requiredInt(String key) {
            JsonNode n = root.get(key);
            if (n == null || n.isNull()) {
                throw ShrinkException.at(source, "missing required field '" + key + "'");
            }
            if (!n.canConvertToInt() || !n.isIntegralNumber() || n.asInt() <= 0) {
                throw ShrinkException.at(source, "field '" + key + "' must be a positive integer, found " + n);
            }
            return n.asInt();
        }

        int optionalInt(String key, int fallback) {
            JsonNode n = root.get(key);
            if (n == null || n.isNull()) {
                return fallback;
            }
            if (!n.isIntegralNumber() || n.asInt() <= 0) {
                throw ShrinkException.at(source, "field '" + key + "' must be a positive integer, found " + n);
            }
            return n.asInt();
        }

        List<Integer> intList(String key) {
            JsonNode n = root.get(key);
            List<Integer> out = new ArrayList<>();
            if (n == null || n.isNull()) {
                return out;
            }
            if (n.isArray()) {
                n.forEach(e -> out.add(e.asInt()));
            } else {
                out.add(n.asInt());
            }
            return out;
        }

        /**
         * sliding_window as transformers reads it: LLaMA ignores it; Mistral defaults to 4096 when the
         * key is absent (null: full attention); Qwen2 uses it only with use_sliding_window. 0: none.
         */
        int slidingWindow(String arch) {
            boolean present = switch (arch) {
                case "MistralForCausalLM" -> true;
                case "Qwen2ForCausalLM" -> root.path("use_sliding_window").asBoolean(false);
                default -> false;
            };
            if (!present) {
                return 0;
            }
            if (!root.has("sliding_window") && arch.equals("MistralForCausalLM")) {
                return 4096;
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

        /** rope_theta at the top level (transformers ≤ 4) or inside rope_parameters (transformers 5); rope_scaling too. */
        RopeConfig rope() {
            JsonNode params = root.get("rope_parameters");
            JsonNode scaling = root.get("rope_scaling");
            double theta = root.path("rope_theta").asDouble(10000.0);
            JsonNode spec = null;
            if (params != null && params.isObject()) {
                if (params.has("rope_theta")) {
                    theta = params.get("rope_theta").asDouble();
                }
                spec = params;
            }
            if (scaling != null && scaling.isObject()) {
                spec = scaling;
            }
            String type = "default";
            double factor = 1, low = 1, high = 4;
            int orig = 8192;
            if (spec != null) {
                type = spec.path("rope_type").asText(spec.path("type").asText("default"));
                factor = spec.path("factor").asDouble(1.0);
                low = spec.path("low_freq_factor").asDouble(1.0);
                high = spec.path("high_freq_factor").asDouble(4.0);
                orig = spec.path("original_max_position_embeddings").asInt(8192);
            }
            if (!List.of("default", "linear", "llama3").contains(type)) {
                throw ShrinkException.at(source, "rope type '" + type + "' is not supported (default, linear, llama3)");
            }
            return new RopeConfig(theta, type, factor, low, high, orig);
        }
    }
}
