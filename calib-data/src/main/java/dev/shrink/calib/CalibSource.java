package dev.shrink.calib;

import com.fasterxml.jackson.core.JacksonException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.shrink.core.ShrinkException;
import dev.shrink.core.util.InputFiles;
import java.io.BufferedReader;
import java.io.IOException;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.MalformedInputException;
import java.nio.charset.StandardCharsets;
import java.nio.file.AccessDeniedException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.stream.Stream;

/**
 * Calibration text as a list of documents, from a preset of the shared datasets folder or from a
 * file or folder.
 *
 * <p>Presets (under {@code <shared>/datasets}, found through {@link SharedData#root()}):
 * <ul>
 *   <li>{@code wikitext2}: {@code wikitext-2-raw/wiki.test.raw}, its rows as {@link EvalText}
 *       defines them (each line with its "\n", whitespace-only lines empty), the non-empty rows;</li>
 *   <li>{@code ptb}: {@code ptb/ptb.valid.txt}, each line stripped, the non-empty ones;</li>
 *   <li>{@code c4}: {@code c4-sample/c4.jsonl}, {@code prefix + gold_completion} of each line;</li>
 *   <li>{@code tinystories}: {@code tinystories-valid-sample/tinystories_val.txt} split on
 *       "\n\n", each story stripped, the non-empty ones;</li>
 *   <li>{@code heldout}: {@code literature-heldout/heldout.txt}, one document;</li>
 *   <li>{@code pileval}: {@code pile-val-backup/val.jsonl}, the {@code text} of each line: AWQ's and
 *       LMDeploy's default calibration set (mit-han-lab/pile-val-backup's {@code val.jsonl.zst},
 *       decompressed); not shipped with the shared datasets, so its absence is an error naming the file.</li>
 * </ul>
 *
 * <p>Paths, chosen by extension:
 * <ul>
 *   <li>{@code .txt}: the whole file, one document;</li>
 *   <li>{@code .jsonl}, {@code .json}: JSON lines, the string {@code field} of each object (blank
 *       lines skipped; a line that is not a JSON object, or lacks the field, or whose field is not a
 *       string, is an error naming the file and line);</li>
 *   <li>{@code .arrow}: a Hugging Face datasets cache file (Arrow IPC stream; the IPC file format
 *       is read too), the string column {@code field};</li>
 *   <li>{@code .parquet}: the string column {@code field};</li>
 *   <li>a folder: every {@code *.arrow} and {@code *.parquet} file in it (not in sub-folders),
 *       sorted by name, their documents in that order.</li>
 * </ul>
 * Rows of files are kept as they are (empty strings included, nulls dropped), so that joining
 * them reproduces what Python does with the same rows. All errors are {@link ShrinkException}s
 * naming the file.
 */
public final class CalibSource {

    /** The preset names {@link #load} accepts. */
    public static final List<String> PRESETS = List.of("wikitext2", "ptb", "c4", "tinystories", "heldout",
            "pileval");

    /** The column or JSON field used when none is given. */
    public static final String DEFAULT_FIELD = "text";

    static final String SUPPORTED = ".txt, .jsonl, .json (JSON lines), .arrow (Hugging Face datasets cache), "
            + ".parquet, or a folder of .arrow/.parquet files";

    private static final ObjectMapper JSON = new ObjectMapper();

    private CalibSource() {
    }

    /**
     * The files and folders that text sources read, for refusing an output that would hold or replace
     * one: each comma-separated entry of {@code specs} as a path, presets as the shared datasets folder
     * (when found). Null gives none.
     */
    public static List<Path> inputPaths(String specs) {
        List<Path> out = new ArrayList<>();
        if (specs == null || specs.isBlank()) {
            return out;
        }
        for (String raw : specs.split(",")) {
            String spec = raw.strip();
            if (spec.isEmpty()) {
                continue;
            }
            if (PRESETS.contains(spec.toLowerCase(Locale.ROOT))) {
                SharedData.root().ifPresent(shared -> out.add(shared.resolve("datasets")));
            } else {
                try {
                    out.add(Path.of(spec));
                } catch (java.nio.file.InvalidPathException e) {
                    // not a path: nothing on disk it could name
                }
            }
        }
        return out;
    }

