package dev.shrink.core.safetensors;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shrink.core.ShrinkException;
import dev.shrink.core.tensor.DType;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class TokenWindowsTest {
    @TempDir
    Path dir;

    private static void assertMessage(ShrinkException e, String... parts) {
        for (String p : parts) {
            assertTrue(e.getMessage().contains(p), "message '" + e.getMessage() + "' lacks '" + p + "'");
        }
    }

    @Test
    void roundTrip() throws IOException {
        int[][] w = {{1, 2, 3, 4}, {5, 6, 7, 8}, {8191, 0, -1, Integer.MAX_VALUE}};
        Path f = dir.resolve("windows.safetensors");
        TokenWindows.write(f, w);
        assertArrayEquals(w, TokenWindows.read(f));
        try (Stream<Path> files = Files.list(dir)) {
            assertEquals(List.of(f), files.toList(), "no temporary file left behind");
        }
    }

    @Test
    void readsI64Ids() {
        Path f = dir.resolve("i64.safetensors");
        ByteBuffer b = ByteBuffer.allocate(6 * 8).order(ByteOrder.LITTLE_ENDIAN);
        for (long v : new long[] {1, 2, 3, 4, 5, 6}) {
            b.putLong(v);
        }
        SafetensorsWriter.write(f, List.of(TensorData.ofBytes("input_ids", DType.I64, new long[] {2, 3}, b.array())), null);
        assertArrayEquals(new int[][] {{1, 2, 3}, {4, 5, 6}}, TokenWindows.read(f));
    }

    @Test
    void missingTensorWrongRankOrDtypeAreErrors() {
        Path other = dir.resolve("other.safetensors");
        SafetensorsWriter.write(other, List.of(TensorData.ofInts("tokens", new long[] {1, 2}, new int[] {1, 2})), null);
        assertMessage(assertThrows(ShrinkException.class, () -> TokenWindows.read(other)),
                other.toString(), "no tensor 'input_ids'");

        Path flat = dir.resolve("flat.safetensors");
        SafetensorsWriter.write(flat, List.of(TensorData.ofInts("input_ids", new long[] {4}, new int[] {1, 2, 3, 4})), null);
        assertMessage(assertThrows(ShrinkException.class, () -> TokenWindows.read(flat)),
                flat.toString(), "shape [4]", "[n, seqlen]");

        Path floats = dir.resolve("floats.safetensors");
        SafetensorsWriter.write(floats, List.of(TensorData.ofFloats("input_ids", new long[] {1, 2}, new float[] {1, 2}, DType.F32)), null);
        assertMessage(assertThrows(ShrinkException.class, () -> TokenWindows.read(floats)),
                floats.toString(), "F32");

        Path empty = dir.resolve("empty.safetensors");
        SafetensorsWriter.write(empty, List.of(TensorData.ofInts("input_ids", new long[] {0, 512}, new int[0])), null);
        assertMessage(assertThrows(ShrinkException.class, () -> TokenWindows.read(empty)),
                empty.toString(), "no tokens");
    }

    @Test
    void notASafetensorsFileIsAnError() throws IOException {
        Path f = dir.resolve("windows.safetensors");
        Files.writeString(f, "hello");
        assertMessage(assertThrows(ShrinkException.class, () -> TokenWindows.read(f)), f.toString());
        Path missing = dir.resolve("missing.safetensors");
        assertMessage(assertThrows(ShrinkException.class, () -> TokenWindows.read(missing)), missing.toString());
    }

    @Test
    void writeRejectsRaggedOrEmptyWindows() {
        Path f = dir.resolve("x.safetensors");
        assertThrows(IllegalArgumentException.class, () -> TokenWindows.write(f, new int[][] {{1, 2}, {3}}));
        assertThrows(IllegalArgumentException.class, () -> TokenWindows.write(f, new int[0][]));
        assertThrows(IllegalArgumentException.class, () -> TokenWindows.write(f, new int[][] {{}}));
        assertTrue(!Files.exists(f));
    }

    @Test
    void fingerprintIsTheDocumentedDigest() {
        // python3 -c "import hashlib,struct; print(hashlib.sha256(struct.pack('<qq',2,3)
        //   + struct.pack('<6i',1,2,3,70000,-5,0)).hexdigest())"
        assertEquals("9430ed943f52431b48301433c55602a7e8bdb265e761ea5214d2ccd64690aff2",
                TokenWindows.fingerprint(new int[][] {{1, 2, 3}, {70000, -5, 0}}));
    }

    @Test
    void fingerprintChangesWithOneTokenOrTheShape() {
        int[][] a = {{1, 2, 3, 4}, {5, 6, 7, 8}};
        int[][] b = {{1, 2, 3, 4}, {5, 6, 7, 9}};
        int[][] flat = {{1, 2, 3, 4, 5, 6, 7, 8}};
        String fa = TokenWindows.fingerprint(a);
        assertEquals(64, fa.length());
        assertEquals(fa, TokenWindows.fingerprint(new int[][] {{1, 2, 3, 4}, {5, 6, 7, 8}}), "deterministic");
        assertNotEquals(fa, TokenWindows.fingerprint(b));
        assertNotEquals(fa, TokenWindows.fingerprint(flat), "same ids, other shape");
    }
}
