package dev.shrink.core.transform;

import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.shrink.core.ShrinkException;
import dev.shrink.core.forward.WeightSource;
import dev.shrink.core.model.ArchitectureSpec;
import dev.shrink.core.model.ArchitectureSpec.Role;
import dev.shrink.core.model.ModelConfig;
import dev.shrink.core.model.ModelDir;
import dev.shrink.core.safetensors.TensorData;
import dev.shrink.core.safetensors.WeightStore;
import dev.shrink.core.sparse.SparsityRecord;
import dev.shrink.core.tensor.DType;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Predicate;
import java.util.stream.IntStream;

/**
 * A LLaMA-family model with its residual stream rotated by an orthogonal {@link Rotation} Q
 * (QuaRot / SpinQuant, weight-only; docs/QUALITY.md, "Rotation"), seen as a {@link WeightSource} of
 * float32 weights: the same function as the source (up to float rounding), but with weights whose
 * outliers are spread over all channels, which quantize better.
 *
 * <p>Every RMSNorm weight g is folded into the linears that read it, then the norm weight is 1, and
 * RMSNorm(x·Q) = RMSNorm(x)·Q. With W [N, K] used as x·Wᵀ:
 * <ul>
 *   <li>embeddings E ← E·Q (the residual stream becomes x·Q);</li>
 *   <li>q/k/v ← W·diag(g_input)·Q and gate/up ← W·diag(g_post_attention)·Q (their inputs are rotated;
 *       q/k/v biases are unchanged);</li>
 *   <li>o/down ← Qᵀ·W (their outputs are added to the rotated stream), and a bias b ← b·Q;</li>
 *   <li>lm_head ← lm_head·diag(g_final)·Q; every norm weight ← 1;</li>
 *   <li>optionally, per attention head, a second rotation Hd [D, D] of the values: v's rows of head h
 *       ← Hdᵀ·W_v,h (and its bias b_h·Hd), o's columns of head h ← W_o,h·Hd; attention mixes values
 *       linearly per head, so o's input is rotated by Hd and the function is unchanged.</li>
 * </ul>
 * Tied embeddings: the embedding and the head can stay one matrix E·Q only when the final norm's
 * weight is a constant c (it then stays c, which commutes with Q). Otherwise the head is untied: the
 * output gets an explicit {@code lm_head.weight} and {@code tie_word_embeddings: false}, so every
 * loader reads the same function (one more [V, C] matrix on disk).
 *
 * <p>Rotations are computed in double in a fixed order and rounded once to float: the same seed gives
 * the same bytes everywhere (rows, or columns, are independent, so they run in parallel without
 * changing a bit). Embedding, head and norms are computed once; a decoder linear is rotated
 * each time it is read (stages read each one once).
 */
public final class RotatedModel implements WeightSource {
    private final WeightSource src;
    private final ModelConfig cfg;
    private final ArchitectureSpec spec;
    private final Rotation q;
    private final Rotation hd;         // head-wise rotation of v's outputs and o's inputs [D, D], or null
    private final boolean untie;       // the output gets lm_head.weight and tie_word_embeddings: false
    private final boolean headAdded;   // lm_head.weight is not in the source
    private final Map<String, float[]> fixed = new LinkedHashMap<>(); // embedding, head, norms
    private final Map<String, Linear> linears = new HashMap<>();      // "model.layers.i.x.weight"/".bias"

    private record Linear(Role role, String normName, boolean bias) {
    }

