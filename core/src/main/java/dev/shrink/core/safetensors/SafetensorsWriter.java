package dev.shrink.core.safetensors;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.util.DefaultIndenter;
import com.fasterxml.jackson.core.util.DefaultPrettyPrinter;
import com.fasterxml.jackson.core.util.Separators;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.shrink.core.ShrinkException;
import dev.shrink.core.io.SafeFiles;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.TreeMap;
import java.util.regex.Pattern;

/**
 * Writes safetensors files and sharded model folders.
 *
 * <p>Every file is written atomically through {@link SafeFiles#write(Path, SafeFiles.Body)}: to a
 * unique {@code <name>.tmp-<token>} in the target folder, forced to disk, then renamed over the target.
 * On any failure the temporary file is deleted and the target is left as it was; a target that is not
 * a regular file is refused. I/O errors (including a full disk) become a {@link ShrinkException}
 * naming the target file.
 */
public final class SafetensorsWriter {

    /** Name of the single-file weights of a model folder. */
    public static final String SINGLE_FILE = "model.safetensors";

    /** Shard names written by {@link #writeModel}, e.g. {@code model-00001-of-00003.safetensors}. */
    static final Pattern SHARD_NAME = Pattern.compile("model-\\d{5}-of-\\d{5}\\.safetensors");

    /** Bytes copied per write call (data is staged through one direct buffer of this size). */
    private static final int IO_CHUNK = 8 << 20;

    private SafetensorsWriter() {
    }

    /**
     * Writes one safetensors file atomically.
     *
     * <p>Header: {@code __metadata__} first ({@code format=pt} followed by the given entries),
     * then the tensors in the given order with data_offsets packed back to back; the header JSON is
     * padded with spaces so that the data starts at an 8-byte aligned file offset.
     *
     * @param metadata extra {@code __metadata__} entries (may be null or empty); a "format" entry
     *                 other than "pt" is rejected
     * @throws ShrinkException if two tensors share a name, a tensor's data does not have numel ×
     *                         dtype size bytes, or the file cannot be written
     */
    public static void write(Path file, List<TensorData> tensors, Map<String, String> metadata) {
        checkTensors(file, tensors);
        byte[] header = header(tensors, metadata);
        atomicWrite(file, ch -> {
            ByteBuffer prefix = ByteBuffer.allocate(8 + header.length).order(ByteOrder.LITTLE_ENDIAN);
            prefix.putLong(header.length).put(header).flip();
            writeFully(ch, prefix);
            long largest = 0;
            for (TensorData t : tensors) {
                largest = Math.max(largest, t.data().byteSize());
            }
            ByteBuffer stage = ByteBuffer.allocateDirect((int) Math.max(1, Math.min(IO_CHUNK, largest)));
            MemorySegment stageSeg = MemorySegment.ofBuffer(stage);
            for (TensorData t : tensors) {
                MemorySegment src = t.data();
                long size = src.byteSize();
                for (long off = 0; off < size; off += stage.capacity()) {
                    int len = (int) Math.min(stage.capacity(), size - off);
                    MemorySegment.copy(src, off, stageSeg, 0, len);
                    stage.clear().limit(len);
                    writeFully(ch, stage);
                }
            }
        });
    }

