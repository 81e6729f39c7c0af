package dev.shrink.distill;

import dev.shrink.calib.CalibSource;
import dev.shrink.calib.CalibWindows;
import dev.shrink.calib.SharedData;
import dev.shrink.core.ShrinkException;
import dev.shrink.core.model.Tokenizer;
import dev.shrink.core.util.InputFiles;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Locale;

/**
 * The training text of a distillation run: one or more sources (comma-separated), their documents
 * in order, joined with "\n\n" and tokenized once with BOS prepended once ({@link CalibWindows#stream}).
 *
 * <p>A source is a {@link CalibSource} preset or path (txt, jsonl, Arrow, Parquet, a folder of
 * them), or one of the validation splits that no evaluation reads:
 * <ul>
 *   <li>{@code wikitext2-valid}: {@code datasets/wikitext-2/valid.txt}, the whole file, one document;</li>
 *   <li>{@code ptb-valid}: {@code datasets/ptb/ptb.valid.txt}, the whole file, one document.</li>
 * </ul>
 * The default, {@value #DEFAULT}, is the golden protocol's data (shared/golden/README.md,
 * "Distillation after pruning": 945,823 tokens with the fixture's tokenizer).
 *
 * <p>Evaluation text is never trained on unless asked: the presets {@code wikitext2} (the test
 * split), {@code heldout} and {@code tinystories}, and any path to one of the files the
 * perplexity presets read, are refused without {@code allowEvalText}.
 */
public final class TrainText {
    /** The golden protocol's training text. */
    public static final String DEFAULT = "c4,wikitext2-valid,ptb-valid";

    /** Presets that are evaluation text. */
    static final List<String> EVAL_PRESETS = List.of("wikitext2", "heldout", "tinystories");

    /** The files the perplexity presets read, under the shared folder. */
    static final List<String> EVAL_FILES = List.of("datasets/wikitext-2-raw/wiki.test.raw", "datasets/ptb/ptb.test.txt",
            "datasets/tinystories-valid-sample/tinystories_val.txt", "datasets/literature-heldout/heldout.txt");

    private TrainText() {
    }

    /**
     * The documents of every source, in order.
     *
     * @param sources       comma-separated sources
     * @param field         JSON field / column of path sources (null: "text")
     * @param allowEvalText allow evaluation text
     * @throws ShrinkException for an unknown or unreadable source, or evaluation text not allowed
     */
    public static List<String> documents(String sources, String field, boolean allowEvalText) {
        if (sources == null || sources.isBlank()) {
            throw new ShrinkException("no training text given (default: " + DEFAULT + ")");
        }
        List<String> docs = new ArrayList<>();
        for (String raw : sources.split(",")) {
            String s = raw.strip();
            if (s.isEmpty()) {
                throw new ShrinkException("training text '" + sources + "': an empty source between commas");
            }
            String key = s.toLowerCase(Locale.ROOT);
            if (!allowEvalText) {
                refuseEvalText(s, key);
            }
            switch (key) {
                case "wikitext2-valid" -> docs.add(read(shared(s).resolve("datasets/wikitext-2/valid.txt")));
                case "ptb-valid" -> docs.add(read(shared(s).resolve("datasets/ptb/ptb.valid.txt")));
                default -> docs.addAll(CalibSource.load(s, field));
            }
        }
        return docs;
    }

    /** The token stream: the documents joined with "\n\n", tokenized, BOS (when not null) once. */
    public static int[] stream(List<String> docs, Tokenizer tok, Integer bos) {
        return CalibWindows.stream(docs, tok, bos);
    }

    private static void refuseEvalText(String spec, String key) {
        String hint = "; pass --allow-eval-text to train on it anyway (its perplexity then no longer measures held-out text)";
        if (EVAL_PRESETS.contains(key)) {
            throw new ShrinkException("training text '" + spec + "' is evaluation text (the " + key
                    + " perplexity preset)" + hint);
        }
        Path p = Path.of(spec);
        if (!Files.exists(p) || SharedData.root().isEmpty()) {
            return;
        }
        Path shared = SharedData.root().get();
        for (String f : EVAL_FILES) {
            Path eval = shared.resolve(f);
            try {
                if (Files.exists(eval) && Files.isSameFile(p, eval)) {
                    throw new ShrinkException("training text " + spec + " is evaluation text (" + f + ")" + hint);
                }
            } catch (IOException e) {
                // cannot compare: not the same file as far as we can tell
            }
        }
    }

    private static Path shared(String spec) {
        return SharedData.root().orElseThrow(() -> new ShrinkException("training text " + spec
                + ": the shared datasets folder was not found (set SHRINK_SHARED, or pass a file path)"));
    }

    private static String read(Path file) {
        return InputFiles.readText(file, InputFiles.TEXT_MAX_BYTES);
    }

    /** SHA-256 of a token stream (its length and ids), hex: what a checkpoint records of its data. */
    public static String fingerprint(int[] stream) {
        try {
            MessageDigest sha = MessageDigest.getInstance("SHA-256");
            ByteBuffer buf = ByteBuffer.allocate(4 * 4096);
            buf.putInt(stream.length);
            for (int id : stream) {
                if (!buf.hasRemaining()) {
                    sha.update(buf.array(), 0, buf.position());
                    buf.clear();
                }
                buf.putInt(id);
            }
            sha.update(buf.array(), 0, buf.position());
            return HexFormat.of().formatHex(sha.digest());
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }
}
