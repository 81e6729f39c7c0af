package dev.shrink.core.util;

import dev.shrink.core.ShrinkException;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.Locale;

/**
 * Reading a whole input file into memory, bounded: the one way Shrink reads JSON metadata and text.
 * Only regular files are read (a device such as {@code /dev/zero}, a pipe or a folder never ends or
 * is no file: reading one would run the heap out), and at most a stated number of bytes, so a
 * wrong or hostile path gives one line naming the file instead of an out-of-memory crash.
 */
public final class InputFiles {
    /**
     * The most bytes read from a JSON (or YAML) metadata file: config.json, tokenizer.json, an index,
     * quantize_config.json, a recipe, a report. The largest real ones, the tokenizers of 250k-token
     * vocabularies, are about 35 MB.
     */
    public static final long JSON_MAX_BYTES = 64L << 20;

    /** The most bytes read as one text (a dataset file): 1 GiB, half of what one Java string holds. */
    public static final long TEXT_MAX_BYTES = 1L << 30;

    private InputFiles() {
    }

    /**
     * Checks that {@code file} (links followed) is a regular file of at most {@code maxBytes} bytes.
     *
     * @return its size in bytes
     * @throws NoSuchFileException if it does not exist (callers word that case themselves)
     * @throws ShrinkException     if it is not a regular file, or is larger than {@code maxBytes}
     */
    public static long requireRegularFile(Path file, long maxBytes) throws IOException {
        if (!Files.exists(file)) {
            throw new NoSuchFileException(file.toString());
        }
        if (!Files.isRegularFile(file)) {
            throw ShrinkException.at(file, Files.isDirectory(file) ? "is a folder, not a file"
                    : "is not a regular file (a device or a pipe?); Shrink reads inputs only from regular files");
        }
        long size = Files.size(file);
        if (size > maxBytes) {
            throw tooLarge(file, size, maxBytes);
        }
        return size;
    }

    /**
     * The bytes of a regular file of at most {@code maxBytes} bytes (also when it grows while read).
     *
     * @throws NoSuchFileException if it does not exist
     * @throws IOException         if it cannot be read
     * @throws ShrinkException     if it is not a regular file or is too large
     */
    public static byte[] readBytes(Path file, long maxBytes) throws IOException {
        requireRegularFile(file, maxBytes);
        try (InputStream in = Files.newInputStream(file)) {
            byte[] bytes = in.readNBytes((int) Math.min(maxBytes + 1, Integer.MAX_VALUE - 8));
            if (bytes.length > maxBytes) {
                throw tooLarge(file, bytes.length, maxBytes);
            }
            return bytes;
        }
    }

    /**
     * The text of a regular file of at most {@code maxBytes} bytes, decoded as strict UTF-8.
     *
     * @throws java.nio.charset.CharacterCodingException if it is not valid UTF-8
     * @throws NoSuchFileException if it does not exist
     * @throws IOException         if it cannot be read
     * @throws ShrinkException     if it is not a regular file or is too large
     */
    public static String readUtf8(Path file, long maxBytes) throws IOException {
        byte[] bytes = readBytes(file, maxBytes);
        return StandardCharsets.UTF_8.newDecoder().decode(ByteBuffer.wrap(bytes)).toString();
    }

    /**
     * {@link #readUtf8} with every failure as a ShrinkException naming the file: "not found",
     * "not valid UTF-8 text", "cannot read: ...".
     */
    public static String readText(Path file, long maxBytes) {
        try {
            return readUtf8(file, maxBytes);
        } catch (NoSuchFileException e) {
            throw ShrinkException.at(file, "not found", e);
        } catch (CharacterCodingException e) {
            throw ShrinkException.at(file, "not valid UTF-8 text", e);
        } catch (java.nio.file.AccessDeniedException e) {
            throw ShrinkException.at(file, "permission denied", e);
        } catch (IOException e) {
            throw ShrinkException.at(file, "cannot read: " + e.getMessage(), e);
        }
    }

    private static ShrinkException tooLarge(Path file, long size, long maxBytes) {
        return ShrinkException.at(file, String.format(Locale.ROOT,
                "is %s; Shrink reads at most %s from a file like this (is it the right file?)",
                mib(size), mib(maxBytes)));
    }

    private static String mib(long bytes) {
        return bytes >= 1L << 30 ? String.format(Locale.ROOT, "%.1f GiB", bytes / (double) (1L << 30))
                : String.format(Locale.ROOT, "%.1f MiB", bytes / (double) (1L << 20));
    }
}
