package dev.shrink.core.forward;

import dev.shrink.core.ShrinkException;
import dev.shrink.core.model.ArchitectureSpec;
import dev.shrink.core.model.ModelConfig;
import dev.shrink.core.ops.Ops;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * A whole causal language model: embedding, blocks, final norm, head, in float32 or, loaded in the
 * backend's layout, as the backend holds them (packed 4/8-bit linears, bf16 panels; a tied embedding
 * then read from the head's kernel, not kept a second time in float32).
 * For evaluation and generation; the compression stages walk blocks one at a time through
 * {@link Decoder} instead, so their memory stays at one block.
 */
public final class CausalLM {
    private final Decoder decoder;
    private final float[] embed;     // E: [V, C], or null when tied and read from headKernel
    private final float[] head;      // [V, C]: E itself when tied; null with embed
    private final float[] finalNorm; // [C]
    private final List<BlockWeights> blocks;
    private final String source;     // the model folder (or weights file) for messages, or null
    private final dev.shrink.core.ops.LinearKernel headKernel; // the head in the backend's layout, or null

    public CausalLM(Decoder decoder, float[] embed, float[] head, float[] finalNorm, List<BlockWeights> blocks) {
        this(decoder, embed, head, finalNorm, blocks, null, null);
    }

    private CausalLM(Decoder decoder, float[] embed, float[] head, float[] finalNorm, List<BlockWeights> blocks,
                     String source, dev.shrink.core.ops.LinearKernel headKernel) {
        this.headKernel = headKernel;
        this.decoder = decoder;
        this.embed = embed;
        this.head = head;
        this.finalNorm = finalNorm;
        this.blocks = blocks;
        this.source = source;
    }

    /** Reads every weight as float32 from {@code src}. */
    public static CausalLM load(WeightSource src, ModelConfig cfg, ArchitectureSpec spec, Ops ops) {
        return load(src, cfg, spec, ops, true);
    }

    /**
     * @param backendLayout whether the linears take {@code ops}' own forms where it has them (4/8-bit ones
     *                      kept packed, float ones in a layout made once: {@link BlockWeights#load} with
     *                      {@code ops}); false: every linear as float32 arrays, readable by
     *                      {@link BlockWeights#weight} (distillation fingerprints its teacher so)
     */
    public static CausalLM load(WeightSource src, ModelConfig cfg, ArchitectureSpec spec, Ops ops, boolean backendLayout) {
        int C = cfg.hidden(), V = cfg.vocab();
        float[] embed = WeightSource.checked(src, spec.embedTokens(), V, C);
        float[] head;
        if (src.has(spec.lmHead())) {
            head = WeightSource.checked(src, spec.lmHead(), V, C);
            if (cfg.tiedEmbeddings()) {
                head = tiedHead(src, spec, embed, head);
            }
        } else if (cfg.tiedEmbeddings()) {
            head = embed;
        } else {
            throw new ShrinkException(src.origin(spec.lmHead()) + ": the weights have no '" + spec.lmHead()
                    + "' and config.json does not set tie_word_embeddings: true");
        }
        float[] norm = spec.normWeight(WeightSource.checked(src, spec.finalNorm(), C));
        List<BlockWeights> blocks = new ArrayList<>();
        for (int i = 0; i < cfg.layers(); i++) {
            blocks.add(BlockWeights.load(src, cfg, spec, i, backendLayout ? ops : null));
        }
        String origin = src.origin(spec.embedTokens());
        java.nio.file.Path parent = origin.endsWith(".safetensors") ? java.nio.file.Path.of(origin).getParent() : null;
        dev.shrink.core.ops.LinearKernel headKernel = backendLayout ? ops.dense(head, V, C, null) : null;
        // tied: E's rows come from the head's kernel where it reads rows, rather than from a second copy
        boolean rowsFromHead = headKernel != null && head == embed && headKernel.readsRows();
        return new CausalLM(new Decoder(cfg, spec, ops), rowsFromHead ? null : embed, rowsFromHead ? null : head, norm,
                blocks, parent != null ? parent.toString() : origin, headKernel);
    }

    /**
     * tie_word_embeddings: true with an lm_head in the weights too, as transformers 5 resolves it
     * (PreTrainedModel.tie_weights during from_pretrained): equal tensors are tied (the head is the
     * embedding); different ones are NOT tied, the checkpoint's lm_head is used, with a warning.
     * Every reader (this one, the GPU decoder's, distillation's) and so every writer that copies
     * lm_head through gives the same head.
     */
    public static float[] tiedHead(WeightSource src, ArchitectureSpec spec, float[] embed, float[] head) {
        if (Arrays.equals(embed, head)) {
            return embed;
        }
        String origin = src.origin(spec.lmHead());
        dev.shrink.core.util.Warnings.once("tied-head " + origin, origin + ": config.json sets tie_word_embeddings: true "
                + "but '" + spec.lmHead() + "' differs from '" + spec.embedTokens() + "'; using '" + spec.lmHead()
                + "' as transformers 5 does (it ties them only when equal; set tie_word_embeddings: false to silence this)");
        return head;
    }

