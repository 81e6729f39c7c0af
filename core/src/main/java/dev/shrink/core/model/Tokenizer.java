package dev.shrink.core.model;

import ai.djl.huggingface.tokenizers.Encoding;
import ai.djl.huggingface.tokenizers.HuggingFaceTokenizer;
import dev.shrink.core.ShrinkException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * A Hugging Face {@code tokenizer.json} through DJL's bindings to the Rust tokenizers library.
 * Built with truncation and padding off (DJL truncates to 512 tokens by default) and without
 * special tokens: callers prepend BOS themselves, once, as the evaluation protocol says.
 */
public final class Tokenizer implements AutoCloseable {
    private final Path file;
    private final HuggingFaceTokenizer hf;

    private Tokenizer(Path file, HuggingFaceTokenizer hf) {
        this.file = file;
        this.hf = hf;
    }

    public static Tokenizer load(Path file) {
        if (!Files.isRegularFile(file)) {
            throw ShrinkException.at(file, "missing tokenizer: the model folder needs a tokenizer.json "
                    + "(SentencePiece tokenizer.model alone is not read; save the tokenizer with transformers to get tokenizer.json)");
        }
        try {
            HuggingFaceTokenizer hf = HuggingFaceTokenizer.builder()
                    .optTokenizerPath(file)
                    .optTruncation(false)
                    .optPadding(false)
                    .optAddSpecialTokens(false)
                    .build();
            return new Tokenizer(file, hf);
        } catch (IOException | RuntimeException e) {
            throw ShrinkException.at(file, "cannot load tokenizer: " + e.getMessage(), e);
        }
    }

    public Path file() {
        return file;
    }

    /** Token ids of {@code text}, no special tokens added. */
    public int[] encode(String text) {
        Encoding enc = hf.encode(text, false, false);
        long[] ids = enc.getIds();
        int[] out = new int[ids.length];
        for (int i = 0; i < ids.length; i++) {
            out[i] = Math.toIntExact(ids[i]);
        }
        return out;
    }

    /** Text of {@code ids}; special tokens are dropped when {@code skipSpecial}. */
    public String decode(int[] ids, boolean skipSpecial) {
        long[] l = new long[ids.length];
        for (int i = 0; i < ids.length; i++) {
            l[i] = ids[i];
        }
        return hf.decode(l, skipSpecial);
    }

    @Override
    public void close() {
        hf.close();
    }
}
