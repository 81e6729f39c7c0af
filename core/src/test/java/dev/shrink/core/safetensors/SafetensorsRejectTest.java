package dev.shrink.core.safetensors;

import dev.shrink.core.tensor.DType;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;

import static dev.shrink.core.safetensors.SafetensorsTestSupport.assertRejected;
import static dev.shrink.core.safetensors.SafetensorsTestSupport.f32;
import static dev.shrink.core.safetensors.SafetensorsTestSupport.i32;
import static dev.shrink.core.safetensors.SafetensorsTestSupport.writeRaw;
import static org.junit.jupiter.api.Assertions.assertEquals;

/** Every malformed input is rejected with a one-line ShrinkException naming the file and the problem. */
class SafetensorsRejectTest {

    @TempDir
    Path tmp;

    /** A header entry. */
    private static String entry(String name, String dtype, String shape, long begin, long end) {
        return "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape
                + ",\"data_offsets\":[" + begin + "," + end + "]}";
    }

    private Path raw(String json, byte[] data) throws IOException {
        return writeRaw(tmp.resolve("model.safetensors"), json, data);
    }

    private void assertOpenRejected(Path file, String... words) {
        assertRejected(file, () -> SafetensorsFile.open(file).close(), words);
    }

    // ---- single files ------------------------------------------------------------------------

    @Test
    void truncatedData() throws IOException {
        Path file = tmp.resolve("cut.safetensors");
        SafetensorsWriter.write(file, List.of(
                TensorData.ofFloats("a", new long[]{4}, new float[]{1, 2, 3, 4}, DType.F32),
                TensorData.ofFloats("b", new long[]{4}, new float[]{5, 6, 7, 8}, DType.F32)), null);
        byte[] all = Files.readAllBytes(file);
        SafetensorsFile.open(file).close();                      // intact file is fine
        Files.write(file, Arrays.copyOf(all, all.length - 3));
        assertOpenRejected(file, "'b'", "truncated");
    }

    @Test
    void fileShorterThanEightBytes() throws IOException {
        Path file = Files.write(tmp.resolve("tiny.safetensors"), new byte[]{1, 2, 3, 4, 5});
        assertOpenRejected(file, "truncated", "5 bytes");
        Path empty = Files.write(tmp.resolve("empty.safetensors"), new byte[0]);
        assertOpenRejected(empty, "truncated");
    }

    @Test
    void headerLengthPastTheEnd() throws IOException {
        byte[] header = "{}".getBytes(StandardCharsets.UTF_8);
        Path file = writeRaw(tmp.resolve("long.safetensors"), 1000, header, new byte[20]);
        assertOpenRejected(file, "header length 1000", "past the end");
    }

    @Test
    void headerLengthAbove100MB() throws IOException {
        byte[] header = "{}".getBytes(StandardCharsets.UTF_8);
        Path file = writeRaw(tmp.resolve("huge.safetensors"), 200_000_000L, header, new byte[0]);
        assertOpenRejected(file, "200000000", "100 MB");
        Path neg = writeRaw(tmp.resolve("u64.safetensors"), -1L, header, new byte[0]);
        assertOpenRejected(neg, "18446744073709551615", "100 MB");
    }

    @Test
    void nonJsonHeader() throws IOException {
        assertOpenRejected(raw("{\"a\": {\"dtype\": \"F32\", oops", new byte[0]), "not valid JSON");
        assertOpenRejected(raw("[1, 2]", new byte[0]), "not a JSON object");
        assertOpenRejected(raw("{} {}", new byte[0]), "not valid JSON");
        assertOpenRejected(raw("{\"a\": 1}", new byte[0]), "'a'", "not a JSON object");
    }

