package dev.shrink.core.sparse;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.shrink.core.ShrinkException;
import dev.shrink.core.model.ModelDir;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * What a pruned model's config.json says about its zeros, under {@code "shrink": {"sparsity": ...}}:
 * <pre>{"method": "wanda", "pattern": "unstructured" | "2:4", "ratio": 0.5, "scope": "row" | "layer" | "global" | null,
 *  "layers": {"model.layers.0.self_attn.q_proj": 0.5, ...}}</pre>
 * {@code ratio} is the requested fraction of zeros (for N:M, (M − N)/M); {@code scope} where
 * unstructured scores were compared (null for N:M, whose groups are the scope); {@code layers} the
 * actual fraction of exact zeros of every pruned linear (tensor prefix, without ".weight").
 * A later stage (quantization, distillation) reads it to keep those zeros.
 *
 * @param method  the pruning method ("magnitude", "wanda", "sparsegpt")
 * @param pattern the sparsity pattern (its label and ratio are what the JSON holds)
 * @param scope   "layer", "row", "global", or null
 * @param layers  linear → fraction of zeros, in the order pruned
 */
public record SparsityRecord(String method, SparsityPattern pattern, String scope, Map<String, Double> layers) {

    /** The key under which Shrink keeps its own facts in config.json. */
    public static final String SHRINK_KEY = "shrink";

    /** The key of this record under {@link #SHRINK_KEY}. */
    public static final String SPARSITY_KEY = "sparsity";

    /** The scopes an unstructured pattern may name. */
    public static final List<String> SCOPES = List.of("layer", "row", "global");

    public SparsityRecord {
        Objects.requireNonNull(method, "method");
        Objects.requireNonNull(pattern, "pattern");
        Objects.requireNonNull(layers, "layers");
        if (scope != null && !SCOPES.contains(scope)) {
            throw new IllegalArgumentException("scope must be one of " + SCOPES + " or null, got '" + scope + "'");
        }
        layers = Collections.unmodifiableMap(new LinkedHashMap<>(layers));
    }

    /** The requested fraction of zeros. */
    public double ratio() {
        return pattern.ratio();
    }

    /** The JSON object kept under {@code shrink.sparsity}. */
    public ObjectNode toJson() {
        ObjectNode o = JsonNodeFactory.instance.objectNode();
        o.put("method", method);
        o.put("pattern", pattern.label());
        o.put("ratio", pattern.ratio());
        if (scope == null) {
            o.putNull("scope");
        } else {
            o.put("scope", scope);
        }
        ObjectNode l = o.putObject("layers");
        layers.forEach(l::put);
        return o;
    }

    /**
     * A copy of {@code config} (a config.json root) with {@code shrink.sparsity} set to this record;
     * every other key, other keys under {@code shrink} included, is kept.
     */
    public ObjectNode writeInto(ObjectNode config) {
        ObjectNode cfg = config.deepCopy();
        JsonNode shrink = cfg.get(SHRINK_KEY);
        ObjectNode s = shrink instanceof ObjectNode so ? so : cfg.putObject(SHRINK_KEY);
        s.set(SPARSITY_KEY, toJson());
        return cfg;
    }

    /**
     * The record in a config.json root, or null when it has none.
     *
     * @throws ShrinkException "shrink.sparsity: ..." when it is there but malformed
     */
    public static SparsityRecord fromConfig(JsonNode config) {
        JsonNode s = config == null ? null : config.path(SHRINK_KEY).get(SPARSITY_KEY);
        if (s == null || s.isNull()) {
            return null;
        }
        if (!s.isObject()) {
            throw bad("is not an object");
        }
        String method = text(s, "method");
        String label = text(s, "pattern");
        JsonNode r = s.get("ratio");
        if (r == null || !r.isNumber()) {
            throw bad("'ratio' is missing or not a number");
        }
        double ratio = r.asDouble();
        SparsityPattern pattern;
        if (label.equals("unstructured")) {
            if (!(ratio >= 0 && ratio < 1)) {
                throw bad("'ratio' " + ratio + " is outside [0, 1)");
            }
            pattern = new SparsityPattern.Unstructured(ratio);
        } else {
            try {
                pattern = SparsityPattern.parse(label);
            } catch (ShrinkException e) {
                throw bad("'pattern' " + e.getMessage());
            }
            if (Math.abs(pattern.ratio() - ratio) > 1e-12) {
                throw bad("'ratio' " + ratio + " does not match pattern " + label);
            }
        }
        JsonNode sc = s.get("scope");
        String scope = sc == null || sc.isNull() ? null : sc.asText();
        if (scope != null && !SCOPES.contains(scope)) {
            throw bad("'scope' must be one of " + SCOPES + " or null, got '" + scope + "'");
        }
        JsonNode l = s.get("layers");
        if (l == null || !l.isObject()) {
            throw bad("'layers' is missing or not an object");
        }
        Map<String, Double> layers = new LinkedHashMap<>();
        for (Map.Entry<String, JsonNode> e : l.properties()) {
            if (!e.getValue().isNumber()) {
                throw bad("layer '" + e.getKey() + "' has no numeric ratio");
            }
            layers.put(e.getKey(), e.getValue().asDouble());
        }
        return new SparsityRecord(method, pattern, scope, layers);
    }

    /**
     * The record in a model folder's config.json, or null when it has none.
     *
     * @throws ShrinkException naming config.json when the record is malformed
     */
    public static SparsityRecord read(ModelDir model) {
        try {
            return fromConfig(model.config().raw());
        } catch (ShrinkException e) {
            throw ShrinkException.at(model.dir().resolve("config.json"), e.getMessage(), e);
        }
    }

    private static String text(JsonNode s, String field) {
        JsonNode v = s.get(field);
        if (v == null || !v.isTextual()) {
            throw bad("'" + field + "' is missing or not a string");
        }
        return v.asText();
    }

    private static ShrinkException bad(String problem) {
        return new ShrinkException(SHRINK_KEY + "." + SPARSITY_KEY + ": " + problem);
    }
}
