package dev.shrink.distill;

import dev.shrink.core.ShrinkException;
import dev.shrink.core.forward.WeightSource;
import dev.shrink.core.model.ArchitectureSpec;
import dev.shrink.core.model.ArchitectureSpec.Role;
import dev.shrink.core.model.ModelConfig;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.EnumMap;
import java.util.List;

/**
 * The trainable tensors of a LLaMA-family model in a {@link TrainOps} array type: the parameters
 * (float32 master weights) or their gradients, in the same shape. Names are the Hugging Face
 * tensor names ({@code model.layers.3.mlp.down_proj.weight}); with tied embeddings the head is the
 * embedding itself (one tensor, one gradient that both uses add into).
 *
 * <p>Dimensions: V vocabulary, C hidden; linears W: [N, K] as PyTorch stores them.
 *
 * @param <A> the array type
 */
public final class Weights<A> {

    /** One tensor: its name, shape and values. */
    public record Entry<A>(String name, long[] shape, A value) {
    }

    /**
     * One decoder block: its two norms, its linears by role, their biases where present, and the
     * per-head RMSNorm weights of the queries and keys before RoPE ([D] each; Qwen3's q_norm and
     * k_norm), and the RMSNorm weights of the attention's and the MLP's outputs before their residual
     * adds ([C] each; Gemma's post_attention_layernorm and post_feedforward_layernorm), null for the
     * families without them. Norm weights are as stored (Gemma's offsets from 1: {@link TrainModel} adds the 1).
     */
    public record Block<A>(A inputNorm, A postNorm, EnumMap<Role, A> w, EnumMap<Role, A> b, A qNorm, A kNorm,
                           A attnOutNorm, A mlpOutNorm) {
        /** The same block with f applied to every tensor (null norms stay null). */
        <B> Block<B> map(java.util.function.Function<A, B> f) {
            EnumMap<Role, B> w2 = new EnumMap<>(Role.class), b2 = new EnumMap<>(Role.class);
            w.forEach((r, a) -> w2.put(r, f.apply(a)));
            b.forEach((r, a) -> b2.put(r, f.apply(a)));
            return new Block<>(f.apply(inputNorm), f.apply(postNorm), w2, b2, orNull(qNorm, f), orNull(kNorm, f),
                    orNull(attnOutNorm, f), orNull(mlpOutNorm, f));
        }

        private static <A, B> B orNull(A a, java.util.function.Function<A, B> f) {
            return a == null ? null : f.apply(a);
        }
    }

    private final ModelConfig cfg;
    private final ArchitectureSpec spec;
    final A embed;      // E: [V, C]
    final A head;       // [V, C]; == embed when tied
    final A finalNorm;  // [C]
    final List<Block<A>> blocks;

    Weights(ModelConfig cfg, ArchitectureSpec spec, A embed, A head, A finalNorm, List<Block<A>> blocks) {
        this.cfg = cfg;
        this.spec = spec;
        this.embed = embed;
        this.head = head;
        this.finalNorm = finalNorm;
        this.blocks = List.copyOf(blocks);
    }

    public ModelConfig config() {
        return cfg;
    }

    public ArchitectureSpec spec() {
        return spec;
    }

    /** Whether the head is the embedding. */
    public boolean tied() {
        return head == embed;
    }