    @Test
    void headerWithByteOrderMarkOrInUtf16() throws IOException {
        String json = "{" + entry("a", "F32", "[1]", 0, 4) + "}";
        SafetensorsFile.open(raw(json, f32(1))).close();                       // plain UTF-8 is fine
        byte[] utf8 = json.getBytes(StandardCharsets.UTF_8);
        byte[] bom = SafetensorsTestSupport.concat(new byte[]{(byte) 0xEF, (byte) 0xBB, (byte) 0xBF}, utf8);
        Path withBom = writeRaw(tmp.resolve("bom.safetensors"), bom.length, bom, f32(1));
        assertOpenRejected(withBom, "not a JSON object starting with '{'", "UTF-8");
        for (var cs : List.of(StandardCharsets.UTF_16LE, StandardCharsets.UTF_16BE, StandardCharsets.UTF_16)) {
            byte[] h = json.getBytes(cs);
            Path f = writeRaw(tmp.resolve("utf16-" + cs.name() + ".safetensors"), h.length, h, f32(1));
            assertOpenRejected(f, "not a JSON object starting with '{'");
        }
        // invalid UTF-8 inside a name is refused, not decoded to replacement characters
        byte[] bad = json.replace("\"a\"", "\"a\u00e9\"").getBytes(StandardCharsets.ISO_8859_1);
        Path latin1 = writeRaw(tmp.resolve("latin1.safetensors"), bad.length, bad, f32(1));
        assertOpenRejected(latin1, "header", "not valid UTF-8");
        // trailing spaces pad a header, as the format allows
        byte[] padded = (json + "    ").getBytes(StandardCharsets.UTF_8);
        SafetensorsFile.open(writeRaw(tmp.resolve("pad.safetensors"), padded.length, padded, f32(1))).close();
    }

    @Test
    void duplicateNames() throws IOException {
        String json = "{" + entry("a", "F32", "[1]", 0, 4) + "," + entry("a", "F32", "[1]", 4, 8) + "}";
        assertOpenRejected(raw(json, f32(1, 2)), "duplicate", "'a'");
        // a duplicate key inside an entry is also refused (Jackson would keep the last one)
        String inner = "{\"a\":{\"dtype\":\"F32\",\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
        assertOpenRejected(raw(inner, f32(1)), "'a'", "duplicate key 'dtype'");
        String meta = "{\"__metadata__\":{\"format\":\"pt\",\"format\":\"np\"}}";
        assertOpenRejected(raw(meta, new byte[0]), "duplicate key 'format'");
    }

    @Test
    void unknownDtype() throws IOException {
        assertOpenRejected(raw("{" + entry("w", "F4", "[2]", 0, 1) + "}", new byte[1]), "'w'", "unknown dtype 'F4'");
    }

    @Test
    void offsetsOutOfRange() throws IOException {
        String json = "{" + entry("a", "F32", "[1]", 0, 4) + "," + entry("far", "F32", "[1]", 1000, 1004) + "}";
        assertOpenRejected(raw(json, f32(1)), "'far'", "out of range");
        assertOpenRejected(raw("{" + entry("rev", "F32", "[0]", 4, 0) + "}", f32(1)), "'rev'", "out of order");
        assertOpenRejected(raw("{" + entry("neg", "F32", "[1]", -4, 0) + "}", f32(1)), "'neg'", "data_offsets");
        assertOpenRejected(raw("{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", f32(1)),
                "'x'", "data_offsets");
    }

    @Test
    void overlappingRanges() throws IOException {
        // JSON order is irrelevant: sorted by begin, [4, 12) overlaps [0, 8)
        String json = "{" + entry("b", "F32", "[2]", 4, 12) + "," + entry("a", "F32", "[2]", 0, 8) + "}";
        assertOpenRejected(raw(json, f32(1, 2, 3)), "overlapping", "'a'", "'b'");
        // the same range twice
        String twice = "{" + entry("a", "F32", "[2]", 0, 8) + "," + entry("b", "I32", "[2]", 0, 8) + "}";
        assertOpenRejected(raw(twice, f32(1, 2)), "overlapping");
    }