    private RotatedModel(WeightSource src, ModelConfig cfg, ArchitectureSpec spec, Rotation q, Rotation hd) {
        this.src = src;
        this.cfg = cfg;
        this.spec = spec;
        this.q = q;
        this.hd = hd;
        int C = cfg.hidden(), V = cfg.vocab();
        String embed = spec.embedTokens(), head = spec.lmHead(), finalNorm = spec.finalNorm();
        if (spec.attentionOutputNorm() != null || spec.mlpOutputNorm() != null || spec.unitOffsetNorms()) {
            // RMSNorm(o·Q) of a sub-block's output is not RMSNorm(o)·Q unless its weight is constant
            throw new ShrinkException(src.origin(embed) + ": rotation folds the norms of LLaMA's block; " + spec.family()
                    + "'s norms of the attention and MLP outputs (and (1 + w) weights) do not commute with it");
        }
        require(embed, V, C);
        require(finalNorm, C);
        float[] g = src.floats(finalNorm);
        boolean sourceHead = src.has(head);
        if (!sourceHead && !cfg.tiedEmbeddings()) {
            throw new ShrinkException(src.origin(head) + ": the weights have no '" + head
                    + "' and config.json does not set tie_word_embeddings: true");
        }
        if (sourceHead) {
            require(head, V, C);
        }
        boolean constantNorm = constant(g);
        untie = cfg.tiedEmbeddings() && (sourceHead || !constantNorm);
        headAdded = untie && !sourceHead;
        float[] E = src.floats(embed);
        fixed.put(embed, rotateRows(E, V, C, null));
        if (sourceHead || untie) {
            fixed.put(head, rotateRows(sourceHead ? src.floats(head) : E, V, C, g));
            fixed.put(finalNorm, ones(C));
        } // else tied with a constant final norm: the norm stays as it is, E·Q serves both
        for (int i = 0; i < cfg.layers(); i++) {
            String in = spec.layer(i, spec.inputNorm()), post = spec.layer(i, spec.postAttentionNorm());
            require(in, C);
            require(post, C);
            for (ArchitectureSpec.Linear l : spec.linears()) {
                String norm = switch (l.role()) {
                    case Q, K, V -> in;
                    case GATE, UP -> post;
                    case O, DOWN -> null;
                };
                String base = spec.layer(i, l.name());
                linears.put(base + ".weight", new Linear(l.role(), norm, false));
                linears.put(base + ".bias", new Linear(l.role(), norm, true));
            }
            fixed.put(in, ones(C));
            fixed.put(post, ones(C));
        }
    }

    /**
     * What to rotate: the residual stream by {@link Rotation#of}(hidden, seed), and with {@code heads}
     * also each attention head's values by {@link Rotation#of}(head_dim, seed + 1) (v's output rows and
     * o's input columns per head; under GQA every head shares it).
     */
    public record Settings(long seed, boolean heads) {
    }

    /**
     * The model of {@code src} rotated as {@code settings} says.
     *
     * @throws ShrinkException when a norm, the embedding or the head is missing or misshapen (naming its file)
     */
    public static RotatedModel of(WeightSource src, ModelConfig cfg, ArchitectureSpec spec, Settings settings) {
        return new RotatedModel(src, cfg, spec, Rotation.of(cfg.hidden(), settings.seed()),
                settings.heads() ? Rotation.of(cfg.headDim(), settings.seed() + 1) : null);
    }

    /**
     * The model folder {@code dir} rotated as {@code settings} says, refusing what a rotation would
     * spoil: a quantized folder, and a pruned one (its zeros would fill in).
     */
    public static RotatedModel of(ModelDir dir, Settings settings) {
        java.nio.file.Path config = dir.dir().resolve("config.json");
        if (dir.config().raw().hasNonNull("quantization_config")) {
            throw ShrinkException.at(config, "the model is already quantized (it has a quantization_config); "
                    + "--rotate needs the unquantized model");
        }
        if (dir.config().raw().path(SparsityRecord.SHRINK_KEY).hasNonNull(SparsityRecord.SPARSITY_KEY)) {
            throw ShrinkException.at(config, "the model is pruned (it has shrink.sparsity): --rotate would fill in its "
                    + "zeros; quantize it without --rotate");
        }
        return of(dev.shrink.core.forward.FusedLinears.of(dir), dir.config(), dir.spec(), settings);
    }

