package dev.shrink.core.model;

import ai.djl.huggingface.tokenizers.Encoding;
import ai.djl.huggingface.tokenizers.HuggingFaceTokenizer;
import com.fasterxml.jackson.databind.JsonNode;
import dev.shrink.core.ShrinkException;
import dev.shrink.core.util.StrictJson;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.Locale;

/**
 * A Hugging Face {@code tokenizer.json} through DJL's bindings to the Rust tokenizers library.
 * Built with truncation and padding off (DJL truncates to 512 tokens by default) and without
 * special tokens: callers prepend BOS themselves, once, as the evaluation protocol says.
 *
 * <p>Loaded for a model ({@link #load(Path, int, Path)}, what {@link ModelDir#tokenizer()} does),
 * every id the tokenizer can produce is checked against the model's vocab_size when it is loaded,
 * so another model's tokenizer is refused with one line naming the file instead of indexing past
 * the embedding later.
 */
public final class Tokenizer implements AutoCloseable {
    /**
     * Java heap that DJL's {@link Encoding} takes per character of text: per token it holds ids, type
     * ids, word ids, masks, the token string and its character span (about 130 bytes), and text runs
     * about two characters per token (tinystories on a 512-token vocabulary; larger vocabularies take
     * longer tokens). The heap is checked for this much before text goes to the native library,
     * because the native side cannot survive running out of Java heap (the Rust binding aborts the
     * JVM): see {@link #encode}.
     */
    private static final long ENCODING_BYTES_PER_CHAR = 64;

    private final Path file;
    private final HuggingFaceTokenizer hf;
    private final int vocab; // ids must be < vocab; Integer.MAX_VALUE when loaded without a model

    private Tokenizer(Path file, HuggingFaceTokenizer hf, int vocab) {
        this.file = file;
        this.hf = hf;
        this.vocab = vocab;
    }

    /** Loads {@code file} without a model to check it against (tools and tests). */
    public static Tokenizer load(Path file) {
        return load(file, Integer.MAX_VALUE, null);
    }

    /**
     * Loads {@code file} for a model of {@code vocab} tokens, refusing a tokenizer that can produce an
     * id ≥ vocab (another model's tokenizer, an added token past the embedding).
     *
     * @param config the model's config.json, named in the message
     */
    public static Tokenizer load(Path file, int vocab, Path config) {
        if (!Files.exists(file)) {
            throw ShrinkException.at(file, "missing tokenizer: the model folder needs a tokenizer.json "
                    + "(SentencePiece tokenizer.model alone is not read; save the tokenizer with transformers to get tokenizer.json)");
        }
        JsonNode root = StrictJson.readObject(file, "missing tokenizer");
        checkVocabulary(file, root);
        long largest = largestId(root);
        if (largest >= vocab) {
            throw ShrinkException.at(file, "has token id " + largest + ", outside the model's vocabulary of " + vocab
                    + " (vocab_size in " + config + "): is it another model's tokenizer?");
        }
        try {
            HuggingFaceTokenizer hf = HuggingFaceTokenizer.builder()
                    .optTokenizerPath(file)
                    .optTruncation(false)
                    .optPadding(false)
                    .optAddSpecialTokens(false)
                    .build();
            return new Tokenizer(file, hf, vocab);
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

    /** The largest token id {@code file} (a tokenizer.json) can produce; see {@link #largestId(JsonNode)}. */
    public static long largestId(Path file) {
        return largestId(StrictJson.readObject(file, "not found"));
    }

    /**
     * The largest token id a tokenizer.json can produce: the largest of its model's vocabulary (an
     * object of piece → id, or for Unigram a list whose index is the id) and of its added tokens; −1
     * when it has none. An id past the long range counts as Long.MAX_VALUE (outside every vocabulary).
     */
    static long largestId(JsonNode root) {
        long max = -1;
        JsonNode vocab = root.path("model").path("vocab");
        if (vocab.isObject()) {
            for (var e : vocab.properties()) {
                max = Math.max(max, id(e.getValue()));
            }
        } else if (vocab.isArray()) {
            max = Math.max(max, vocab.size() - 1L);
        }
        for (JsonNode t : root.path("added_tokens")) {
            max = Math.max(max, id(t.path("id")));
        }
        return max;
    }

    private static long id(JsonNode n) {
        if (!n.isIntegralNumber()) {
            return -1;
        }
        return n.canConvertToLong() ? n.longValue() : Long.MAX_VALUE;
    }

    public Path file() {
        return file;
    }

    /** The vocabulary every id is below: the model's vocab_size (Integer.MAX_VALUE when loaded without a model). */
    public int vocabSize() {
        return vocab;
    }

    /**
     * Token ids of {@code text}, no special tokens added.
     *
     * @throws OutOfMemoryError if the Java heap cannot hold the encoding of this much text (checked
     *                          before the native call, which would abort the JVM instead)
     */
    public int[] encode(String text) {
        ensureHeapFor(text.length());
        Encoding enc;
        try {
            enc = hf.encode(text, false, false);
        } catch (RuntimeException e) { // the tokenizers library's own errors, e.g. an unknown unk_token
            throw ShrinkException.at(file, "cannot encode text: " + e.getMessage(), e);
        }
        long[] ids = enc.getIds();
        int[] out = new int[ids.length];
        for (int i = 0; i < ids.length; i++) {
            if (ids[i] < 0 || ids[i] >= vocab) {
                throw ShrinkException.at(file, "produced token id " + ids[i] + ", outside the model's vocabulary of " + vocab);
            }
            out[i] = (int) ids[i];
        }
        return out;
    }

    /**
     * Throws OutOfMemoryError unless the heap can take the encoding of {@code chars} characters: it
     * allocates that much (in 8 MiB pieces) and lets it go, so that the native call that follows
     * finds the room, after a collection, instead of aborting the JVM.
     */
    private static void ensureHeapFor(long chars) {
        long need = chars * ENCODING_BYTES_PER_CHAR;
        if (need < (16L << 20)) {
            return; // prompts and documents: always room
        }
        if (need > Runtime.getRuntime().maxMemory()) {
            throw new OutOfMemoryError(String.format(Locale.ROOT,
                    "tokenizing %,d characters needs about %,d MiB of Java heap", chars, need >> 20));
        }
        int piece = 1 << 20; // longs
        long[][] probe = new long[(int) ((need / 8 + piece - 1) / piece)][];
        for (int i = 0; i < probe.length; i++) {
            probe[i] = new long[piece];
        }
        heapProbe = probe; // published, so that the allocation is not optimised away
        heapProbe = null;
    }

    @SuppressWarnings("unused")
    private static volatile Object heapProbe;

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