    /**
     * Reads every trainable tensor of a model from {@code src} as float32 and hands it to
     * {@code ops}, checking each shape against the config. The head is {@code lm_head.weight} when
     * the weights have it, else the embedding when config.json ties them (as the decoder forward does).
     *
     * @throws ShrinkException naming the tensor and its origin for a missing tensor or a wrong shape
     */
    public static <A> Weights<A> load(WeightSource src, ModelConfig cfg, ArchitectureSpec spec, TrainOps<A> ops) {
        String missing = unsupported(spec, cfg);
        if (missing != null) {
            throw new ShrinkException(src.origin(spec.embedTokens()) + ": distillation has no backward yet for "
                    + missing);
        }
        int C = cfg.hidden(), V = cfg.vocab();
        A embed = ops.adopt(read(src, spec.embedTokens(), V, C));
        A head;
        if (src.has(spec.lmHead())) {
            head = ops.adopt(read(src, spec.lmHead(), V, C));
        } else if (cfg.tiedEmbeddings()) {
            head = embed;
        } else {
            throw new ShrinkException(src.origin(spec.lmHead()) + ": the weights have no '" + spec.lmHead()
                    + "' and config.json does not set tie_word_embeddings: true");
        }
        A norm = ops.adopt(read(src, spec.finalNorm(), C));
        List<Block<A>> blocks = new ArrayList<>();
        for (int i = 0; i < cfg.layers(); i++) {
            EnumMap<Role, A> w = new EnumMap<>(Role.class), b = new EnumMap<>(Role.class);
            for (ArchitectureSpec.Linear l : spec.linears()) {
                int[] nk = shape(cfg, l.role());
                String base = spec.layer(i, l.name());
                w.put(l.role(), ops.adopt(read(src, base + ".weight", nk[0], nk[1])));
                if (src.has(base + ".bias")) {
                    b.put(l.role(), ops.adopt(read(src, base + ".bias", nk[0])));
                }
            }
            A qNorm = null, kNorm = null;
            if (spec.qNorm() != null) {
                qNorm = ops.adopt(read(src, spec.layer(i, spec.qNorm()), cfg.headDim()));
                kNorm = ops.adopt(read(src, spec.layer(i, spec.kNorm()), cfg.headDim()));
            }
            A attnOut = null, mlpOut = null;
            if (spec.attentionOutputNorm() != null) {
                attnOut = ops.adopt(read(src, spec.layer(i, spec.attentionOutputNorm()), C));
                mlpOut = ops.adopt(read(src, spec.layer(i, spec.mlpOutputNorm()), C));
            }
            blocks.add(new Block<>(ops.adopt(read(src, spec.layer(i, spec.inputNorm()), C)),
                    ops.adopt(read(src, spec.layer(i, spec.postAttentionNorm()), C)), w, b, qNorm, kNorm, attnOut, mlpOut));
        }
        return new Weights<>(cfg, spec, embed, head, norm, blocks);
    }

    /**
     * What of a model's block the training model ({@link TrainModel}) has no backward for, as
     * "FAMILY's X, Y", or null when it trains it: LLaMA's block, with q/k/v biases (Qwen2), per-head
     * q/k norms (Qwen3), fused checkpoint tensors (Phi-3, split when read) and Gemma 3's sandwich block
     * ((1 + w) norms of the sub-blocks' inputs and outputs, scaled embeddings, GeGLU, a RoPE per layer
     * type) and Gemma 2's (query_pre_attn_scalar's attention scale, soft-capped attention scores and logits)
     * included; a mixture-of-experts MLP is not.
     */
    public static String unsupported(ArchitectureSpec spec, ModelConfig cfg) {
        List<String> what = new ArrayList<>();
        if (spec.moe() != null) {
            what.add("mixture-of-experts MLP");
        }
        return what.isEmpty() ? null : spec.family() + "'s " + String.join(", ", what);
    }

    /** (N, K) of a linear of this config. */
    static int[] shape(ModelConfig cfg, Role role) {
        int C = cfg.hidden();
        return switch (role) {
            case Q -> new int[] {cfg.qDim(), C};
            case K, V -> new int[] {cfg.kvDim(), C};
            case O -> new int[] {C, cfg.qDim()};
            case GATE, UP -> new int[] {cfg.intermediate(), C};
            case DOWN -> new int[] {C, cfg.intermediate()};
        };
    }

    private static float[] read(WeightSource src, String name, long... expected) {
        if (!src.has(name)) {
            throw new ShrinkException(src.origin(name) + ": the weights have no tensor '" + name + "'");
        }
        long[] shape = src.shape(name);
        if (!Arrays.equals(shape, expected)) {
            throw new ShrinkException(src.origin(name) + ": tensor '" + name + "' has shape " + Arrays.toString(shape)
                    + " but config.json implies " + Arrays.toString(expected));
        }
        float[] f = src.floats(name);
        return f;
    }

    /** The same tensors converted one by one by {@code f} (a tied head stays the embedding), e.g. copied to a device. */
    public <B> Weights<B> map(java.util.function.Function<A, B> f) {
        B e = f.apply(embed);
        B h = tied() ? e : f.apply(head);
        List<Block<B>> bs = new ArrayList<>();
        for (Block<A> b : blocks) {
            bs.add(b.map(f));
        }
        return new Weights<>(cfg, spec, e, h, f.apply(finalNorm), bs);
    }