    /**
     * Writes a model's weights into {@code dir} (created if missing).
     *
     * <p>If the data total is at most {@code maxShardBytes}, writes one {@code model.safetensors}.
     * Otherwise writes shards {@code model-00001-of-0000N.safetensors}, tensors kept in order, a
     * new shard starting when adding the next tensor would exceed {@code maxShardBytes} (a tensor
     * larger than the limit gets a shard of its own), plus {@code model.safetensors.index.json}
     * ({@code {"metadata": {"total_size": data bytes}, "weight_map": {name: file}}}, names sorted,
     * pretty-printed). Each file is atomic; the set is not. After a successful write, weight files
     * of an earlier layout that would confuse a reader are deleted from {@code dir}: a stale index
     * or stale {@code model-NNNNN-of-NNNNN.safetensors} shards when writing one file, a stale
     * {@code model.safetensors} or shards not written now when sharding.
     *
     * @param metadata extra {@code __metadata__} entries for every file (may be null)
     * @return the files written: the weight files in order, then the index if any
     * @throws ShrinkException on duplicate names, a data size mismatch, or an I/O error
     */
    public static List<Path> writeModel(Path dir, List<TensorData> tensors, long maxShardBytes,
                                        Map<String, String> metadata) {
        if (maxShardBytes <= 0) {
            throw new IllegalArgumentException("maxShardBytes must be positive: " + maxShardBytes);
        }
        checkTensors(dir, tensors);
        long total = 0;
        for (TensorData t : tensors) {
            total += t.data().byteSize();
        }
        try {
            Files.createDirectories(dir);
        } catch (IOException e) {
            throw writeError(dir, e);
        }

        List<Path> written = new ArrayList<>();
        if (total <= maxShardBytes) {
            Path file = dir.resolve(SINGLE_FILE);
            write(file, tensors, metadata);
            written.add(file);
            deleteStale(dir, Set.of(file.getFileName().toString()), true);
            return written;
        }

        // Greedy packing in order: [shard][tensor]
        List<List<TensorData>> shards = new ArrayList<>();
        List<TensorData> current = new ArrayList<>();
        long currentBytes = 0;
        for (TensorData t : tensors) {
            long b = t.data().byteSize();
            if (!current.isEmpty() && currentBytes + b > maxShardBytes) {
                shards.add(current);
                current = new ArrayList<>();
                currentBytes = 0;
            }
            current.add(t);
            currentBytes += b;
        }
        shards.add(current);
        int n = shards.size();
        if (n > 99_999) {
            throw ShrinkException.at(dir, n + " shards needed, more than the 99999 that 5-digit names allow;"
                    + " raise the shard size");
        }

        Map<String, String> weightMap = new TreeMap<>();
        Set<String> keep = new HashSet<>();
        for (int i = 0; i < n; i++) {
            String name = String.format("model-%05d-of-%05d.safetensors", i + 1, n);
            Path file = dir.resolve(name);
            write(file, shards.get(i), metadata);
            written.add(file);
            keep.add(name);
            for (TensorData t : shards.get(i)) {
                weightMap.put(t.name(), name);
            }
        }

        ObjectNode index = SafetensorsFile.JSON.createObjectNode();
        index.putObject("metadata").put("total_size", total);
        ObjectNode wm = index.putObject("weight_map");
        weightMap.forEach(wm::put);
        byte[] indexBytes;
        try {
            DefaultPrettyPrinter pp = new DefaultPrettyPrinter(Separators.createDefaultInstance()
                    .withObjectFieldValueSpacing(Separators.Spacing.AFTER))
                    .withObjectIndenter(new DefaultIndenter("  ", "\n"))
                    .withArrayIndenter(new DefaultIndenter("  ", "\n"));
            indexBytes = (SafetensorsFile.JSON.writer(pp).writeValueAsString(index) + "\n")
                    .getBytes(StandardCharsets.UTF_8);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException(e);
        }
        Path indexFile = dir.resolve(WeightStore.INDEX_FILE);
        atomicWrite(indexFile, ch -> writeFully(ch, ByteBuffer.wrap(indexBytes)));
        written.add(indexFile);
        keep.add(WeightStore.INDEX_FILE);
        deleteStale(dir, keep, false);
        return written;
    }

