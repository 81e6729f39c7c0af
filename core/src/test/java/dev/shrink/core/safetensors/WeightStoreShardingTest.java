package dev.shrink.core.safetensors;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.shrink.core.tensor.DType;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.stream.Stream;

import static dev.shrink.core.safetensors.SafetensorsTestSupport.tempFiles;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** writeModel sharding and WeightStore reading model folders back. */
class WeightStoreShardingTest {

    @TempDir
    Path tmp;

    private static final ObjectMapper MAPPER = new ObjectMapper();

    /** A U8 tensor of {@code bytes} random bytes. */
    private static TensorData bytes(Random rnd, String name, int bytes) {
        byte[] b = new byte[bytes];
        rnd.nextBytes(b);
        return TensorData.ofBytes(name, DType.U8, new long[]{bytes}, b);
    }

    private static List<String> fileNames(Path dir) throws IOException {
        try (Stream<Path> s = Files.list(dir)) {
            return s.map(p -> p.getFileName().toString()).sorted().toList();
        }
    }

    @Test
    void shardsFollowTheGreedyRuleAndTheIndexCoversEveryTensor() throws IOException {
        Random rnd = new Random(1);
        // sizes 40, 40, 40, 150, 10, 10 with a 100-byte limit:
        // [a b] (80), [c] (c would make 120), [d] alone (150 > limit), [e f] (20)
        List<TensorData> in = List.of(bytes(rnd, "a", 40), bytes(rnd, "b", 40), bytes(rnd, "c", 40),
                bytes(rnd, "d", 150), bytes(rnd, "f.last", 10), bytes(rnd, "e.first", 10));
        Path dir = tmp.resolve("out");                          // created by writeModel
        List<Path> written = SafetensorsWriter.writeModel(dir, in, 100, Map.of("tool", "test"));

        List<String> shards = List.of("model-00001-of-00004.safetensors", "model-00002-of-00004.safetensors",
                "model-00003-of-00004.safetensors", "model-00004-of-00004.safetensors");
        List<String> expectedWritten = new ArrayList<>(shards);
        expectedWritten.add(WeightStore.INDEX_FILE);
        assertEquals(expectedWritten, written.stream().map(p -> p.getFileName().toString()).toList());
        assertEquals(expectedWritten.stream().sorted().toList(), fileNames(dir), "nothing else, no temp files");

        Map<String, List<String>> expectedShards = Map.of(
                shards.get(0), List.of("a", "b"), shards.get(1), List.of("c"),
                shards.get(2), List.of("d"), shards.get(3), List.of("f.last", "e.first"));
        for (String s : shards) {
            try (SafetensorsFile f = SafetensorsFile.open(dir.resolve(s))) {
                assertEquals(expectedShards.get(s), f.tensors().stream().map(TensorInfo::name).toList(), s);
                assertEquals("test", f.metadata().get("tool"));
                assertEquals("pt", f.metadata().get("format"));
            }
        }

        JsonNode index = MAPPER.readTree(dir.resolve(WeightStore.INDEX_FILE).toFile());
        assertEquals(290, index.get("metadata").get("total_size").asLong());
        JsonNode wm = index.get("weight_map");
        List<String> keys = new ArrayList<>();
        wm.fieldNames().forEachRemaining(keys::add);
        assertEquals(List.of("a", "b", "c", "d", "e.first", "f.last"), keys, "every tensor, names sorted");
        assertEquals(shards.get(3), wm.get("e.first").asText());
        assertEquals(shards.get(2), wm.get("d").asText());
        String text = Files.readString(dir.resolve(WeightStore.INDEX_FILE));
        assertTrue(text.contains("\n  \"weight_map\""), "pretty-printed: " + text);

        try (WeightStore ws = WeightStore.open(dir)) {
            assertEquals(in.size(), ws.names().size());
            assertEquals(List.of("a", "b", "c", "d", "f.last", "e.first"), List.copyOf(ws.names()));
            assertEquals(290, ws.totalBytes());
            for (TensorData t : in) {
                assertTrue(ws.has(t.name()));
                assertEquals(-1, t.data().mismatch(ws.data(t.name())), t.name());
                assertArrayEquals(t.shape(), ws.info(t.name()).shape());
                assertEquals(wm.get(t.name()).asText(), ws.fileOf(t.name()).getFileName().toString());
            }
            assertFalse(ws.has("lm_head.weight"));
        }
    }

