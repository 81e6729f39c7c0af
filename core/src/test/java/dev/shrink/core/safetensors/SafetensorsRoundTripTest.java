package dev.shrink.core.safetensors;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.shrink.core.ShrinkException;
import dev.shrink.core.tensor.DType;
import dev.shrink.core.tensor.Floats;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.stream.Stream;

import static dev.shrink.core.safetensors.SafetensorsTestSupport.assertRejected;
import static dev.shrink.core.safetensors.SafetensorsTestSupport.f32;
import static dev.shrink.core.safetensors.SafetensorsTestSupport.i32;
import static dev.shrink.core.safetensors.SafetensorsTestSupport.concat;
import static dev.shrink.core.safetensors.SafetensorsTestSupport.tempFiles;
import static dev.shrink.core.safetensors.SafetensorsTestSupport.writeRaw;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Writing and reading back safetensors files: bytes, values, layout, metadata, atomicity. */
class SafetensorsRoundTripTest {

    @TempDir
    Path tmp;

    private static final ObjectMapper MAPPER = new ObjectMapper();

    /** Random bytes for a tensor of {@code shape} and {@code dtype}. */
    private static TensorData random(Random rnd, String name, DType dtype, long... shape) {
        long n = 1;
        for (long d : shape) {
            n *= d;
        }
        byte[] b = new byte[(int) (n * dtype.byteSize())];
        rnd.nextBytes(b);
        if (dtype == DType.BOOL) {
            for (int i = 0; i < b.length; i++) {
                b[i] &= 1;
            }
        }
        return TensorData.ofBytes(name, dtype, shape, b);
    }

    private static long headerLength(Path file) throws IOException {
        byte[] all = Files.readAllBytes(file);
        return ByteBuffer.wrap(all, 0, 8).order(ByteOrder.LITTLE_ENDIAN).getLong();
    }

    @Test
    void roundTripEveryDtypeKeepsBytesOrderAndMetadata() throws IOException {
        Random rnd = new Random(42);
        List<TensorData> in = new ArrayList<>();
        DType[] all = {DType.F32, DType.F16, DType.BF16, DType.F64, DType.I64, DType.I32, DType.I16,
                DType.I8, DType.U8, DType.BOOL, DType.F8_E4M3};
        for (DType d : all) {
            in.add(random(rnd, "t." + d.safetensorsName().toLowerCase(), d, 3, 5));
        }
        in.add(random(rnd, "scalar", DType.F32));            // shape []
        in.add(random(rnd, "empty", DType.F16, 0, 7));        // zero-size, begin == end
        in.add(random(rnd, "odd", DType.U8, 3));              // 3 bytes: later tensors start unaligned
        in.add(random(rnd, "after.odd", DType.I32, 2, 2));

        Path file = tmp.resolve("model.safetensors");
        SafetensorsWriter.write(file, in, Map.of("source", "unit-test"));

        assertEquals(0, (8 + headerLength(file)) % 8, "data must start 8-byte aligned");
        try (Stream<Path> s = Files.list(tmp)) {
            assertEquals(List.of("model.safetensors"), s.map(p -> p.getFileName().toString()).toList());
        }
        assertEquals(List.of(), tempFiles(tmp));

        try (SafetensorsFile f = SafetensorsFile.open(file)) {
            assertEquals("pt", f.metadata().get("format"));
            assertEquals("unit-test", f.metadata().get("source"));
            assertEquals(in.size(), f.tensors().size());
            for (int i = 0; i < in.size(); i++) {
                TensorData want = in.get(i);
                TensorInfo got = f.tensors().get(i);
                assertEquals(want.name(), got.name(), "header order");
                assertEquals(want.dtype(), got.dtype());
                assertArrayEquals(want.shape(), got.shape());
                MemorySegment data = f.data(want.name());
                assertEquals(want.data().byteSize(), data.byteSize());
                assertEquals(-1, want.data().mismatch(data), "bytes of " + want.name());
                assertTrue(data.isReadOnly());
            }
            assertEquals(0, f.info("empty").orElseThrow().byteLength());
            assertEquals(1, f.info("scalar").orElseThrow().numel());
            assertTrue(f.info("nope").isEmpty());
        }
    }

