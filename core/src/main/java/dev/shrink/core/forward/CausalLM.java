package dev.shrink.core.forward;

import dev.shrink.core.ShrinkException;
import dev.shrink.core.model.ArchitectureSpec;
import dev.shrink.core.model.ModelConfig;
import dev.shrink.core.ops.Ops;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * A whole causal language model held in float32: embedding, blocks, final norm, head.
 * For evaluation and generation; the compression stages walk blocks one at a time through
 * {@link Decoder} instead, so their memory stays at one block.
 */
public final class CausalLM {
    private final Decoder decoder;
    private final float[] embed;     // E: [V, C]
    private final float[] head;      // [V, C]: E itself when tied
    private final float[] finalNorm; // [C]
    private final List<BlockWeights> blocks;

    public CausalLM(Decoder decoder, float[] embed, float[] head, float[] finalNorm, List<BlockWeights> blocks) {
        this.decoder = decoder;
        this.embed = embed;
        this.head = head;
        this.finalNorm = finalNorm;
        this.blocks = blocks;
    }

    /** Reads every weight as float32 from {@code src}. */
    public static CausalLM load(WeightSource src, ModelConfig cfg, ArchitectureSpec spec, Ops ops) {
        int C = cfg.hidden(), V = cfg.vocab();
        float[] embed = read(src, spec.embedTokens(), V, C);
        float[] head;
        if (src.has(spec.lmHead())) {
            head = read(src, spec.lmHead(), V, C);
        } else if (cfg.tiedEmbeddings()) {
            head = embed;
        } else {
            throw new ShrinkException(src.origin(spec.lmHead()) + ": the weights have no '" + spec.lmHead()
                    + "' and config.json does not set tie_word_embeddings: true");
        }
        float[] norm = read(src, spec.finalNorm(), C);
        List<BlockWeights> blocks = new ArrayList<>();
        for (int i = 0; i < cfg.layers(); i++) {
            blocks.add(BlockWeights.load(src, cfg, spec, i));
        }
        return new CausalLM(new Decoder(cfg, spec, ops), embed, head, norm, blocks);
    }

    private static float[] read(WeightSource src, String name, long... shape) {
        if (!src.has(name)) {
            throw new ShrinkException(src.origin(name) + ": the weights have no tensor '" + name + "'");
        }
        if (!Arrays.equals(src.shape(name), shape)) {
            throw new ShrinkException(src.origin(name) + ": tensor '" + name + "' has shape " + Arrays.toString(src.shape(name))
                    + " but config.json implies " + Arrays.toString(shape));
        }
        return src.floats(name);
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

    public float[] embedding() {
        return embed;
    }

    public float[] head() {
        return head;
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
        float[] x = decoder.embed(embed, tokens);
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
        return decoder.logits(head, hidden, row0, rows);
    }

    public KvCache newCache(int capacity) {
        ModelConfig c = config();
        return new KvCache(c.layers(), capacity, c.kvHeads(), c.headDim());
    }
}