    @Test
    void byteLengthDiffersFromShapeTimesDtype() throws IOException {
        Path file = raw("{" + entry("a.weight", "F32", "[2,4]", 0, 24) + "}", new byte[24]);
        assertRejected(file, () -> SafetensorsFile.open(file),
                "tensor 'a.weight' has 24 bytes but shape [2, 4] of F32 needs 32");
        assertOpenRejected(raw("{" + entry("s", "F32", "[-2]", 0, 8) + "}", new byte[8]), "'s'", "shape");
        assertOpenRejected(raw("{" + entry("s", "F32", "[1.5]", 0, 8) + "}", new byte[8]), "'s'", "shape");
    }

    @Test
    void metadataWithNonStringValue() throws IOException {
        String json = "{\"__metadata__\":{\"format\":\"pt\",\"step\":3}," + entry("a", "F32", "[1]", 0, 4) + "}";
        assertOpenRejected(raw(json, f32(1)), "__metadata__", "'step'", "not a string");
        assertOpenRejected(raw("{\"__metadata__\":[\"pt\"]}", new byte[0]), "__metadata__", "not a JSON object");
    }

    @Test
    void ioErrorsAreWrapped() throws IOException {
        assertOpenRejected(tmp.resolve("absent.safetensors"), "file not found");
        Path dir = Files.createDirectory(tmp.resolve("folder.safetensors"));
        assertOpenRejected(dir, "cannot read");
    }

    @Test
    void readFloatsOnIntegerTensorAndReadIntsOnFloatTensor() throws IOException {
        String json = "{" + entry("ids", "I32", "[2]", 0, 8) + "," + entry("w", "F32", "[1]", 8, 12) + "}";
        Path file = raw(json, concat(i32(1, 2), f32(3)));
        try (SafetensorsFile f = SafetensorsFile.open(file)) {
            assertRejected(file, () -> f.readFloats("ids"), "tensor 'ids' is I32, not a float type");
            assertRejected(file, () -> f.readInts("w"), "tensor 'w' is F32, not an integer type");
            assertRejected(file, () -> f.readFloats("nope"), "no tensor 'nope'");
        }
    }

    private static byte[] concat(byte[] a, byte[] b) {
        return SafetensorsTestSupport.concat(a, b);
    }

    // ---- model folders -----------------------------------------------------------------------

    /** A folder with shard x.safetensors holding tensor "a", and an index whose weight_map is {@code map}. */
    private Path folderWithIndex(String map) throws IOException {
        Path dir = Files.createDirectories(tmp.resolve("m"));
        SafetensorsWriter.write(dir.resolve("x.safetensors"),
                List.of(TensorData.ofInts("a", new long[]{1}, new int[]{1})), null);
        Files.writeString(dir.resolve(WeightStore.INDEX_FILE),
                "{\"metadata\": {\"total_size\": 4}, \"weight_map\": " + map + "}");
        return dir;
    }

    @Test
    void indexWithParentPath() throws IOException {
        Path dir = folderWithIndex("{\"a\": \"../x.safetensors\"}");
        Files.copy(dir.resolve("x.safetensors"), tmp.resolve("x.safetensors"));   // exists, still refused
        assertRejected(dir.resolve(WeightStore.INDEX_FILE), () -> WeightStore.open(dir),
                "'../x.safetensors'", "not a plain file name");
    }

    @Test
    void indexWithSubfolderPath() throws IOException {
        Path dir = folderWithIndex("{\"a\": \"sub/x.safetensors\"}");
        Files.createDirectories(dir.resolve("sub"));
        Files.copy(dir.resolve("x.safetensors"), dir.resolve("sub/x.safetensors"));
        assertRejected(dir.resolve(WeightStore.INDEX_FILE), () -> WeightStore.open(dir),
                "'sub/x.safetensors'", "not a plain file name");
        Path abs = folderWithIndexReplacing(dir, "{\"a\": \"" + dir.resolve("x.safetensors").toAbsolutePath() + "\"}");
        assertRejected(abs, () -> WeightStore.open(dir), "not a plain file name");
    }

