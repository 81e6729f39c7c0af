package dev.shrink.core.safetensors;

import dev.shrink.core.ShrinkException;
import org.junit.jupiter.api.function.Executable;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Helpers shared by the safetensors tests: hand-built files, fixture lookup, error assertions. */
final class SafetensorsTestSupport {
    private SafetensorsTestSupport() {
    }

    /** Writes a safetensors file by hand: u64 LE header length, the JSON as is, then {@code data}. */
    static Path writeRaw(Path file, String json, byte[] data) throws IOException {
        byte[] header = json.getBytes(StandardCharsets.UTF_8);
        return writeRaw(file, header.length, header, data);
    }

    /** Writes a declared header length (possibly a lie), then the header bytes and data. */
    static Path writeRaw(Path file, long declaredHeaderLength, byte[] header, byte[] data) throws IOException {
        ByteBuffer buf = ByteBuffer.allocate(8 + header.length + data.length).order(ByteOrder.LITTLE_ENDIAN);
        buf.putLong(declaredHeaderLength).put(header).put(data);
        Files.write(file, buf.array());
        return file;
    }

    /** Little-endian bytes of floats. */
    static byte[] f32(float... values) {
        ByteBuffer b = ByteBuffer.allocate(4 * values.length).order(ByteOrder.LITTLE_ENDIAN);
        for (float v : values) {
            b.putFloat(v);
        }
        return b.array();
    }

    /** Little-endian bytes of ints. */
    static byte[] i32(int... values) {
        ByteBuffer b = ByteBuffer.allocate(4 * values.length).order(ByteOrder.LITTLE_ENDIAN);
        for (int v : values) {
            b.putInt(v);
        }
        return b.array();
    }

    static byte[] concat(byte[]... parts) {
        int n = 0;
        for (byte[] p : parts) {
            n += p.length;
        }
        ByteBuffer b = ByteBuffer.allocate(n);
        for (byte[] p : parts) {
            b.put(p);
        }
        return b.array();
    }

    /**
     * Asserts that {@code action} throws a one-line ShrinkException whose message names
     * {@code file} (by file name) and contains every one of {@code words}.
     */
    static ShrinkException assertRejected(Path file, Executable action, String... words) {
        ShrinkException e = assertThrows(ShrinkException.class, action);
        String msg = e.getMessage();
        assertTrue(msg.contains(file.getFileName().toString()), () -> "message should name " + file + ": " + msg);
        for (String w : words) {
            assertTrue(msg.contains(w), () -> "message should contain '" + w + "': " + msg);
        }
        assertFalse(msg.contains("\n"), () -> "message should be one line: " + msg);
        return e;
    }

    /** Names of files in {@code dir} that look like leftover temporary files of an atomic write. */
    static List<String> tempFiles(Path dir) throws IOException {
        List<String> out = new ArrayList<>();
        if (!Files.isDirectory(dir)) {
            return out;
        }
        try (Stream<Path> s = Files.list(dir)) {
            s.map(p -> p.getFileName().toString()).filter(n -> n.contains(".tmp-")).forEach(out::add);
        }
        return out;
    }

    /**
     * The shared fixtures folder: the system property {@code shrink.shared} (set by surefire), else
     * {@code ../shared} next to the repository root (found by walking up from the working folder).
     */
    static Path sharedDir() {
        String prop = System.getProperty("shrink.shared");
        if (prop != null && !prop.isBlank()) {
            return Path.of(prop).toAbsolutePath().normalize();
        }
        Path dir = Path.of("").toAbsolutePath();
        while (dir != null) {
            if (Files.isDirectory(dir.resolve("core")) && Files.isRegularFile(dir.resolve("pom.xml"))) {
                return dir.resolve("../shared").normalize();
            }
            dir = dir.getParent();
        }
        return Path.of("../shared").toAbsolutePath().normalize();
    }
}
