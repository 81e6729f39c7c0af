package dev.shrink.core.safetensors;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.util.DefaultIndenter;
import com.fasterxml.jackson.core.util.DefaultPrettyPrinter;
import com.fasterxml.jackson.core.util.Separators;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.ObjectWriter;
import dev.shrink.core.ShrinkException;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.FileSystemException;
import java.nio.file.FileVisitResult;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.SimpleFileVisitor;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.BasicFileAttributes;
import java.security.SecureRandom;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Locale;
import java.util.Objects;

/**
 * Writes a model folder atomically, the way every compression stage's checkpoint writer does
 * (GPTQ, AWQ, ...): the content goes into a sibling {@code <outDir>.tmp-<random>} that is renamed to
 * {@code outDir} only when complete; on any failure it is deleted and a {@link ShrinkException}
 * names the folder and the problem. An existing non-empty {@code outDir} is an error unless
 * {@code overwrite}, and is then replaced only after the new folder is complete (old one renamed
 * aside, new one renamed in, old one deleted).
 *
 * <p>Also the helpers those writers share: pretty JSON files, the report, and the copy of a
 * source folder's other files (tokenizer, generation config, ...) without its weights.
 */
public final class ModelFolderWriter {

    /** The run report written beside the weights. */
    public static final String REPORT = "shrink-report.json";

    /** Files of quantization tools that describe the source's weights and must not be copied: GPTQ's and AutoAWQ's. */
    public static final List<String> QUANT_CONFIG_FILES = List.of("quantize_config.json", "quant_config.json");

    private static final SecureRandom RANDOM = new SecureRandom();

    private static final ObjectMapper JSON = new ObjectMapper();

    /** Two-space indented JSON, "key": value, as transformers writes config.json. */
    public static final ObjectWriter PRETTY = JSON.writer(new DefaultPrettyPrinter(Separators.createDefaultInstance()
            .withObjectFieldValueSpacing(Separators.Spacing.AFTER))
            .withObjectIndenter(new DefaultIndenter("  ", "\n"))
            .withArrayIndenter(new DefaultIndenter("  ", "\n")));

    /** Writes the content of the folder into the (empty, temporary) folder it is given. */
    @FunctionalInterface
    public interface Content {
        void writeInto(Path dir) throws IOException;
    }

    private ModelFolderWriter() {
    }

    /**
     * Refuses, before any work, a target that is the source folder or holds it, a file system
     * root, a path that exists and is not a folder, or a non-empty folder without {@code overwrite}.
     *
     * @param source the source model folder (may be null)
     * @param what   what is written, for the message ("the GPTQ model")
     * @return the target, absolute and normalized
     */
    public static Path checkTarget(Path source, Path outDir, boolean overwrite, String what) {
        Objects.requireNonNull(outDir, "outDir");
        Path target = outDir.toAbsolutePath().normalize();
        if (source != null) {
            Path src = source.toAbsolutePath().normalize();
            if (target.equals(src) || src.startsWith(target)) {
                throw ShrinkException.at(outDir, "is the source model's folder (or holds it); write " + what + " elsewhere");
            }
        }
        if (target.getParent() == null) {
            throw ShrinkException.at(outDir, "cannot be a file system root");
        }
        checkExisting(target, overwrite);
        return target;
    }

