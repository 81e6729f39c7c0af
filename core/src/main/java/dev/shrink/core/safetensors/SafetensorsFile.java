package dev.shrink.core.safetensors;

import com.fasterxml.jackson.core.JacksonException;
import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonToken;
import com.fasterxml.jackson.databind.json.JsonMapper;
import dev.shrink.core.ShrinkException;
import dev.shrink.core.tensor.DType;
import dev.shrink.core.tensor.Floats;
import dev.shrink.core.util.StrictJson;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.AccessDeniedException;
import java.nio.file.FileSystemException;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.Comparator;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;

/**
 * One memory-mapped safetensors file.
 *
 * <p>{@link #open} validates the whole header before anything can be read: the header length
 * (at most 100 MB, inside the file), the JSON (well formed, no duplicate names), every entry
 * (known dtype, non-negative integer shape, {@code data_offsets} inside the data section and of
 * exactly numel × dtype size bytes), that no two data ranges overlap (gaps are allowed; zero-size
 * tensors have {@code begin == end}), and that {@code __metadata__} maps strings to strings.
 * Any violation is a {@link ShrinkException} "FILE: problem".
 *
 * <p>The file is mapped read-only with a shared arena ({@link FileChannel#map(FileChannel.MapMode,
 * long, long, Arena)}), so files over 2 GB work and the instance may be read from several threads.
 * {@link #close()} unmaps it: segments returned by {@link #data} are invalid afterwards.
 */
public final class SafetensorsFile implements AutoCloseable {

    /** Largest header accepted, as in the reference implementation (100 MB). */
    public static final long MAX_HEADER_BYTES = 100_000_000L;

    /** Largest Java array length we allocate (the VM refuses lengths just below 2^31 − 1). */
    static final int MAX_ARRAY_LENGTH = Integer.MAX_VALUE - 8;

    static final String METADATA_KEY = "__metadata__";

    /** Elements converted per chunk when widening 16/8-bit or narrowing 64-bit data. */
    private static final int CHUNK = 8192;

    static final ValueLayout.OfShort SHORT_LE = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfInt INT_LE = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfLong LONG_LE = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfFloat FLOAT_LE = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfDouble DOUBLE_LE = ValueLayout.JAVA_DOUBLE_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    /** Streaming parser factory for headers; duplicates are detected by {@link #parseHeader} itself. */
    private static final JsonFactory HEADER_JSON = new JsonFactory();

    /** The project's JSON reader/writer (strict: {@link StrictJson}), for the index and the writers. */
    static final JsonMapper JSON = StrictJson.MAPPER;

    /** e4m3fn byte → float, indexed by the unsigned byte. */
    private static final float[] E4M3_TABLE = new float[256];

    static {
        for (int i = 0; i < 256; i++) {
            E4M3_TABLE[i] = Floats.e4m3ToFloat((byte) i);
        }
    }

    private final Path path;
    private final Arena arena;
    private final MemorySegment dataSection;
    private final Map<String, String> metadata;
    private final List<TensorInfo> tensors;
    private final Map<String, TensorInfo> byName;
    private volatile boolean closed;

    private SafetensorsFile(Path path, Arena arena, MemorySegment dataSection, Map<String, String> metadata,
                            List<TensorInfo> tensors) {
        this.path = path;
        this.arena = arena;
        this.dataSection = dataSection;
        this.metadata = Collections.unmodifiableMap(metadata);
        this.tensors = List.copyOf(tensors);
        Map<String, TensorInfo> m = new HashMap<>();
        for (TensorInfo t : tensors) {
            m.put(t.name(), t);
        }
        this.byName = m;
    }