    /** Names unique, not reserved, data size = numel × dtype size. Errors name {@code where}. */
    private static void checkTensors(Path where, List<TensorData> tensors) {
        Set<String> names = new HashSet<>();
        for (TensorData t : tensors) {
            if (t.name().equals(SafetensorsFile.METADATA_KEY)) {
                throw ShrinkException.at(where, "'" + SafetensorsFile.METADATA_KEY + "' cannot be a tensor name");
            }
            if (!names.add(t.name())) {
                throw ShrinkException.at(where, "duplicate tensor name '" + t.name() + "'");
            }
            long expected;
            try {
                expected = t.expectedBytes();
            } catch (ArithmeticException e) {
                throw ShrinkException.at(where, "tensor '" + t.name() + "' shape "
                        + Arrays.toString(t.shape()) + " is too large");
            }
            if (t.data().byteSize() != expected) {
                throw ShrinkException.at(where, "tensor '" + t.name() + "' has " + t.data().byteSize()
                        + " bytes of data but shape " + Arrays.toString(t.shape()) + " of "
                        + t.dtype().safetensorsName() + " needs " + expected);
            }
        }
    }

    /** The header JSON, padded with spaces so that 8 + its length is a multiple of 8. */
    static byte[] header(List<TensorData> tensors, Map<String, String> metadata) {
        Map<String, String> meta = new LinkedHashMap<>();
        meta.put("format", "pt");
        if (metadata != null) {
            for (Map.Entry<String, String> e : metadata.entrySet()) {
                if (e.getKey().equals("format") && !"pt".equals(e.getValue())) {
                    throw new IllegalArgumentException("__metadata__ format must be \"pt\", not \"" + e.getValue() + "\"");
                }
                meta.put(e.getKey(), Objects.requireNonNull(e.getValue(), "metadata value"));
            }
        }
        ObjectNode root = SafetensorsFile.JSON.createObjectNode();
        ObjectNode m = root.putObject(SafetensorsFile.METADATA_KEY);
        meta.forEach(m::put);
        long offset = 0;
        for (TensorData t : tensors) {
            ObjectNode e = root.putObject(t.name());
            e.put("dtype", t.dtype().safetensorsName());
            ArrayNode shape = e.putArray("shape");
            for (long d : t.shape()) {
                shape.add(d);
            }
            long end = offset + t.data().byteSize();
            e.putArray("data_offsets").add(offset).add(end);
            offset = end;
        }
        byte[] json;
        try {
            json = SafetensorsFile.JSON.writeValueAsBytes(root);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException(e);
        }
        int padded = (int) (((8L + json.length + 7) & ~7L) - 8);
        byte[] out = Arrays.copyOf(json, padded);
        Arrays.fill(out, json.length, padded, (byte) ' ');
        return out;
    }

    /** The body of an atomic write: writes the whole content to the channel. */
    @FunctionalInterface
    interface Body extends SafeFiles.Body {
    }

    /** Writes {@code target} atomically through {@link SafeFiles#write(Path, SafeFiles.Body)}. */
    static void atomicWrite(Path target, Body body) {
        SafeFiles.write(target, body);
    }

    /** A one-line ShrinkException naming the file that could not be written. */
    static ShrinkException writeError(Path target, IOException e) {
        return SafeFiles.writeError(target, e);
    }

    private static void writeFully(FileChannel ch, ByteBuffer buf) throws IOException {
        while (buf.hasRemaining()) {
            ch.write(buf);
        }
    }

    /**
     * Deletes weight files of another layout from {@code dir}: shard-named files not in
     * {@code keep}, plus the index (when {@code single}) or {@code model.safetensors} (when sharded).
     */
    private static void deleteStale(Path dir, Set<String> keep, boolean single) {
        List<Path> stale = new ArrayList<>();
        try (var ds = Files.newDirectoryStream(dir)) {
            for (Path p : ds) {
                String name = p.getFileName().toString();
                if (keep.contains(name)) {
                    continue;
                }
                boolean otherLayout = single ? name.equals(WeightStore.INDEX_FILE) : name.equals(SINGLE_FILE);
                if (otherLayout || SHARD_NAME.matcher(name).matches()) {
                    stale.add(p);
                }
            }
            for (Path p : stale) {
                Files.deleteIfExists(p);
            }
        } catch (IOException e) {
            throw ShrinkException.at(dir, "wrote the weights but could not remove stale weight files: "
                    + SafetensorsFile.oneLine(e), e);
        }
    }
}