    /**
     * Writes the folder {@code outDir}: {@code content} fills a temporary sibling folder, which is then
     * renamed into place (replacing a non-empty outDir only with {@code overwrite}).
     *
     * @param source the source model folder, refused as a target (may be null)
     * @param what   what is written, for messages ("the GPTQ model")
     * @throws ShrinkException naming outDir on any failure; nothing is left behind then
     */
    public static void write(Path source, Path outDir, boolean overwrite, String what, Content content) {
        Path target = checkTarget(source, outDir, overwrite, what);
        Path parent = target.getParent();
        Path tmp = parent.resolve(target.getFileName() + ".tmp-" + randomHex());
        boolean installed = false;
        Path old;
        try {
            Files.createDirectories(parent);
            Files.createDirectory(tmp);
            content.writeInto(tmp);
            old = install(tmp, target, overwrite);
            installed = true;
        } catch (ShrinkException e) {
            // a file of the temporary folder is named as the file it was to become in outDir
            String msg = e.getMessage().replace(tmp.toString(), target.toString());
            throw msg.startsWith(target + java.io.File.separator) || msg.startsWith(target + ":") ? new ShrinkException(msg, e)
                    : new ShrinkException(target + ": not written: " + msg, e);
        } catch (JsonProcessingException e) {
            throw ShrinkException.at(target, "not written: cannot serialize to JSON (the report?): " + oneLine(e), e);
        } catch (IOException e) {
            throw ShrinkException.at(target, "not written: " + describe(e), e);
        } catch (RuntimeException e) {
            throw ShrinkException.at(target, "not written: " + oneLine(e), e);
        } finally {
            if (!installed) {
                deleteTreeQuietly(tmp);
            }
        }
        if (old != null) {
            try {
                deleteTree(old);
            } catch (IOException e) {
                throw ShrinkException.at(old, "the new model is in place at " + target
                        + ", but this replaced old copy could not be deleted: " + describe(e), e);
            }
        }
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

    /** Exists and is not a folder, or is a non-empty folder without overwrite: refused. */
    private static void checkExisting(Path target, boolean overwrite) {
        if (!Files.exists(target, LinkOption.NOFOLLOW_LINKS)) {
            return;
        }
        if (!Files.isDirectory(target, LinkOption.NOFOLLOW_LINKS)) {
            throw ShrinkException.at(target, "exists and is not a folder");
        }
        if (!overwrite && !isEmptyDir(target)) {
            throw ShrinkException.at(target, "exists and is not empty; choose another folder or overwrite it");
        }
    }

    private static boolean isEmptyDir(Path dir) {
        try (DirectoryStream<Path> ds = Files.newDirectoryStream(dir)) {
            return !ds.iterator().hasNext();
        } catch (IOException e) {
            throw ShrinkException.at(dir, "cannot list the folder: " + describe(e), e);
        }
    }

    /**
     * Renames the complete folder {@code tmp} to {@code target}, replacing an old one only if allowed.
     * Returns where the replaced folder was moved (for the caller to delete), or null.
     */
    private static Path install(Path tmp, Path target, boolean overwrite) throws IOException {
        Path parent = target.getParent();
        if (Files.isDirectory(target, LinkOption.NOFOLLOW_LINKS) && isEmptyDir(target)) {
            Files.delete(target);
        }
        if (!Files.exists(target, LinkOption.NOFOLLOW_LINKS)) {
            try {
                Files.move(tmp, target, StandardCopyOption.ATOMIC_MOVE);
            } catch (FileAlreadyExistsException e) {
                throw ShrinkException.at(target, "appeared while the model was being written; not replaced", e);
            }
            syncDirectory(parent);
            return null;
        }
        checkExisting(target, overwrite); // not a folder, or non-empty without overwrite
        Path old = parent.resolve(target.getFileName() + ".old-" + randomHex());
        Files.move(target, old, StandardCopyOption.ATOMIC_MOVE);
        try {
            Files.move(tmp, target, StandardCopyOption.ATOMIC_MOVE);
        } catch (IOException | RuntimeException e) {
            try {
                Files.move(old, target, StandardCopyOption.ATOMIC_MOVE);
            } catch (IOException restore) {
                e.addSuppressed(restore);
                throw ShrinkException.at(target, "could not put the new folder in place ("
                        + (e instanceof IOException io ? describe(io) : oneLine(e))
                        + ") nor the old one back; the old folder is at " + old, e);
            }
            throw e;
        }
        syncDirectory(parent);
        return old;
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
            try (InputStream in = Files.newInputStream(p);
                 FileChannel ch = FileChannel.open(dst, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE);
                 OutputStream out = java.nio.channels.Channels.newOutputStream(ch)) {
                in.transferTo(out);
                out.flush();
                ch.force(true);
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

    /** Writes {@code node} as pretty JSON (plus a newline) into a new file. */
    public static void writeJson(Path file, JsonNode node) throws IOException {
        writeBytes(file, (PRETTY.writeValueAsString(node) + "\n").getBytes(StandardCharsets.UTF_8));
    }

    /** Serializes {@code report} (records, maps, lists) with Jackson into {@code dir/shrink-report.json}. */
    public static void writeReport(Path dir, Object report) throws IOException {
        writeBytes(dir.resolve(REPORT), (PRETTY.writeValueAsString(report) + "\n").getBytes(StandardCharsets.UTF_8));
    }

    /** Writes a new file and forces it to disk. */
    public static void writeBytes(Path file, byte[] bytes) throws IOException {
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
            ByteBuffer buf = ByteBuffer.wrap(bytes);
            while (buf.hasRemaining()) {
                ch.write(buf);
            }
            ch.force(true);
        }
    }

    private static void syncDirectory(Path dir) {
        try (FileChannel ch = FileChannel.open(dir, StandardOpenOption.READ)) {
            ch.force(true);
        } catch (IOException | RuntimeException ignored) {
            // not supported everywhere; the renames themselves are done
        }
    }

    private static void deleteTree(Path root) throws IOException {
        if (!Files.exists(root, LinkOption.NOFOLLOW_LINKS)) {
            return;
        }
        Files.walkFileTree(root, new SimpleFileVisitor<>() {
            @Override
            public FileVisitResult visitFile(Path file, BasicFileAttributes attrs) throws IOException {
                Files.delete(file);
                return FileVisitResult.CONTINUE;
            }

            @Override
            public FileVisitResult postVisitDirectory(Path dir, IOException exc) throws IOException {
                if (exc != null) {
                    throw exc;
                }
                Files.delete(dir);
                return FileVisitResult.CONTINUE;
            }
        });
    }

    private static void deleteTreeQuietly(Path root) {
        try {
            deleteTree(root);
        } catch (IOException | RuntimeException ignored) {
            // the original error is what matters
        }
    }

    private static String randomHex() {
        byte[] b = new byte[6];
        RANDOM.nextBytes(b);
        return HexFormat.of().formatHex(b);
    }

    /** An I/O error in one line: the file and the reason when the exception has them. */
    public static String describe(IOException e) {
        if (e instanceof FileSystemException fse) {
            String reason = fse.getReason();
            String what = fse.getFile() != null ? fse.getFile() : "";
            if (reason != null && !reason.isBlank()) {
                return (what.isEmpty() ? "" : what + ": ") + reason;
            }
            return e.getClass().getSimpleName() + (what.isEmpty() ? "" : " " + what);
        }
        return oneLine(e);
    }

    /** The first line of an exception's message, or its class name. */
    public static String oneLine(Throwable e) {
        String m = e.getMessage();
        if (m == null || m.isBlank()) {
            m = e.getClass().getSimpleName();
        }
        int nl = m.indexOf('\n');
        return (nl >= 0 ? m.substring(0, nl) : m).strip();
    }
}