    /** With given rotations: {@code q} of size hidden, {@code hd} of size head_dim or null (no head-wise rotation). */
    public static RotatedModel of(WeightSource src, ModelConfig cfg, ArchitectureSpec spec, Rotation q, Rotation hd) {
        if (q.size() != cfg.hidden() || (hd != null && hd.size() != cfg.headDim())) {
            throw new IllegalArgumentException("rotations of size " + q.size() + (hd == null ? "" : ", " + hd.size())
                    + " for hidden size " + cfg.hidden() + ", head dim " + cfg.headDim());
        }
        return new RotatedModel(src, cfg, spec, q, hd);
    }

    public Rotation rotation() {
        return q;
    }

    /** Whether the output unties the head from the embedding (writes lm_head.weight, tie_word_embeddings: false). */
    public boolean untied() {
        return untie;
    }

    @Override
    public boolean has(String name) {
        return src.has(name) || (headAdded && name.equals(spec.lmHead()));
    }

    @Override
    public long[] shape(String name) {
        if (headAdded && name.equals(spec.lmHead())) {
            return new long[] {cfg.vocab(), cfg.hidden()};
        }
        return src.shape(name);
    }

    @Override
    public String origin(String name) {
        return src.origin(name);
    }

    @Override
    public float[] floats(String name) {
        float[] f = fixed.get(name);
        if (f != null) {
            return f.clone();
        }
        Linear l = linears.get(name);
        if (l == null || !src.has(name)) {
            return src.floats(name);
        }
        int C = cfg.hidden(), D = cfg.headDim();
        long[] shape = src.shape(name);
        double[] w = doubles(src.floats(name));
        boolean inputSide = l.role() != Role.O && l.role() != Role.DOWN;
        if (l.bias()) {
            // q/k/v/gate/up biases live in their outputs, which the residual rotation does not touch
            if (!inputSide) {
                q.apply(w, 0, 1);
            } else if (hd != null && l.role() == Role.V) {
                for (int h = 0; h < cfg.kvHeads(); h++) {
                    hd.apply(w, h * D, 1);
                }
            }
            return floats(w);
        }
        if (shape.length != 2) {
            throw new ShrinkException(src.origin(name) + ": tensor '" + name + "' has shape " + Arrays.toString(shape)
                    + ", expected a matrix");
        }
        int N = Math.toIntExact(shape[0]), K = Math.toIntExact(shape[1]);
        if (inputSide) {
            if (K != C) {
                throw new ShrinkException(src.origin(name) + ": tensor '" + name + "' has " + K + " input features, hidden size is " + C);
            }
            float[] g = src.floats(l.normName());
            IntStream.range(0, N).parallel().forEach(n -> {
                for (int c = 0; c < C; c++) {
                    w[n * C + c] *= g[c];
                }
                q.apply(w, n * C, 1);                 // W ← W·diag(g)·Q
            });
            if (hd != null && l.role() == Role.V) {
                for (int h = 0; h < N / D; h++) {
                    for (int c = 0; c < C; c++) {
                        hd.apply(w, h * D * C + c, C); // each head's rows ← Hdᵀ·W_h
                    }
                }
            }
            return floats(w);
        }
        if (N != C) {
            throw new ShrinkException(src.origin(name) + ": tensor '" + name + "' has " + N + " output features, hidden size is " + C);
        }
        IntStream.range(0, K).parallel().forEach(k -> q.apply(w, k, K)); // W ← Qᵀ·W: each column v ← (vᵀ·Q)ᵀ
        if (hd != null && l.role() == Role.O) {
            for (int n = 0; n < N; n++) {
                for (int h = 0; h < K / D; h++) {
                    hd.apply(w, n * K + h * D, 1);   // each head's columns ← W_h·Hd
                }
            }
        }
        return floats(w);
    }