    /**
     * This model (the same weights, not copied) with attention reading K and V through
     * {@code kvCache}'s quantizer; this model itself when it already does.
     */
    public CausalLM withKvCache(KvCacheType kvCache) {
        if (kvCache == decoder.kvCache()) {
            return this;
        }
        return new CausalLM(new Decoder(decoder.config(), decoder.spec(), decoder.ops(), kvCache), embed, head, finalNorm,
                blocks, source, headKernel);
    }

    public Decoder decoder() {
        return decoder;
    }

    public ModelConfig config() {
        return decoder.config();
    }

    public List<BlockWeights> blocks() {
        return blocks;
    }

    /** E [V, C] (made from the head's kernel, on request, where the model holds it only there). */
    public float[] embedding() {
        return embed != null ? embed : headKernel.weights();
    }

    /** Whether the head is the embedding matrix itself (tied), held once. */
    public boolean tied() {
        return embed == null || embed == head;
    }

    /** The head [V, C] (made from its kernel, on request, where the model holds it only there). */
    public float[] head() {
        return head != null ? head : headKernel.weights();
    }

    /**
     * Heap bytes of the weights this model holds: embedding and head (once when they are one array),
     * the head's kernel, every block ({@link BlockWeights#bytes}) and the final norm.
     */
    public long bytes() {
        long b = 4L * finalNorm.length + (embed == null ? 0 : 4L * embed.length)
                + (head == null || head == embed ? 0 : 4L * head.length) + (headKernel == null ? 0 : headKernel.bytes());
        for (BlockWeights w : blocks) {
            b += w.bytes();
        }
        return b;
    }

    public float[] finalNormWeight() {
        return finalNorm;
    }

    /**
     * Final hidden states (after the last norm) of B independent sequences of T tokens each:
     * tokens: [B·T] → [B·T, C]. With caches, the tokens continue the cached sequences.
     */
    public float[] hidden(int[] tokens, int B, int T, KvCache[] caches, Taps taps) {
        if (tokens.length != B * T) {
            throw new IllegalArgumentException("tokens.length " + tokens.length + " != B·T = " + B * T);
        }
        float[] x = embed != null ? decoder.embed(embed, tokens) : decoder.embed(headKernel, tokens);
        for (BlockWeights w : blocks) {
            decoder.block(w, x, B, T, caches, taps);
        }
        if (caches != null) {
            decoder.advance(caches, T);
        }
        decoder.finalNorm(finalNorm, x, B * T);
        return x;
    }

    /** logits [rows, V] of hidden rows row0..row0+rows−1. */
    public float[] logits(float[] hidden, int row0, int rows) {
        return headKernel != null ? decoder.logits(headKernel, hidden, row0, rows) : decoder.logits(head, hidden, row0, rows);
    }

    /**
     * The error for a forward of {@code tokens} (B sequences of T, from position 0) whose result
     * (logits, NLL, KL) was NaN or infinite: the same forward is run again with every op's output
     * checked, and the error names the model, {@code what} was computed, and the first op that
     * produced a non-finite value ("MODEL: heldout window 3: non-finite output (NaN) first at layer 0
     * attention (...)"). The weights themselves were checked when read.
     */
    public ShrinkException nonFinite(int[] tokens, int B, int T, String what) {
        String prefix = (source == null ? "" : source + ": ") + what + ": ";
        CausalLM checked = new CausalLM(decoder.checking(), embed, head, finalNorm, blocks, source, headKernel);
        try {
            float[] h = checked.hidden(tokens, B, T, null, Taps.NONE);
            int chunk = Math.max(1, (16 << 20) / config().vocab());
            for (int r0 = 0; r0 < B * T; r0 += chunk) {
                checked.logits(h, r0, Math.min(chunk, B * T - r0));
            }
        } catch (NonFinite.OpException e) {
            return new ShrinkException(prefix + e.getMessage(), e);
        }
        return new ShrinkException(prefix + "the result is not finite (NaN or infinite), although no op of the "
                + "forward was when run again with checks");
    }

    public KvCache newCache(int capacity) {
        ModelConfig c = config();
        return new KvCache(c.layers(), capacity, c.kvHeads(), c.headDim());
    }
}
