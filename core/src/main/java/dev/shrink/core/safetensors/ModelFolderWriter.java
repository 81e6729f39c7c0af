package dev.shrink.core.safetensors;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.util.DefaultIndenter;
import com.fasterxml.jackson.core.util.DefaultPrettyPrinter;
import com.fasterxml.jackson.core.util.Separators;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.ObjectWriter;
import dev.shrink.core.ShrinkException;
import dev.shrink.core.io.SafeFiles;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Locale;
import java.util.Objects;

/**
 * Writes a model folder atomically, the way every compression stage's checkpoint writer does
 * (GPTQ, AWQ, ...), through {@link SafeFiles#installFolder} (the one home of safe writes): the content
 * goes into a sibling {@code <outDir>.tmp-<token>} that is renamed to {@code outDir} only when complete;
 * on any failure it is deleted and a {@link ShrinkException} names the folder and the problem. An
 * existing non-empty {@code outDir} is an error unless {@code overwrite}, and is then replaced only after
 * the new folder is complete, recoverably if the run is killed between the renames. A target that is
 * an input or holds one is refused (real paths compared).
 *
 * <p>Also the helpers those writers share: pretty JSON files, the report, and the copy of a
 * source folder's other files (tokenizer, generation config, ...) without its weights.
 */
public final class ModelFolderWriter {

    /** The run report written beside the weights. */
    public static final String REPORT = "shrink-report.json";

    /** Files of quantization tools that describe the source's weights and must not be copied: GPTQ's and AutoAWQ's. */
    public static final List<String> QUANT_CONFIG_FILES = List.of("quantize_config.json", "quant_config.json");

    private static final ObjectMapper JSON = new ObjectMapper();

    /** Two-space indented JSON, "key": value, as transformers writes config.json. */
    private static final DefaultPrettyPrinter PRINTER = new DefaultPrettyPrinter(Separators.createDefaultInstance()
            .withObjectFieldValueSpacing(Separators.Spacing.AFTER))
            .withObjectIndenter(new DefaultIndenter("  ", "\n"))
            .withArrayIndenter(new DefaultIndenter("  ", "\n"));

    /** Pretty JSON of trees (config.json, quantize_config.json), keys as they are. */
    public static final ObjectWriter PRETTY = JSON.writer(PRINTER);

    /**
     * Reports ({@code shrink-report.json}) in Shrink's one key convention for the JSON it writes:
     * snake_case, as compare's report.json and every {@code --json} output (a record component
     * {@code errorAwq} is written {@code error_awq}; map keys are written as they are).
     */
    private static final ObjectWriter REPORT_WRITER = com.fasterxml.jackson.databind.json.JsonMapper.builder()
            .propertyNamingStrategy(com.fasterxml.jackson.databind.PropertyNamingStrategies.SNAKE_CASE).build()
            .writer(PRINTER);

    /** Writes the content of the folder into the (empty, temporary) folder it is given. */
    @FunctionalInterface
    public interface Content {
        void writeInto(Path dir) throws IOException;
    }

    private ModelFolderWriter() {
    }

    /**
     * Refuses, before any work, a target that is the source folder, holds it or lies inside it (real
     * paths compared: a symbolic link cannot disguise it), a file system root, a path that exists and
     * is not a folder, or a non-empty folder without {@code overwrite}. First repairs what a killed
     * earlier run left at the target ({@link SafeFiles#recover}).
     *
     * @param source the source model folder (may be null)
     * @param what   what is written, for the message ("the GPTQ model")
     * @return the target, absolute and normalized
     */
    public static Path checkTarget(Path source, Path outDir, boolean overwrite, String what) {
        return checkTarget(source == null ? List.of() : List.of(source), outDir, overwrite, what);
    }

    /**
     * {@link #checkTarget(Path, Path, boolean, String)} against every input of the run (the model, a
     * teacher, calibration files, datasets, ...; nulls ignored).
     */
    public static Path checkTarget(Collection<Path> inputs, Path outDir, boolean overwrite, String what) {
        Objects.requireNonNull(outDir, "outDir");
        SafeFiles.checkApart(outDir, inputs, what);
        Path target = outDir.toAbsolutePath().normalize();
        SafeFiles.recover(target);
        SafeFiles.checkFolderTarget(target, overwrite);
        return target;
    }

    /**
     * Writes the folder {@code outDir}: {@code content} fills a temporary sibling folder, which is then
     * installed ({@link SafeFiles#installFolder}: renamed into place, replacing a non-empty outDir only
     * with {@code overwrite}, recoverably).
     *
     * @param source the source model folder, refused as a target (may be null)
     * @param what   what is written, for messages ("the GPTQ model")
     * @throws ShrinkException naming outDir on any failure; nothing is left behind then
     */
    public static void write(Path source, Path outDir, boolean overwrite, String what, Content content) {
        Path target = checkTarget(source, outDir, overwrite, what);
        try {
            SafeFiles.installFolder(target, overwrite, content::writeInto);
        } catch (ShrinkException e) {
            // a file of the temporary folder is named as the file it was to become in outDir
            String msg = asTarget(e.getMessage(), target);
            throw msg.startsWith(target + java.io.File.separator) || msg.startsWith(target + ":") ? new ShrinkException(msg, e)
                    : new ShrinkException(target + ": not written: " + msg, e);
        } catch (JsonProcessingException e) {
            throw ShrinkException.at(target, "not written: cannot serialize to JSON (the report?): " + oneLine(e), e);
        } catch (IOException e) {
            throw ShrinkException.at(target, "not written: " + asTarget(describe(e), target), e);
        } catch (RuntimeException e) {
            throw ShrinkException.at(target, "not written: " + oneLine(e), e);
        }
    }