    /**
     * The tensors of the source whose values the rotation changed, as they are to be written (full name
     * → float32 values, the source's shape), except the weights and biases of the decoder linears
     * {@code quantized} says are written quantized (by prefix, "model.layers.0.self_attn.q_proj").
     * Memory: every unquantized changed tensor at once.
     */
    public Map<String, float[]> modified(Predicate<String> quantized) {
        Map<String, float[]> out = new LinkedHashMap<>();
        for (Map.Entry<String, float[]> e : fixed.entrySet()) {
            if (src.has(e.getKey())) {
                out.put(e.getKey(), e.getValue());
            }
        }
        for (int i = 0; i < cfg.layers(); i++) {
            for (ArchitectureSpec.Linear l : spec.linears()) {
                String base = spec.layer(i, l.name());
                if (quantized.test(base)) {
                    continue;
                }
                out.put(base + ".weight", floats(base + ".weight"));
                if (src.has(base + ".bias") && (l.role() == Role.O || l.role() == Role.DOWN || (hd != null && l.role() == Role.V))) {
                    out.put(base + ".bias", floats(base + ".bias"));
                }
            }
        }
        return out;
    }

    /** Tensors the output has and the source has not: the untied head (name → [V, C] values), or none. */
    public Map<String, float[]> added() {
        return headAdded ? Map.of(spec.lmHead(), fixed.get(spec.lmHead())) : Map.of();
    }

    /**
     * {@link #added()} as tensors to write: F16 when the source's embedding is 16-bit and every value fits,
     * else F32 ({@link TensorData#ofChangedFloats}).
     */
    public List<TensorData> addedTensors(WeightStore source) {
        List<TensorData> out = new ArrayList<>();
        DType like = source.info(spec.embedTokens()).dtype();
        added().forEach((name, v) -> out.add(TensorData.ofChangedFloats(name, new long[] {cfg.vocab(), cfg.hidden()}, v, like)));
        return out;
    }

    /** The output's config.json from the source's: {@code tie_word_embeddings: false} when untied. */
    public ObjectNode editConfig(ObjectNode config) {
        if (untie) {
            config.put("tie_word_embeddings", false);
        }
        return config;
    }

    /** What shrink-report.json records about the rotation. */
    public Map<String, Object> report() {
        Map<String, Object> r = new LinkedHashMap<>();
        r.put("seed", q.seed());
        r.put("size", q.size());
        r.put("matrix", q.kind());
        r.put("heads", hd == null ? null : hd.kind());
        r.put("norms_folded", true);
        r.put("untied_lm_head", untie);
        return r;
    }

    private void require(String name, long... shape) {
        if (!src.has(name)) {
            throw new ShrinkException(src.origin(name) + ": the weights have no tensor '" + name + "'");
        }
        if (!Arrays.equals(src.shape(name), shape)) {
            throw new ShrinkException(src.origin(name) + ": tensor '" + name + "' has shape " + Arrays.toString(src.shape(name))
                    + " but config.json implies " + Arrays.toString(shape));
        }
    }

    /** Each row r of W [N, C] ← (r ∘ g)·Q (g null: 1), in double, rounded once. */
    private float[] rotateRows(float[] W, int N, int C, float[] g) {
        double[] w = doubles(W);
        IntStream.range(0, N).parallel().forEach(n -> {
            if (g != null) {
                for (int c = 0; c < C; c++) {
                    w[n * C + c] *= g[c];
                }
            }
            q.apply(w, n * C, 1);
        });
        return floats(w);
    }

    private static double[] doubles(float[] f) {
        double[] d = new double[f.length];
        for (int i = 0; i < f.length; i++) {
            d[i] = f[i];
        }
        return d;
    }

    private static float[] floats(double[] d) {
        float[] f = new float[d.length];
        for (int i = 0; i < d.length; i++) {
            f[i] = (float) d[i];
        }
        return f;
    }

    private static boolean constant(float[] g) {
        for (float v : g) {
            if (Float.floatToIntBits(v) != Float.floatToIntBits(g[0])) {
                return false;
            }
        }
        return true;
    }

    private static float[] ones(int C) {
        float[] f = new float[C];
        Arrays.fill(f, 1f);
        return f;
    }
}
