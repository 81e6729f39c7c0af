package dev.shrink.eval;

import dev.shrink.core.forward.CausalLM;
import dev.shrink.core.forward.WeightSource;
import dev.shrink.core.model.ModelDir;
import dev.shrink.core.model.Tokenizer;
import dev.shrink.core.ops.Ops;
import java.nio.file.Path;

/**
 * A model folder opened for evaluation or generation: its config and tokenizer at once, its weights
 * in float32 on the Java heap when {@link #lm()} is first asked for (the GPU's resident evaluation
 * never asks). Quantized folders are read through a dequantizing {@link WeightSource} (per their
 * quantization_config), so one decoder serves every format.
 */
public final class LoadedModel implements AutoCloseable {
    private final ModelDir dir;
    private final Ops ops;
    private final Tokenizer tokenizer;
    private CausalLM lm;

    private LoadedModel(ModelDir dir, Ops ops, Tokenizer tokenizer) {
        this.dir = dir;
        this.ops = ops;
        this.tokenizer = tokenizer;
    }

    public static LoadedModel open(Path path, Ops ops) {
        ModelDir dir = ModelDir.open(path);
        try {
            return new LoadedModel(dir, ops, dir.tokenizer());
        } catch (RuntimeException e) {
            dir.close();
            throw e;
        }
    }

    public ModelDir dir() {
        return dir;
    }

    /** The weights in float32 on the heap, read on the first call. */
    public synchronized CausalLM lm() {
        if (lm == null) {
            WeightSource src = WeightSources.forModel(dir);
            lm = CausalLM.load(src, dir.config(), dir.spec(), ops);
        }
        return lm;
    }

    public Tokenizer tokenizer() {
        return tokenizer;
    }

    /** BOS (when the model has one) followed by the text's tokens: the protocol's token stream. */
    public int[] tokenStream(String text) {
        return withBos(tokenizer.encode(text), dir.config().bosTokenId());
    }

    /** {@code bos} followed by {@code body}, or {@code body} itself when the model has no BOS. */
    public static int[] withBos(int[] body, Integer bos) {
        if (bos == null) {
            return body;
        }
        int[] ids = new int[body.length + 1];
        ids[0] = bos;
        System.arraycopy(body, 0, ids, 1, body.length);
        return ids;
    }

    @Override
    public void close() {
        tokenizer.close();
        dir.close();
    }
}