    @Test
    void floatAndIntConversionsMatchPerElementReference() {
        int n = 2 * 8192 + 13;                                 // crosses the reader's chunk boundaries
        Random rnd = new Random(7);
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            v[i] = (float) (rnd.nextGaussian() * Math.pow(10, rnd.nextInt(7) - 3));
        }
        v[0] = Float.NaN;
        v[1] = Float.NEGATIVE_INFINITY;
        v[2] = -0f;
        int[] ints = rnd.ints(n).toArray();

        byte[] f64 = new byte[8 * 5];
        ByteBuffer.wrap(f64).order(ByteOrder.LITTLE_ENDIAN).asDoubleBuffer().put(new double[]{1.0, -2.5, 1e300, 3.14159, 0});
        byte[] i64 = new byte[8 * 3];
        ByteBuffer.wrap(i64).order(ByteOrder.LITTLE_ENDIAN).asLongBuffer().put(new long[]{-5, Integer.MAX_VALUE, Integer.MIN_VALUE});
        byte[] i16 = new byte[2 * 3];
        ByteBuffer.wrap(i16).order(ByteOrder.LITTLE_ENDIAN).asShortBuffer().put(new short[]{-32768, 1, 32767});
        byte[] e4m3 = new byte[256];
        for (int i = 0; i < 256; i++) {
            e4m3[i] = (byte) i;
        }

        Path file = tmp.resolve("values.safetensors");
        SafetensorsWriter.write(file, List.of(
                TensorData.ofFloats("f32", new long[]{n}, v, DType.F32),
                TensorData.ofFloats("f16", new long[]{n}, v, DType.F16),
                TensorData.ofFloats("bf16", new long[]{n}, v, DType.BF16),
                TensorData.ofInts("i32", new long[]{n}, ints),
                TensorData.ofBytes("f64", DType.F64, new long[]{5}, f64),
                TensorData.ofBytes("i64", DType.I64, new long[]{3}, i64),
                TensorData.ofBytes("i16", DType.I16, new long[]{3}, i16),
                TensorData.ofBytes("i8", DType.I8, new long[]{3}, new byte[]{-128, 0, 127}),
                TensorData.ofBytes("u8", DType.U8, new long[]{3}, new byte[]{(byte) 200, 0, 7}),
                TensorData.ofBytes("bool", DType.BOOL, new long[]{3}, new byte[]{1, 0, 1}),
                TensorData.ofBytes("e4m3", DType.F8_E4M3, new long[]{16, 16}, e4m3)), null);