    @Test
    void realisticModelRoundTripsThroughShardsIdentically() throws IOException {
        Random rnd = new Random(3);
        List<TensorData> in = new ArrayList<>();
        for (int layer = 0; layer < 3; layer++) {
            float[] w = new float[48 * 32];
            for (int i = 0; i < w.length; i++) {
                w[i] = (float) rnd.nextGaussian();
            }
            in.add(TensorData.ofFloats("model.layers." + layer + ".mlp.up_proj.weight", new long[]{48, 32}, w, DType.BF16));
            in.add(TensorData.ofFloats("model.layers." + layer + ".input_layernorm.weight", new long[]{32},
                    ones(32), DType.F32));
            in.add(TensorData.ofInts("model.layers." + layer + ".g_idx", new long[]{32}, rnd.ints(32, 0, 4).toArray()));
        }
        Path dir = Files.createDirectories(tmp.resolve("model"));
        List<Path> files = SafetensorsWriter.writeModel(dir, in, 4000, null);
        assertTrue(files.size() > 2, "sharded: " + files);
        assertTrue(Files.exists(dir.resolve(WeightStore.INDEX_FILE)));

        try (WeightStore ws = WeightStore.open(dir)) {
            JsonNode wm = MAPPER.readTree(dir.resolve(WeightStore.INDEX_FILE).toFile()).get("weight_map");
            assertEquals(wm.size(), ws.names().size());
            for (TensorData t : in) {
                assertEquals(t.dtype(), ws.info(t.name()).dtype());
                assertEquals(-1, t.data().mismatch(ws.data(t.name())), t.name());
            }
            assertArrayEquals(ones(32), ws.floats("model.layers.2.input_layernorm.weight"));
        }
    }

    @Test
    void bigLimitWritesOneFileAndNoIndex() throws IOException {
        Random rnd = new Random(2);
        List<TensorData> in = List.of(bytes(rnd, "x", 100), bytes(rnd, "y", 200));
        Path dir = Files.createDirectories(tmp.resolve("single"));
        List<Path> written = SafetensorsWriter.writeModel(dir, in, 300, null);   // total == limit
        assertEquals(List.of(dir.resolve("model.safetensors")), written);
        assertEquals(List.of("model.safetensors"), fileNames(dir));
        try (WeightStore ws = WeightStore.open(dir)) {
            assertEquals(List.of("x", "y"), List.copyOf(ws.names()));
            assertEquals(-1, in.get(1).data().mismatch(ws.data("y")));
            assertEquals(dir.resolve("model.safetensors"), ws.fileOf("x"));
        }
    }

    @Test
    void rewritingWithAnotherLayoutRemovesStaleWeightFiles() throws IOException {
        Random rnd = new Random(4);
        List<TensorData> in = List.of(bytes(rnd, "x", 100), bytes(rnd, "y", 200), bytes(rnd, "z", 50));
        Path dir = Files.createDirectories(tmp.resolve("re"));
        Files.writeString(dir.resolve("config.json"), "{}");

        SafetensorsWriter.writeModel(dir, in, 150, null);          // 3 shards
        assertEquals(3, fileNames(dir).stream().filter(n -> n.startsWith("model-")).count());
        SafetensorsWriter.writeModel(dir, in, 1 << 20, null);      // one file: the index would now lie
        assertEquals(List.of("config.json", "model.safetensors"), fileNames(dir));
        SafetensorsWriter.writeModel(dir, in, 320, null);          // 2 shards again
        assertEquals(List.of("config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                WeightStore.INDEX_FILE), fileNames(dir));
        try (WeightStore ws = WeightStore.open(dir)) {
            assertEquals(350, ws.totalBytes());
        }
    }

    @Test
    void withoutIndexAllSafetensorsFilesAreRead() throws IOException {
        Path dir = Files.createDirectories(tmp.resolve("loose"));
        SafetensorsWriter.write(dir.resolve("b.safetensors"), List.of(TensorData.ofInts("b1", new long[]{1}, new int[]{2})), null);
        SafetensorsWriter.write(dir.resolve("a.safetensors"), List.of(TensorData.ofInts("a1", new long[]{1}, new int[]{1})), null);
        Files.writeString(dir.resolve("notes.txt"), "not weights");
        try (WeightStore ws = WeightStore.open(dir)) {
            assertEquals(List.of("a1", "b1"), List.copyOf(ws.names()), "file-name order");
            assertArrayEquals(new int[]{2}, ws.ints("b1"));
            assertEquals(8, ws.totalBytes());
        }
    }

    @Test
    void writeModelRejectsDuplicatesBeforeWritingAnything() throws IOException {
        Path dir = Files.createDirectories(tmp.resolve("dups"));
        List<TensorData> in = List.of(TensorData.ofInts("w", new long[]{1}, new int[]{1}),
                TensorData.ofInts("v", new long[]{1}, new int[]{1}),
                TensorData.ofInts("w", new long[]{1}, new int[]{2}));
        SafetensorsTestSupport.assertRejected(dir, () -> SafetensorsWriter.writeModel(dir, in, 4, null), "duplicate", "'w'");
        assertEquals(List.of(), fileNames(dir));
        assertEquals(List.of(), tempFiles(dir));
        assertThrows(IllegalArgumentException.class, () -> SafetensorsWriter.writeModel(dir, in, 0, null));
    }

    private static float[] ones(int n) {
        float[] a = new float[n];
        Arrays.fill(a, 1f);
        return a;
    }
}