    /**
     * The documents of a preset or a path.
     *
     * @param spec  a preset name (case-insensitive, see {@link #PRESETS}) or a file or folder path
     * @param field the JSON field or column holding the text of path sources; null for
     *              {@value #DEFAULT_FIELD}; presets ignore it
     * @throws ShrinkException if the shared folder is missing (presets), the path does not exist,
     *                         has an unsupported extension, or cannot be read as its kind
     */
    public static List<String> load(String spec, String field) {
        if (spec == null || spec.isBlank()) {
            throw new ShrinkException("no calibration dataset given (a preset: " + String.join(", ", PRESETS)
                    + "; or a file: " + SUPPORTED + ")");
        }
        String f = field == null || field.isBlank() ? DEFAULT_FIELD : field;
        String key = spec.toLowerCase(Locale.ROOT);
        if (PRESETS.contains(key)) {
            return preset(spec, key);
        }
        Path path = Path.of(spec);
        if (!Files.exists(path)) {
            throw new ShrinkException("calibration dataset " + spec + ": neither a preset ("
                    + String.join(", ", PRESETS) + ") nor an existing file or folder");
        }
        return loadPath(path, f);
    }

    private static List<String> preset(String spec, String key) {
        Path shared = SharedData.root().orElseThrow(() -> new ShrinkException("calibration dataset " + spec
                + ": the shared datasets folder was not found (set SHRINK_SHARED, or pass a file path)"));
        Path ds = shared.resolve("datasets");
        return switch (key) {
            case "wikitext2" -> {
                List<String> out = new ArrayList<>();
                for (String row : EvalText.linesKeepingNewline(readText(ds.resolve("wikitext-2-raw/wiki.test.raw")))) {
                    if (!row.isBlank()) {
                        out.add(row);
                    }
                }
                yield out;
            }
            case "ptb" -> {
                List<String> out = new ArrayList<>();
                for (String line : EvalText.linesKeepingNewline(readText(ds.resolve("ptb/ptb.valid.txt")))) {
                    String s = line.strip();
                    if (!s.isEmpty()) {
                        out.add(s);
                    }
                }
                yield out;
            }
            case "c4" -> c4(ds.resolve("c4-sample/c4.jsonl"));
            case "tinystories" -> {
                List<String> out = new ArrayList<>();
                for (String story : readText(ds.resolve("tinystories-valid-sample/tinystories_val.txt")).split("\n\n")) {
                    String s = story.strip();
                    if (!s.isEmpty()) {
                        out.add(s);
                    }
                }
                yield out;
            }
            case "heldout" -> List.of(readText(ds.resolve("literature-heldout/heldout.txt")));
            case "pileval" -> {
                Path file = ds.resolve("pile-val-backup/val.jsonl");
                if (!Files.exists(file)) {
                    throw ShrinkException.at(file, "not found: the pileval preset reads this file (mit-han-lab/"
                            + "pile-val-backup's val.jsonl.zst, decompressed with zstd -d); provide it there, or give "
                            + "the text with --calib-dataset FILE");
                }
                yield jsonLines(file, DEFAULT_FIELD);
            }
            default -> throw new AssertionError(key);
        };
    }

    /** The C4 sample: each line's {@code prefix + gold_completion}. */
    private static List<String> c4(Path file) {
        List<String> out = new ArrayList<>();
        forEachJsonLine(file, (line, obj) -> out.add(stringField(file, line, obj, "prefix")
                + stringField(file, line, obj, "gold_completion")));
        return out;
    }

    static List<String> loadPath(Path path, String field) {
        if (Files.isDirectory(path)) {
            return loadFolder(path, field);
        }
        String name = path.getFileName().toString().toLowerCase(Locale.ROOT);
        if (name.endsWith(".txt")) {
            return List.of(readText(path));
        }
        if (name.endsWith(".jsonl") || name.endsWith(".json")) {
            return jsonLines(path, field);
        }
        if (name.endsWith(".arrow")) {
            return ArrowSource.read(path, field);
        }
        if (name.endsWith(".parquet")) {
            if (!Files.isReadable(path)) {
                throw ShrinkException.at(path, Files.exists(path) ? "permission denied" : "not found");
            }
            String missing = parquetReaderMissing(CalibSource.class.getClassLoader());
            if (missing != null) {
                throw ShrinkException.at(path, missing);
            }
            // The only reference to the Parquet reader: its classes (and the native library behind
            // them) load when a .parquet source is actually read.
            return ParquetSource.read(path, field);
        }
        throw ShrinkException.at(path, "unsupported calibration source (supported: " + SUPPORTED + ")");
    }

    /**
     * Null when Arrow's Parquet reader (arrow-dataset, 76 MB of native code) can be loaded, else
     * what to do: the tarball leaves it out unless built with {@code scripts/dist.sh --with-parquet}
     * (README, "Install").
     */
    static String parquetReaderMissing(ClassLoader loader) {
        try {
            Class.forName("org.apache.arrow.dataset.file.FileSystemDatasetFactory", false, loader);
            return null;
        } catch (ClassNotFoundException | LinkageError e) {
            return "reading Parquet needs Shrink's optional Parquet part (Arrow's dataset reader, 76 MB), which this "
                    + "install leaves out: use a tarball built with scripts/dist.sh --with-parquet, or convert the file "
                    + "to .jsonl or .arrow";
        }
    }