    /**
     * Opens, validates and maps a safetensors file.
     *
     * @throws ShrinkException if the file cannot be read or is not a valid safetensors file
     */
    public static SafetensorsFile open(Path file) {
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
            long size = ch.size();
            if (size < 8) {
                throw ShrinkException.at(file, "truncated: the file has " + size
                        + " bytes, fewer than the 8-byte header length");
            }
            long headerLen = readFully(ch, 0, 8).order(ByteOrder.LITTLE_ENDIAN).getLong();
            // Unsigned u64: a negative long is a value above 2^63, certainly above the limit.
            if (headerLen < 0 || headerLen > MAX_HEADER_BYTES) {
                throw ShrinkException.at(file, "header length " + Long.toUnsignedString(headerLen)
                        + " is above the 100 MB limit (not a safetensors file?)");
            }
            if (8 + headerLen > size) {
                throw ShrinkException.at(file, "header length " + headerLen
                        + " goes past the end of the file (" + size + " bytes): truncated or not a safetensors file");
            }
            byte[] header = readFully(ch, 8, (int) headerLen).array();
            long dataSize = size - 8 - headerLen;

            Map<String, String> metadata = new LinkedHashMap<>();
            List<TensorInfo> tensors = parseHeader(file, header, dataSize, metadata);

            Arena arena = Arena.ofShared();
            try {
                MemorySegment mapping = ch.map(FileChannel.MapMode.READ_ONLY, 0, size, arena);
                MemorySegment data = mapping.asSlice(8 + headerLen).asReadOnly();
                return new SafetensorsFile(file, arena, data, metadata, tensors);
            } catch (IOException | RuntimeException e) {
                arena.close();
                throw e;
            }
        } catch (IOException e) {
            throw readError(file, e);
        }
    }

    /** Wraps an I/O error while reading {@code file} into a one-line ShrinkException. */
    static ShrinkException readError(Path file, IOException e) {
        if (e instanceof NoSuchFileException) {
            return ShrinkException.at(file, "file not found", e);
        }
        if (e instanceof AccessDeniedException) {
            return ShrinkException.at(file, "permission denied", e);
        }
        if (e instanceof FileSystemException fse && fse.getReason() != null && !fse.getReason().isBlank()) {
            return ShrinkException.at(file, "cannot read: " + oneLine(new IOException(fse.getReason())), e);
        }
        return ShrinkException.at(file, "cannot read: " + oneLine(e), e);
    }

    /** The exception's message (or class name) flattened to one line. */
    static String oneLine(Throwable e) {
        String m = e.getMessage();
        if (m == null || m.isBlank()) {
            m = e.getClass().getSimpleName();
        }
        int nl = m.indexOf('\n');
        return (nl >= 0 ? m.substring(0, nl) : m).strip();
    }

    private static ByteBuffer readFully(FileChannel ch, long position, int length) throws IOException {
        ByteBuffer buf = ByteBuffer.allocate(length);
        while (buf.hasRemaining()) {
            int n = ch.read(buf, position + buf.position());
            if (n < 0) {
                throw new IOException("unexpected end of file");
            }
        }
        return buf.flip();
    }

    /**
     * Parses and validates the header JSON with a streaming parser, which sees every key: a
     * duplicate name (or a duplicate key inside an entry) is reported, not silently dropped as a
     * tree mapper would. Fills {@code metadata}; returns the tensors in header order.
     */
    private static List<TensorInfo> parseHeader(Path file, byte[] header, long dataSize, Map<String, String> metadata) {
        List<TensorInfo> tensors = new ArrayList<>();
        Set<String> seen = new HashSet<>();
        // The format: the header is UTF-8 JSON whose first byte is '{' (trailing spaces may pad it).
        // Jackson would otherwise detect a byte-order mark or UTF-16/32 by itself and accept them.
        if (header.length == 0 || header[0] != '{' || header.length > 1 && header[1] == 0) { // "{\0" is UTF-16LE
            throw ShrinkException.at(file, "header is not a JSON object starting with '{'"
                    + (header.length > 0 && (header[0] & 0xFF) >= 0x80 || header.length > 1 && header[1] == 0
                    ? " (a byte-order mark or UTF-16? the format says plain UTF-8)" : ""));
        }
        String text = StrictJson.utf8(file, header, "header ");
        try (JsonParser p = HEADER_JSON.createParser(text)) {
            if (p.nextToken() != JsonToken.START_OBJECT) {
                throw ShrinkException.at(file, "header is not a JSON object");
            }
            while (p.nextToken() == JsonToken.FIELD_NAME) {
                String name = p.currentName();
                if (!seen.add(name)) {
                    throw ShrinkException.at(file, "duplicate name '" + name + "' in the header");
                }
                p.nextToken();
                if (name.equals(METADATA_KEY)) {
                    parseMetadata(file, p, metadata);
                } else {
                    tensors.add(parseEntry(file, name, p, dataSize));
                }
            }
            // The loop ends on END_OBJECT: anything but whitespace after it is an error.
            if (p.nextToken() != null) {
                throw ShrinkException.at(file, "header is not valid JSON: content after the closing brace");
            }
        } catch (JacksonException e) {
            throw ShrinkException.at(file, "header is not valid JSON: " + oneLine(e), e);
        } catch (IOException e) {
            throw readError(file, e);
        }
        checkOverlaps(file, tensors);
        return tensors;
    }

    /** {@code __metadata__}: an object of string values. The parser is on its first token. */
    private static void parseMetadata(Path file, JsonParser p, Map<String, String> metadata) throws IOException {
        if (p.currentToken() != JsonToken.START_OBJECT) {
            throw ShrinkException.at(file, "__metadata__ is not a JSON object of strings");
        }
        while (p.nextToken() == JsonToken.FIELD_NAME) {
            String key = p.currentName();
            JsonToken v = p.nextToken();
            if (v != JsonToken.VALUE_STRING) {
                throw ShrinkException.at(file, "__metadata__ value of '" + key + "' is not a string: "
                        + describe(p));
            }
            if (metadata.put(key, p.getText()) != null) {
                throw ShrinkException.at(file, "duplicate key '" + key + "' in __metadata__");
            }
        }
    }

    /** One tensor entry; the parser is on the entry's first token and ends on its last. */
    private static TensorInfo parseEntry(Path file, String name, JsonParser p, long dataSize) throws IOException {
        String what = "tensor '" + name + "'";
        if (p.currentToken() != JsonToken.START_OBJECT) {
            throw ShrinkException.at(file, what + " entry is not a JSON object");
        }
        String dtypeName = null;
        long[] shape = null;
        long[] offsets = null;
        Set<String> keys = new HashSet<>();
        while (p.nextToken() == JsonToken.FIELD_NAME) {
            String key = p.currentName();
            if (!keys.add(key)) {
                throw ShrinkException.at(file, what + " has a duplicate key '" + key + "'");
            }
            JsonToken v = p.nextToken();
            switch (key) {
                case "dtype" -> {
                    if (v != JsonToken.VALUE_STRING) {
                        throw ShrinkException.at(file, what + " \"dtype\" is not a string: " + describe(p));
                    }
                    dtypeName = p.getText();
                }
                case "shape" -> shape = nonNegativeLongs(file, what, key, p);
                case "data_offsets" -> offsets = nonNegativeLongs(file, what, key, p);
                default -> p.skipChildren();     // unknown keys are tolerated
            }
        }
        if (dtypeName == null || shape == null || offsets == null) {
            throw ShrinkException.at(file, what + " needs \"dtype\", \"shape\" and \"data_offsets\"");
        }
        String dt = dtypeName;
        DType dtype = DType.fromSafetensors(dt).orElseThrow(() ->
                ShrinkException.at(file, what + " has unknown dtype '" + dt + "'"));
        if (offsets.length != 2) {
            throw ShrinkException.at(file, what + " has " + offsets.length
                    + " data_offsets, expected [begin, end]");
        }
        long begin = offsets[0];
        long end = offsets[1];
        if (end < begin) {
            throw ShrinkException.at(file, what + " data_offsets [" + begin + ", " + end
                    + "] are out of order (end before begin)");
        }
        if (end > dataSize) {
            throw ShrinkException.at(file, what + " data_offsets [" + begin + ", " + end
                    + "] are out of range: the data section has only " + dataSize
                    + " bytes (bad offsets, or the file is truncated)");
        }
        long needed;
        try {
            long numel = 1;
            for (long d : shape) {
                numel = Math.multiplyExact(numel, d);
            }
            needed = Math.multiplyExact(numel, (long) dtype.byteSize());
        } catch (ArithmeticException e) {
            throw ShrinkException.at(file, what + " shape " + Arrays.toString(shape) + " is too large");
        }
        if (needed != end - begin) {
            throw ShrinkException.at(file, what + " has " + (end - begin) + " bytes but shape "
                    + Arrays.toString(shape) + " of " + dtype.safetensorsName() + " needs " + needed);
        }
        return new TensorInfo(name, dtype, shape, begin, end);
    }

    /** An array of non-negative integers fitting in a long; the parser is on its first token. */
    private static long[] nonNegativeLongs(Path file, String what, String key, JsonParser p) throws IOException {
        if (p.currentToken() != JsonToken.START_ARRAY) {
            throw ShrinkException.at(file, what + " \"" + key + "\" is not an array: " + describe(p));
        }
        long[] out = new long[4];
        int n = 0;
        JsonToken t;
        while ((t = p.nextToken()) != JsonToken.END_ARRAY) {
            if (t != JsonToken.VALUE_NUMBER_INT || p.getNumberType() == JsonParser.NumberType.BIG_INTEGER
                    || p.getLongValue() < 0) {
                throw ShrinkException.at(file, what + " \"" + key + "\" has an invalid value " + describe(p)
                        + " (expected a non-negative integer)");
            }
            if (n == out.length) {
                out = Arrays.copyOf(out, 2 * n);
            }
            out[n++] = p.getLongValue();
        }
        return Arrays.copyOf(out, n);
    }

    /** The current token, for messages: its text, or "an object"/"an array". */
    private static String describe(JsonParser p) throws IOException {
        JsonToken t = p.currentToken();
        if (t == JsonToken.START_OBJECT) {
            return "an object";
        }
        if (t == JsonToken.START_ARRAY) {
            return "an array";
        }
        return t == JsonToken.VALUE_STRING ? "\"" + p.getText() + "\"" : p.getText();
    }

    /** Sorted by begin, the non-empty data ranges must not overlap (gaps are fine). */
    private static void checkOverlaps(Path file, List<TensorInfo> tensors) {
        List<TensorInfo> sorted = new ArrayList<>();
        for (TensorInfo t : tensors) {
            if (t.byteLength() > 0) {
                sorted.add(t);
            }
        }
        sorted.sort(Comparator.comparingLong(TensorInfo::begin).thenComparingLong(TensorInfo::end));
        for (int i = 1; i < sorted.size(); i++) {
            TensorInfo prev = sorted.get(i - 1);
            TensorInfo cur = sorted.get(i);
            if (cur.begin() < prev.end()) {
                throw ShrinkException.at(file, "tensors '" + prev.name() + "' [" + prev.begin() + ", " + prev.end()
                        + "] and '" + cur.name() + "' [" + cur.begin() + ", " + cur.end()
                        + "] have overlapping data ranges");
            }
        }
    }

    /** The file as given to {@link #open}. */
    public Path path() {
        return path;
    }

    /** The {@code __metadata__} entries (unmodifiable, in file order); empty if absent. */
    public Map<String, String> metadata() {
        return metadata;
    }

    /** All tensors, in header order. */
    public List<TensorInfo> tensors() {
        return tensors;
    }

    /** The tensor named {@code name}, if present. */
    public Optional<TensorInfo> info(String name) {
        return Optional.ofNullable(byName.get(name));
    }

    private TensorInfo require(String name) {
        TensorInfo t = byName.get(name);
        if (t == null) {
            throw ShrinkException.at(path, "no tensor '" + name + "' in this file");
        }
        return t;
    }

    /**
     * The raw little-endian bytes of a tensor: a read-only slice of the mapping, valid until
     * {@link #close()}.
     *
     * @throws ShrinkException if there is no such tensor
     */
    public MemorySegment data(String name) {
        return data(require(name));
    }

    MemorySegment data(TensorInfo t) {
        if (closed) {
            throw new IllegalStateException(path + " is closed");
        }
        return dataSection.asSlice(t.begin(), t.byteLength());
    }

    /**
     * Reads a floating-point tensor (F32, F16, BF16, F64, F8_E4M3) into a new {@code float[]}
     * of numel elements, row-major. F64 values are rounded to float.
     *
     * @throws ShrinkException if there is no such tensor, it has an integer dtype, or it has
     *                         too many elements for a Java array
     */
    public float[] readFloats(String name) {
        TensorInfo t = require(name);
        if (!t.dtype().isFloating()) {
            throw ShrinkException.at(path, "tensor '" + name + "' is " + t.dtype().safetensorsName()
                    + ", not a float type");
        }
        int n = arrayLength(t, "float[]");
        MemorySegment seg = data(t);
        float[] out = new float[n];
        switch (t.dtype()) {
            case F32 -> MemorySegment.copy(seg, FLOAT_LE, 0, out, 0, n);
            case BF16 -> {
                short[] buf = new short[Math.min(n, CHUNK)];
                for (int base = 0; base < n; base += CHUNK) {
                    int len = Math.min(CHUNK, n - base);
                    MemorySegment.copy(seg, SHORT_LE, 2L * base, buf, 0, len);
                    for (int i = 0; i < len; i++) {
                        out[base + i] = Float.intBitsToFloat(buf[i] << 16);
                    }
                }
            }
            case F16 -> {
                short[] buf = new short[Math.min(n, CHUNK)];
                for (int base = 0; base < n; base += CHUNK) {
                    int len = Math.min(CHUNK, n - base);
                    MemorySegment.copy(seg, SHORT_LE, 2L * base, buf, 0, len);
                    for (int i = 0; i < len; i++) {
                        out[base + i] = Float.float16ToFloat(buf[i]);
                    }
                }
            }
            case F64 -> {
                double[] buf = new double[Math.min(n, CHUNK)];
                for (int base = 0; base < n; base += CHUNK) {
                    int len = Math.min(CHUNK, n - base);
                    MemorySegment.copy(seg, DOUBLE_LE, 8L * base, buf, 0, len);
                    for (int i = 0; i < len; i++) {
                        out[base + i] = (float) buf[i];
                    }
                }
            }
            case F8_E4M3 -> {
                byte[] buf = new byte[Math.min(n, CHUNK)];
                for (int base = 0; base < n; base += CHUNK) {
                    int len = Math.min(CHUNK, n - base);
                    MemorySegment.copy(seg, ValueLayout.JAVA_BYTE, base, buf, 0, len);
                    for (int i = 0; i < len; i++) {
                        out[base + i] = E4M3_TABLE[buf[i] & 0xFF];
                    }
                }
            }
            default -> throw new AssertionError(t.dtype());
        }
        return out;
    }

    /**
     * Reads an integer tensor (I32, I16, I8, U8, BOOL as 0/1, and I64 when every value fits in an
     * int) into a new {@code int[]} of numel elements, row-major.
     *
     * @throws ShrinkException if there is no such tensor, it has a float dtype, an I64 value does
     *                         not fit in an int, or it has too many elements for a Java array
     */
    public int[] readInts(String name) {
        TensorInfo t = require(name);
        if (t.dtype().isFloating()) {
            throw ShrinkException.at(path, "tensor '" + name + "' is " + t.dtype().safetensorsName()
                    + ", not an integer type");
        }
        int n = arrayLength(t, "int[]");
        MemorySegment seg = data(t);
        int[] out = new int[n];
        switch (t.dtype()) {
            case I32 -> MemorySegment.copy(seg, INT_LE, 0, out, 0, n);
            case I16 -> {
                short[] buf = new short[Math.min(n, CHUNK)];
                for (int base = 0; base < n; base += CHUNK) {
                    int len = Math.min(CHUNK, n - base);
                    MemorySegment.copy(seg, SHORT_LE, 2L * base, buf, 0, len);
                    for (int i = 0; i < len; i++) {
                        out[base + i] = buf[i];
                    }
                }
            }
            case I8, U8, BOOL -> {
                byte[] buf = new byte[Math.min(n, CHUNK)];
                for (int base = 0; base < n; base += CHUNK) {
                    int len = Math.min(CHUNK, n - base);
                    MemorySegment.copy(seg, ValueLayout.JAVA_BYTE, base, buf, 0, len);
                    switch (t.dtype()) {
                        case I8 -> {
                            for (int i = 0; i < len; i++) {
                                out[base + i] = buf[i];
                            }
                        }
                        case U8 -> {
                            for (int i = 0; i < len; i++) {
                                out[base + i] = buf[i] & 0xFF;
                            }
                        }
                        default -> { // BOOL: any non-zero byte is true
                            for (int i = 0; i < len; i++) {
                                out[base + i] = buf[i] != 0 ? 1 : 0;
                            }
                        }
                    }
                }
            }
            case I64 -> {
                long[] buf = new long[Math.min(n, CHUNK)];
                for (int base = 0; base < n; base += CHUNK) {
                    int len = Math.min(CHUNK, n - base);
                    MemorySegment.copy(seg, LONG_LE, 8L * base, buf, 0, len);
                    for (int i = 0; i < len; i++) {
                        long v = buf[i];
                        if (v != (int) v) {
                            throw ShrinkException.at(path, "tensor '" + name + "' is I64 and element "
                                    + (base + i) + " = " + v + " does not fit in an int");
                        }
                        out[base + i] = (int) v;
                    }
                }
            }
            default -> throw new AssertionError(t.dtype());
        }
        return out;
    }

    private int arrayLength(TensorInfo t, String arrayType) {
        long numel = t.numel();
        if (numel > MAX_ARRAY_LENGTH) {
            throw ShrinkException.at(path, "tensor '" + t.name() + "' has " + numel
                    + " elements, too large for a " + arrayType + " (at most " + MAX_ARRAY_LENGTH + ")");
        }
        return (int) numel;
    }

    /** Unmaps the file. Idempotent; segments from {@link #data} become invalid. */
    @Override
    public void close() {
        synchronized (this) {
            if (closed) {
                return;
            }
            closed = true;
        }
        arena.close();
    }

    @Override
    public String toString() {
        return "SafetensorsFile[" + path + ", " + tensors.size() + " tensors]";
    }
}