    /**
     * Copies every regular file of the source folder except its weights ({@code *.safetensors}, the
     * index, pickles and other frameworks' weights), {@code config.json}, quantization tools' config
     * files and the report. Copies get default permissions (shared models are read-only).
     */
    public static void copyOtherFiles(Path from, Path to) throws IOException {
        List<Path> files = new ArrayList<>();
        try (DirectoryStream<Path> ds = Files.newDirectoryStream(from)) {
            for (Path p : ds) {
                if (Files.isRegularFile(p) && copied(p.getFileName().toString())) {
                    files.add(p);
                }
            }
        }
        files.sort(null);
        for (Path p : files) {
            Path dst = to.resolve(p.getFileName().toString());
            try (InputStream in = Files.newInputStream(p)) {
                SafeFiles.createNew(dst, ch -> in.transferTo(java.nio.channels.Channels.newOutputStream(ch)));
            }
        }
    }

    private static boolean copied(String name) {
        String n = name.toLowerCase(Locale.ROOT);
        if (n.endsWith(".safetensors") || name.equals(WeightStore.INDEX_FILE) || name.equals("config.json")
                || QUANT_CONFIG_FILES.contains(name) || name.equals(REPORT)) {
            return false;
        }
        // pickle / other-framework weights of the unquantized model, and their indexes
        return !(n.endsWith(".bin") || n.endsWith(".pt") || n.endsWith(".pth") || n.endsWith(".ckpt")
                || n.endsWith(".pkl") || n.endsWith(".h5") || n.endsWith(".msgpack")
                || n.equals("pytorch_model.bin.index.json"));
    }

    /**
     * Refuses, before any work, an output folder whose file system has not room for {@code bytes}
     * (plus 1% and 1 MiB): "OUT: not written: it needs N bytes (X GiB) and DIR has M bytes free".
     * Without a usable-space figure nothing is refused (the write itself says if the disk fills).
     */
    public static void checkSpace(Path outDir, long bytes) {
        Path target = outDir.toAbsolutePath().normalize();
        Path p = target;
        while (p != null && !Files.exists(p)) {
            p = p.getParent();
        }
        if (p == null) {
            return;
        }
        long free;
        try {
            free = Files.getFileStore(p).getUsableSpace();
        } catch (IOException e) {
            return;
        }
        long need = bytes + bytes / 100 + (1L << 20);
        if (free < need) {
            throw ShrinkException.at(outDir, String.format(Locale.ROOT,
                    "not written: it needs about %,d bytes (%.2f GiB) and %s has %,d bytes (%.2f GiB) free",
                    need, need / (double) (1L << 30), p, free, free / (double) (1L << 30)));
        }
    }

    /**
     * The size of a folder written from the weights {@code source}: the block linears matching
     * {@code linearWeight} (e.g. "model.layers.N.self_attn.q_proj.weight") at {@code bits} per weight
     * plus a 16-bit scale and a packed zero point per group of {@code groupSize} (≤ 0: one group
     * per row), every other tensor as stored; {@code bits} ≤ 0 or ≥ 16: everything as stored. The
     * source folder's other files (tokenizer, ...) are added as they are.
     */
    public static long estimateBytes(WeightStore source, java.util.function.Predicate<String> linearWeight, int bits,
                                     int groupSize) {
        long total = 0;
        for (String name : source.names()) {
            TensorInfo t = source.info(name);
            if (bits > 0 && bits < 16 && t.rank() == 2 && linearWeight.test(name)) {
                long n = t.numel(), k = t.shape()[1];
                long groups = n / (groupSize > 0 ? Math.min(groupSize, k) : k);
                total += (n * bits + 7) / 8 + groups * 2 + (groups * bits + 7) / 8;
            } else {
                total += t.byteLength();
            }
        }
        try (var files = Files.list(source.dir())) {
            for (Path f : (Iterable<Path>) files::iterator) {
                String name = f.getFileName().toString();
                if (Files.isRegularFile(f) && !name.endsWith(".safetensors")) {
                    total += Files.size(f);
                }
            }
        } catch (IOException e) {
            // the tensors are the bulk; the small files are a margin
        }
        return total;
    }

    /** {@code message} with the paths inside {@code target}'s temporary folder (TARGET.tmp-...) shown as inside target. */
    private static String asTarget(String message, Path target) {
        return message == null ? "" : message.replaceAll(java.util.regex.Pattern.quote(target.toString()) + "\\.tmp-[A-Za-z0-9-]+",
                java.util.regex.Matcher.quoteReplacement(target.toString()));
    }

    /** Writes {@code node} as pretty JSON (plus a newline) into a new file. */
    public static void writeJson(Path file, JsonNode node) throws IOException {
        writeBytes(file, (PRETTY.writeValueAsString(node) + "\n").getBytes(StandardCharsets.UTF_8));
    }

    /** Serializes {@code report} (records, maps, lists) with Jackson into {@code dir/shrink-report.json}. */
    public static void writeReport(Path dir, Object report) throws IOException {
        writeBytes(dir.resolve(REPORT), (REPORT_WRITER.writeValueAsString(report) + "\n").getBytes(StandardCharsets.UTF_8));
    }

    /** Writes a new file and forces it to disk ({@link SafeFiles#createNew}). */
    public static void writeBytes(Path file, byte[] bytes) throws IOException {
        SafeFiles.createNew(file, bytes);
    }

    /** An I/O error in one line: the file and the reason when the exception has them. */
    public static String describe(IOException e) {
        return SafeFiles.describe(e);
    }

    /** The first line of an exception's message, or its class name. */
    public static String oneLine(Throwable e) {
        return SafeFiles.oneLine(e);
    }
}