    private static List<String> loadFolder(Path dir, String field) {
        List<Path> files;
        try (Stream<Path> s = Files.list(dir)) {
            files = s.filter(p -> {
                String n = p.getFileName().toString().toLowerCase(Locale.ROOT);
                return (n.endsWith(".arrow") || n.endsWith(".parquet")) && Files.isRegularFile(p);
            }).sorted().toList();
        } catch (IOException e) {
            throw ShrinkException.at(dir, "cannot list the folder: " + e.getMessage(), e);
        }
        if (files.isEmpty()) {
            throw ShrinkException.at(dir, "no .arrow or .parquet files in this folder");
        }
        List<String> out = new ArrayList<>();
        for (Path p : files) {
            out.addAll(loadPath(p, field));
        }
        return out;
    }

    /** JSON lines: the string {@code field} of each non-blank line. */
    static List<String> jsonLines(Path file, String field) {
        List<String> out = new ArrayList<>();
        forEachJsonLine(file, (line, obj) -> out.add(stringField(file, line, obj, field)));
        return out;
    }

    private interface JsonLineConsumer {
        void accept(long lineNumber, JsonNode object);
    }

    private static void forEachJsonLine(Path file, JsonLineConsumer consumer) {
        var decoder = StandardCharsets.UTF_8.newDecoder()
                .onMalformedInput(CodingErrorAction.REPORT)
                .onUnmappableCharacter(CodingErrorAction.REPORT);
        long lineNumber = 0;
        try {
            InputFiles.requireRegularFile(file, InputFiles.TEXT_MAX_BYTES);
        } catch (IOException e) {
            throw readError(file, e);
        }
        try (BufferedReader r = new BufferedReader(new java.io.InputStreamReader(Files.newInputStream(file), decoder))) {
            String line;
            while ((line = r.readLine()) != null) {
                lineNumber++;
                if (line.isBlank()) {
                    continue;
                }
                JsonNode node;
                try {
                    node = JSON.readTree(line);
                } catch (JacksonException e) {
                    String hint = lineNumber == 1 && line.stripLeading().startsWith("[")
                            ? " (a JSON array? expected JSON lines: one object per line)" : "";
                    throw ShrinkException.at(file, "line " + lineNumber + " is not valid JSON" + hint + ": "
                            + firstLine(e.getOriginalMessage()));
                }
                if (node == null || !node.isObject()) {
                    throw ShrinkException.at(file, "line " + lineNumber + " is not a JSON object"
                            + (lineNumber == 1 && node != null && node.isArray()
                            ? " (a JSON array? expected JSON lines: one object per line)" : ""));
                }
                consumer.accept(lineNumber, node);
            }
        } catch (MalformedInputException e) {
            throw ShrinkException.at(file, "not valid UTF-8 text (after line " + lineNumber + ")");
        } catch (CharacterCodingException e) {
            throw ShrinkException.at(file, "not valid UTF-8 text (after line " + lineNumber + ")");
        } catch (IOException e) {
            throw readError(file, e);
        }
    }

    private static String stringField(Path file, long line, JsonNode obj, String field) {
        JsonNode v = obj.get(field);
        if (v == null) {
            throw ShrinkException.at(file, "line " + line + " has no field '" + field + "'");
        }
        if (!v.isTextual()) {
            throw ShrinkException.at(file, "line " + line + ": field '" + field + "' is "
                    + v.getNodeType().toString().toLowerCase(Locale.ROOT) + ", not a string");
        }
        return v.textValue();
    }

    /** The file as strict UTF-8. */
    static String readText(Path file) {
        return InputFiles.readText(file, InputFiles.TEXT_MAX_BYTES);
    }

    static ShrinkException readError(Path file, IOException e) {
        if (e instanceof NoSuchFileException) {
            return ShrinkException.at(file, "not found", e);
        }
        if (e instanceof AccessDeniedException) {
            return ShrinkException.at(file, "permission denied", e);
        }
        return ShrinkException.at(file, "cannot read: " + firstLine(e.getMessage()), e);
    }

    static String firstLine(String s) {
        if (s == null || s.isBlank()) {
            return "unknown error";
        }
        int nl = s.indexOf('\n');
        return (nl >= 0 ? s.substring(0, nl) : s).strip();
    }
}