    /** Zeros of the same shapes (and the same tying): the gradient holder. */
    public Weights<A> zerosLike(TrainOps<A> ops) {
        A e = ops.zeros(ops.size(embed));
        A h = tied() ? e : ops.zeros(ops.size(head));
        List<Block<A>> bs = new ArrayList<>();
        for (Block<A> b : blocks) {
            bs.add(b.map(a -> ops.zeros(ops.size(a))));
        }
        return new Weights<>(cfg, spec, e, h, ops.zeros(ops.size(finalNorm)), bs);
    }

    /**
     * Every distinct tensor with its Hugging Face name, in the order of the model's state dict:
     * embedding, then each block (its input norm, linears and biases, the q/k norms after o_proj's as
     * Qwen3's state dict has them, the MLP's input norm), the final norm, and the head when it is not tied.
     */
    public List<Entry<A>> entries() {
        int C = cfg.hidden(), V = cfg.vocab();
        List<Entry<A>> out = new ArrayList<>();
        out.add(new Entry<>(spec.embedTokens(), new long[] {V, C}, embed));
        for (int i = 0; i < blocks.size(); i++) {
            Block<A> b = blocks.get(i);
            out.add(new Entry<>(spec.layer(i, spec.inputNorm()), new long[] {C}, b.inputNorm()));
            for (ArchitectureSpec.Linear l : spec.linears()) {
                int[] nk = shape(cfg, l.role());
                out.add(new Entry<>(spec.layer(i, l.name()) + ".weight", new long[] {nk[0], nk[1]}, b.w().get(l.role())));
                A bias = b.b().get(l.role());
                if (bias != null) {
                    out.add(new Entry<>(spec.layer(i, l.name()) + ".bias", new long[] {nk[0]}, bias));
                }
                if (l.role() == Role.O && b.qNorm() != null) {
                    out.add(new Entry<>(spec.layer(i, spec.qNorm()), new long[] {cfg.headDim()}, b.qNorm()));
                    out.add(new Entry<>(spec.layer(i, spec.kNorm()), new long[] {cfg.headDim()}, b.kNorm()));
                }
            }
            out.add(new Entry<>(spec.layer(i, spec.postAttentionNorm()), new long[] {C}, b.postNorm()));
            if (b.attnOutNorm() != null) {
                out.add(new Entry<>(spec.layer(i, spec.attentionOutputNorm()), new long[] {C}, b.attnOutNorm()));
                out.add(new Entry<>(spec.layer(i, spec.mlpOutputNorm()), new long[] {C}, b.mlpOutNorm()));
            }
        }
        out.add(new Entry<>(spec.finalNorm(), new long[] {C}, finalNorm));
        if (!tied()) {
            out.add(new Entry<>(spec.lmHead(), new long[] {V, C}, head));
        }
        return out;
    }

    /** The tensor called {@code name}, or null. */
    public A get(String name) {
        for (Entry<A> e : entries()) {
            if (e.name().equals(name)) {
                return e.value();
            }
        }
        return null;
    }

    /** The number of trainable values (a tied head counted once). */
    public long parameterCount(TrainOps<A> ops) {
        long n = 0;
        for (Entry<A> e : entries()) {
            n += ops.size(e.value());
        }
        return n;
    }

    /** A view as a {@link WeightSource} of float32 copies, for the decoder forward (evaluation). */
    public WeightSource asSource(TrainOps<A> ops) {
        List<Entry<A>> list = entries();
        return new WeightSource() {
            private Entry<A> find(String name) {
                for (Entry<A> e : list) {
                    if (e.name().equals(name)) {
                        return e;
                    }
                }
                return null;
            }

            @Override
            public boolean has(String name) {
                return find(name) != null;
            }

            @Override
            public float[] floats(String name) {
                Entry<A> e = find(name);
                if (e == null) {
                    throw new IllegalArgumentException("no tensor " + name);
                }
                return ops.toFloats(e.value());
            }

            @Override
            public long[] shape(String name) {
                Entry<A> e = find(name);
                if (e == null) {
                    throw new IllegalArgumentException("no tensor " + name);
                }
                return e.shape().clone();
            }
        };
    }
}
