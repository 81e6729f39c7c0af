package dev.shrink.core.model;

import ai.djl.huggingface.tokenizers.Encoding;
import ai.djl.huggingface.tokenizers.HuggingFaceTokenizer;
import com.fasterxml.jackson.databind.JsonNode;
import dev.shrink.core.ShrinkException;
import dev.shrink.core.util.StrictJson;
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
        checkVocabulary(file, StrictJson.readObject(file, "missing tokenizer"));
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

    /**
     * The checks the tokenizers library leaves to the first encode (where they fail with an
     * internal error): tokenizer.json must have a "model" object whose "vocab" is a non-empty
     * object (BPE, WordPiece, WordLevel) or array (Unigram).
     */
    private static void checkVocabulary(Path file, JsonNode root) {
        JsonNode model = root.get("model");
        if (model == null || !model.isObject()) {
            throw ShrinkException.at(file, "has no \"model\" object (not a Hugging Face tokenizer.json?)");
        }
        JsonNode vocab = model.get("vocab");
        if (vocab == null || !vocab.isContainerNode()) {
            throw ShrinkException.at(file, "\"model\" has no \"vocab\" (found " + StrictJson.kind(vocab) + ")");
        }
        if (vocab.isEmpty()) {
            throw ShrinkException.at(file, "the vocabulary (model.vocab) is empty");
        }
        if (vocab.isObject()) { // token -> id
            for (var e : vocab.properties()) {
                checkId(file, "model.vocab token " + quoted(e.getKey()), e.getValue());
            }
        }
        JsonNode added = root.get("added_tokens");
        if (added != null && !added.isNull()) {
            if (!added.isArray()) {
                throw ShrinkException.at(file, "\"added_tokens\" is not an array (found " + StrictJson.kind(added) + ")");
            }
            for (JsonNode t : added) {
                checkId(file, "added token " + quoted(t.path("content").asText("?")), t.get("id"));
            }
        }
    }

    /** Token ids are ints from 0 up: the library hands them out as longs, Shrink indexes arrays with them. */
    private static void checkId(Path file, String what, JsonNode id) {
        if (id == null || !id.isIntegralNumber() || !id.canConvertToInt() || id.intValue() < 0) {
            throw ShrinkException.at(file, what + " has id " + (id == null ? "nothing" : id.toString())
                    + ", not an integer from 0 to " + Integer.MAX_VALUE);
        }
    }

    private static String quoted(String s) {
        return "'" + (s.length() > 40 ? s.substring(0, 37) + "..." : s) + "'";
    }

    public Path file() {
        return file;
    }

    /** Token ids of {@code text}, no special tokens added. */
    public int[] encode(String text) {
        Encoding enc;
        try {
            enc = hf.encode(text, false, false);
        } catch (RuntimeException e) { // the tokenizers library's own errors, e.g. an unknown unk_token
            throw ShrinkException.at(file, "cannot encode text: " + e.getMessage(), e);
        }
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