        try (SafetensorsFile f = SafetensorsFile.open(file)) {
            float[] r32 = f.readFloats("f32");
            float[] r16 = f.readFloats("f16");
            float[] rbf = f.readFloats("bf16");
            for (int i = 0; i < n; i++) {
                assertEquals(Float.floatToIntBits(v[i]), Float.floatToIntBits(r32[i]), "f32 at " + i);
                assertEquals(Float.floatToIntBits(Floats.f16ToFloat(Floats.floatToF16(v[i]))),
                        Float.floatToIntBits(r16[i]), "f16 at " + i);
                assertEquals(Float.floatToIntBits(Floats.bf16ToFloat(Floats.floatToBf16(v[i]))),
                        Float.floatToIntBits(rbf[i]), "bf16 at " + i);
            }
            // bf16 keeps the top 16 bits: the stored value differs from the input by < 2^-8 relative
            assertEquals(v[100], rbf[100], Math.abs(v[100]) / 128);
            assertArrayEquals(ints, f.readInts("i32"));
            assertArrayEquals(new float[]{1f, -2.5f, Float.POSITIVE_INFINITY, 3.14159f, 0f}, f.readFloats("f64"));
            assertArrayEquals(new int[]{-5, Integer.MAX_VALUE, Integer.MIN_VALUE}, f.readInts("i64"));
            assertArrayEquals(new int[]{-32768, 1, 32767}, f.readInts("i16"));
            assertArrayEquals(new int[]{-128, 0, 127}, f.readInts("i8"));
            assertArrayEquals(new int[]{200, 0, 7}, f.readInts("u8"));
            assertArrayEquals(new int[]{1, 0, 1}, f.readInts("bool"));
            float[] e = f.readFloats("e4m3");
            for (int i = 0; i < 256; i++) {
                assertEquals(Float.floatToIntBits(Floats.e4m3ToFloat((byte) i)), Float.floatToIntBits(e[i]), "e4m3 " + i);
            }
            assertEquals(448f, e[0x7E]);
            assertTrue(Float.isNaN(e[0x7F]));
        }
    }

    @Test
    void i64ValueOutsideIntRangeIsRejected() {
        byte[] i64 = new byte[16];
        ByteBuffer.wrap(i64).order(ByteOrder.LITTLE_ENDIAN).asLongBuffer().put(new long[]{1, 1L << 40});
        Path file = tmp.resolve("big.safetensors");
        SafetensorsWriter.write(file, List.of(TensorData.ofBytes("ids", DType.I64, new long[]{2}, i64)), Map.of());
        try (SafetensorsFile f = SafetensorsFile.open(file)) {
            assertRejected(file, () -> f.readInts("ids"), "'ids'", "does not fit in an int");
            assertRejected(file, () -> f.readFloats("ids"), "is I64, not a float type");
        }
    }

    @Test
    void handBuiltFileIsReadInHeaderOrderWithGapsAllowed() throws IOException {
        // JSON order differs from data order; a 4-byte gap sits between the two ranges;
        // the header length (no padding) leaves the data unaligned.
        String json = "{\"b\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[12,20]},"
                + "\"a\":{\"dtype\":\"F32\",\"shape\":[1,2],\"data_offsets\":[0,8]},"
                + "\"z\":{\"dtype\":\"BF16\",\"shape\":[0],\"data_offsets\":[4,4]}}";
        byte[] data = concat(f32(1.5f, -2f), new byte[]{9, 9, 9, 9}, i32(7, -9));
        Path file = writeRaw(tmp.resolve("hand.safetensors"), json, data);
        try (SafetensorsFile f = SafetensorsFile.open(file)) {
            assertEquals(List.of("b", "a", "z"), f.tensors().stream().map(TensorInfo::name).toList());
            assertEquals(Map.of(), f.metadata());
            assertArrayEquals(new float[]{1.5f, -2f}, f.readFloats("a"));
            assertArrayEquals(new int[]{7, -9}, f.readInts("b"));
            assertArrayEquals(new float[0], f.readFloats("z"));
            TensorInfo b = f.info("b").orElseThrow();
            assertEquals(new TensorInfo("b", DType.I32, new long[]{2}, 12, 20), b);
            assertEquals(8, b.byteLength());
            assertEquals(7, f.data("b").get(ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN), 0));
        }
    }

    @Test
    void writerOutputMatchesTheFormatWhenParsedByHand() throws IOException {
        List<TensorData> in = List.of(
                TensorData.ofFloats("w", new long[]{2, 3}, new float[]{1, 2, 3, 4, 5, 6}, DType.F32),
                TensorData.ofInts("idx", new long[]{3}, new int[]{-1, 0, 65536}),
                TensorData.ofFloats("h", new long[]{3}, new float[]{1, -2, 0.5f}, DType.BF16));
        Path file = tmp.resolve("w.safetensors");
        SafetensorsWriter.write(file, in, Map.of("note", "x"));

        byte[] all = Files.readAllBytes(file);
        ByteBuffer bb = ByteBuffer.wrap(all).order(ByteOrder.LITTLE_ENDIAN);
        long h = bb.getLong(0);
        assertEquals(0, (8 + h) % 8);
        String headerText = new String(all, 8, (int) h, StandardCharsets.UTF_8);
        String trimmed = headerText.stripTrailing();
        assertTrue(trimmed.endsWith("}"));
        assertTrue(headerText.substring(trimmed.length()).chars().allMatch(c -> c == ' '), "padding is spaces");
        assertTrue(headerText.length() - trimmed.length() < 8);

        JsonNode root = MAPPER.readTree(headerText);
        Iterator<String> keys = root.fieldNames();
        assertEquals("__metadata__", keys.next(), "__metadata__ comes first");
        assertEquals(List.of("w", "idx", "h"), List.of(keys.next(), keys.next(), keys.next()));
        assertEquals("pt", root.get("__metadata__").get("format").asText());
        assertEquals("x", root.get("__metadata__").get("note").asText());

        assertEquals("F32", root.get("w").get("dtype").asText());
        assertEquals("[2,3]", root.get("w").get("shape").toString());
        assertEquals("[0,24]", root.get("w").get("data_offsets").toString());
        assertEquals("I32", root.get("idx").get("dtype").asText());
        assertEquals("[24,36]", root.get("idx").get("data_offsets").toString());
        assertEquals("BF16", root.get("h").get("dtype").asText());
        assertEquals("[36,42]", root.get("h").get("data_offsets").toString());
        assertEquals(8 + h + 42, all.length);

        int data = (int) (8 + h);
        for (int i = 0; i < 6; i++) {
            assertEquals(i + 1f, bb.getFloat(data + 4 * i));
        }
        assertEquals(-1, bb.getInt(data + 24));
        assertEquals(65536, bb.getInt(data + 32));
        assertEquals((short) 0x3F80, bb.getShort(data + 36));   // bf16 1.0
        assertEquals((short) 0xC000, bb.getShort(data + 38));   // bf16 -2.0
        assertEquals((short) 0x3F00, bb.getShort(data + 40));   // bf16 0.5
    }

    @Test
    void tensorInfoShapeHelpers() {
        TensorInfo t = new TensorInfo("x", DType.F16, new long[]{2, 3, 4}, 10, 58);
        assertEquals(24, t.numel());
        assertEquals(48, t.byteLength());
        assertArrayEquals(new int[]{2, 3, 4}, t.intShape());
        assertEquals(1, new TensorInfo("s", DType.F32, new long[0], 0, 4).numel());
        assertEquals(0, new TensorInfo("e", DType.F32, new long[]{3, 0}, 4, 4).numel());
        TensorInfo huge = new TensorInfo("h", DType.I8, new long[]{1L << 31, 1}, 0, 1L << 31);
        assertThrows(IllegalStateException.class, huge::intShape);
        long[] shape = {5};
        TensorInfo copy = new TensorInfo("c", DType.U8, shape, 0, 5);
        shape[0] = 6;
        assertArrayEquals(new long[]{5}, copy.shape(), "shape is copied");
    }

    @Test
    void writerRejectsDuplicateNamesAndSizeMismatchWithoutLeavingFiles() throws IOException {
        Path file = tmp.resolve("bad.safetensors");
        assertRejected(file, () -> SafetensorsWriter.write(file, List.of(
                TensorData.ofInts("a", new long[]{1}, new int[]{1}),
                TensorData.ofInts("a", new long[]{1}, new int[]{2})), null), "duplicate", "'a'");
        // declared shape [2, 2] of F32 needs 16 bytes, the data has 12
        assertRejected(file, () -> SafetensorsWriter.write(file, List.of(
                TensorData.ofBytes("w", DType.F32, new long[]{2, 2}, new byte[12])), null),
                "'w'", "12 bytes", "needs 16");
        assertFalse(Files.exists(file));
        assertEquals(List.of(), tempFiles(tmp));
        assertThrows(IllegalArgumentException.class,
                () -> TensorData.ofFloats("x", new long[]{3}, new float[2], DType.F32));
        assertThrows(IllegalArgumentException.class,
                () -> TensorData.ofFloats("x", new long[]{2}, new float[2], DType.I32));
    }

    @Test
    void interruptedWriteLeavesTheOldFileAndNoTemporary() throws IOException {
        Path file = tmp.resolve("model.safetensors");
        SafetensorsWriter.write(file, List.of(TensorData.ofInts("keep", new long[]{2}, new int[]{4, 2})), null);
        byte[] before = Files.readAllBytes(file);

        // The second tensor's memory is freed: the write fails after the header and the first
        // tensor have gone to the temporary file.
        MemorySegment gone;
        try (Arena arena = Arena.ofConfined()) {
            gone = arena.allocate(16);
        }
        List<TensorData> tensors = List.of(
                TensorData.ofInts("first", new long[]{4}, new int[]{1, 2, 3, 4}),
                new TensorData("second", DType.F32, new long[]{4}, gone));
        assertThrows(IllegalStateException.class, () -> SafetensorsWriter.write(file, tensors, null));

        assertArrayEquals(before, Files.readAllBytes(file), "target untouched");
        assertEquals(List.of(), tempFiles(tmp));
    }

    @Test
    void writingIntoAMissingFolderOrThroughAFileFails() throws IOException {
        Path missing = tmp.resolve("no-such-dir").resolve("model.safetensors");
        List<TensorData> one = List.of(TensorData.ofInts("a", new long[]{1}, new int[]{1}));
        assertRejected(missing, () -> SafetensorsWriter.write(missing, one, null), "cannot write", "does not exist");
        assertFalse(Files.exists(missing.getParent()));

        Path plain = Files.writeString(tmp.resolve("plain.txt"), "x");
        Path through = plain.resolve("model.safetensors");
        assertRejected(through, () -> SafetensorsWriter.write(through, one, null), "cannot write");
        assertEquals(List.of(), tempFiles(tmp));
    }

    @Test
    void writingIntoAReadOnlyFolderFailsAndLeavesNoTemporary() throws IOException {
        Path ro = Files.createDirectory(tmp.resolve("ro"));
        assertTrue(ro.toFile().setWritable(false, false));
        try {
            boolean enforced;
            try {
                Files.delete(Files.createFile(ro.resolve("probe")));
                enforced = false;                                // e.g. running as root
            } catch (IOException e) {
                enforced = true;
            }
            org.junit.jupiter.api.Assumptions.assumeTrue(enforced, "folder permissions are not enforced for this user");
            Path file = ro.resolve("model.safetensors");
            assertRejected(file, () -> SafetensorsWriter.write(file,
                    List.of(TensorData.ofInts("a", new long[]{1}, new int[]{1})), null), "cannot write");
            assertEquals(List.of(), tempFiles(ro));
            assertFalse(Files.exists(file));
        } finally {
            ro.toFile().setWritable(true, false);
        }
    }

    @Test
    void aFolderAtTheTargetIsRefusedAndKept() throws IOException {
        // The target is a non-empty folder: refused (not a regular file) before anything is written,
        // and never renamed over. Works whatever the user's privileges.
        Path target = Files.createDirectory(tmp.resolve("model.safetensors"));
        Files.writeString(target.resolve("keep.txt"), "x");
        assertRejected(target, () -> SafetensorsWriter.write(target,
                List.of(TensorData.ofInts("a", new long[]{1}, new int[]{1})), null), "cannot write");
        assertEquals(List.of(), tempFiles(tmp));
        assertTrue(Files.isDirectory(target));
        assertEquals("x", Files.readString(target.resolve("keep.txt")));
    }

    @Test
    void fullDiskBecomesOneLineErrorNamingTheTarget() {
        Path target = tmp.resolve("out").resolve("model.safetensors");
        ShrinkException e = SafetensorsWriter.writeError(target,
                new java.nio.file.FileSystemException(target + ".tmp-abc", null, "No space left on device"));
        assertEquals(target + ": cannot write: no space left on device", e.getMessage());
        ShrinkException e2 = SafetensorsWriter.writeError(target, new IOException("No space left on device"));
        assertEquals(target + ": cannot write: no space left on device", e2.getMessage());
    }

    @Test
    void metadataFormatCannotBeOverridden() {
        assertThrows(IllegalArgumentException.class, () -> SafetensorsWriter.write(tmp.resolve("m.safetensors"),
                List.of(), Map.of("format", "tf")));
        Path ok = tmp.resolve("ok.safetensors");
        SafetensorsWriter.write(ok, List.of(), Map.of("format", "pt"));
        try (SafetensorsFile f = SafetensorsFile.open(ok)) {
            assertEquals(Map.of("format", "pt"), f.metadata());
            assertEquals(List.of(), f.tensors());
        }
    }

    @Test
    void segmentsAreUnusableAfterClose() {
        Path file = tmp.resolve("c.safetensors");
        SafetensorsWriter.write(file, List.of(TensorData.ofInts("a", new long[]{1}, new int[]{3})), null);
        SafetensorsFile f = SafetensorsFile.open(file);
        MemorySegment seg = f.data("a");
        f.close();
        f.close();                                               // idempotent
        assertThrows(IllegalStateException.class, () -> seg.get(ValueLayout.JAVA_BYTE, 0));
        assertThrows(IllegalStateException.class, () -> f.data("a"));
    }
}
