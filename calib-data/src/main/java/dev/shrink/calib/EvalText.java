package dev.shrink.calib;

import dev.shrink.core.ShrinkException;
import dev.shrink.core.util.InputFiles;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * Evaluation text, assembled exactly as the perplexity protocol of shared/golden/README.md says:
 * <ul>
 *   <li>{@code wikitext2}: wiki.test.raw read as lines that keep their "\n"; a whitespace-only line
 *       becomes ""; the rows joined with "\n\n" (the Hugging Face datasets rows, as GPTQ evaluates);</li>
 *   <li>{@code ptb}: ptb.test.txt, each line stripped, joined with one space;</li>
 *   <li>{@code tinystories}, {@code heldout}: the file as it is;</li>
 *   <li>any other value: a path to a UTF-8 text file, used as it is.</li>
 * </ul>
 *
 * @param name the preset or file name, printed beside every result
 * @param file where the text came from
 * @param text the text to tokenize
 */
public record EvalText(String name, Path file, String text) {

    public static final List<String> PRESETS = List.of("wikitext2", "ptb", "tinystories", "heldout");

    /** Resolves a preset name (through the shared data folder) or a file path and reads it. */
    public static EvalText load(String dataset) {
        String key = dataset.toLowerCase(Locale.ROOT);
        if (PRESETS.contains(key)) {
            Path shared = SharedData.root().orElseThrow(() -> new ShrinkException(
                    "--dataset " + dataset + ": the shared datasets folder was not found (set SHRINK_SHARED or pass a file path)"));
            Path file = shared.resolve(switch (key) {
                case "wikitext2" -> "datasets/wikitext-2-raw/wiki.test.raw";
                case "ptb" -> "datasets/ptb/ptb.test.txt";
                case "tinystories" -> "datasets/tinystories-valid-sample/tinystories_val.txt";
                default -> "datasets/literature-heldout/heldout.txt";
            });
            String raw = read(file);
            String text = switch (key) {
                case "wikitext2" -> wikitextRows(raw);
                case "ptb" -> ptbJoined(raw);
                default -> raw;
            };
            return new EvalText(key, file, text);
        }
        Path file = Path.of(dataset);
        if (!Files.exists(file)) {
            throw new ShrinkException("--dataset " + dataset + ": neither a preset (" + String.join(", ", PRESETS)
                    + ") nor an existing file");
        }
        return new EvalText(file.getFileName().toString(), file, read(file));
    }

    /** wikitext2: rows keep their newline, whitespace-only rows become "", joined with "\n\n". */
    static String wikitextRows(String raw) {
        List<String> rows = linesKeepingNewline(raw);
        StringBuilder sb = new StringBuilder(raw.length() + rows.size() * 2);
        for (int i = 0; i < rows.size(); i++) {
            if (i > 0) {
                sb.append("\n\n");
            }
            String r = rows.get(i);
            sb.append(r.isBlank() ? "" : r);
        }
        return sb.toString();
    }

    /** ptb: each line stripped, joined with a single space. */
    static String ptbJoined(String raw) {
        List<String> rows = linesKeepingNewline(raw);
        List<String> stripped = new ArrayList<>(rows.size());
        for (String r : rows) {
            stripped.add(r.strip());
        }
        return String.join(" ", stripped);
    }

    /** Python's readlines(): each line with its "\n"; a last line without one is kept as it is. */
    static List<String> linesKeepingNewline(String raw) {
        List<String> out = new ArrayList<>();
        int start = 0;
        while (start < raw.length()) {
            int nl = raw.indexOf('\n', start);
            int end = nl < 0 ? raw.length() : nl + 1;
            out.add(raw.substring(start, end));
            start = end;
        }
        return out;
    }

    /** The file as strict UTF-8; a regular file of at most 1 GiB (never a device such as /dev/zero). */
    private static String read(Path file) {
        return InputFiles.readText(file, InputFiles.TEXT_MAX_BYTES);
    }
}