    private static Path folderWithIndexReplacing(Path dir, String map) throws IOException {
        return Files.writeString(dir.resolve(WeightStore.INDEX_FILE), "{\"weight_map\": " + map + "}");
    }

    @Test
    void indexWithMissingFile() throws IOException {
        Path dir = folderWithIndex("{\"a\": \"x.safetensors\", \"b\": \"y.safetensors\"}");
        assertRejected(dir.resolve(WeightStore.INDEX_FILE), () -> WeightStore.open(dir),
                "'y.safetensors'", "does not exist");
    }

    @Test
    void indexNamesTensorMissingFromItsShard() throws IOException {
        Path dir = folderWithIndex("{\"a\": \"x.safetensors\", \"ghost\": \"x.safetensors\"}");
        assertRejected(dir.resolve(WeightStore.INDEX_FILE), () -> WeightStore.open(dir),
                "'ghost'", "no such tensor");
    }

    @Test
    void indexThatIsNotJsonOrHasNoWeightMap() throws IOException {
        Path dir = folderWithIndex("{\"a\": \"x.safetensors\"}");
        Path index = dir.resolve(WeightStore.INDEX_FILE);
        Files.writeString(index, "{\"weight_map\": {\"a\": \"x.safetensors\", \"a\": \"x.safetensors\"}}");
        assertRejected(index, () -> WeightStore.open(dir), "not valid JSON");
        Files.writeString(index, "{\"metadata\": {}}");
        assertRejected(index, () -> WeightStore.open(dir), "weight_map");
    }

    @Test
    void sameTensorInTwoFilesWithoutIndex() throws IOException {
        Path dir = Files.createDirectories(tmp.resolve("dup"));
        SafetensorsWriter.write(dir.resolve("a.safetensors"), List.of(TensorData.ofInts("w", new long[]{1}, new int[]{1})), null);
        SafetensorsWriter.write(dir.resolve("b.safetensors"), List.of(TensorData.ofInts("w", new long[]{1}, new int[]{2})), null);
        assertRejected(dir, () -> WeightStore.open(dir), "'w'", "a.safetensors", "b.safetensors");
    }

    @Test
    void folderWithoutWeightsOrMissing() throws IOException {
        Path dir = Files.createDirectories(tmp.resolve("nothing"));
        Files.writeString(dir.resolve("config.json"), "{}");
        assertRejected(dir, () -> WeightStore.open(dir), "no *.safetensors weights found");
        Path missing = tmp.resolve("missing");
        assertRejected(missing, () -> WeightStore.open(missing), "not found");
    }

    @Test
    void unknownTensorInStore() throws IOException {
        Path dir = Files.createDirectories(tmp.resolve("one"));
        SafetensorsWriter.write(dir.resolve("model.safetensors"),
                List.of(TensorData.ofInts("w", new long[]{1}, new int[]{1})), null);
        try (WeightStore ws = WeightStore.open(dir)) {
            assertEquals(dir + ": no tensor 'lm_head.weight' in the weights",
                    assertRejected(dir, () -> ws.info("lm_head.weight")).getMessage());
            assertRejected(dir, () -> ws.floats("lm_head.weight"), "no tensor");
        }
    }

    @Test
    void plainFileNameRule() {
        for (String ok : List.of("model.safetensors", "model-00001-of-00002.safetensors", "..x.safetensors")) {
            assertEquals(true, WeightStore.isPlainFileName(ok), ok);
        }
        for (String bad : List.of("", ".", "..", "../x.safetensors", "sub/x.safetensors", "/abs/x.safetensors",
                "a\\b.safetensors", "x\0.safetensors")) {
            assertEquals(false, WeightStore.isPlainFileName(bad), bad);
        }
    }
}
