package dev.shrink.core.safetensors;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.shrink.core.tensor.DType;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The real fixtures in the shared folder: a sharded bf16 LLaMA (fixture-llama-14m) and a
 * single-file F32 model (stories260K-hf). Values are checked against an independent parse of
 * the raw file bytes.
 */
class SafetensorsFixturesTest {

    private static final ObjectMapper MAPPER = new ObjectMapper();

    @TempDir
    Path tmp;

    private static Path model(String name) {
        Path dir = SafetensorsTestSupport.sharedDir().resolve("models").resolve(name);
        Assumptions.assumeTrue(Files.isDirectory(dir), "shared fixture " + dir + " is not available");
        return dir;
    }

    /** Independent reader: the raw bytes of {@code tensor} in {@code file}, located with Jackson. */
    private static ByteBuffer rawTensor(Path file, String tensor) throws IOException {
        byte[] all = Files.readAllBytes(file);
        ByteBuffer bb = ByteBuffer.wrap(all).order(ByteOrder.LITTLE_ENDIAN);
        int h = (int) bb.getLong(0);
        JsonNode entry = MAPPER.readTree(new String(all, 8, h, StandardCharsets.UTF_8)).get(tensor);
        int begin = entry.get("data_offsets").get(0).asInt();
        int end = entry.get("data_offsets").get(1).asInt();
        return ByteBuffer.wrap(all, 8 + h + begin, end - begin).slice().order(ByteOrder.LITTLE_ENDIAN);
    }

    @Test
    void shardedBf16LlamaMatchesItsIndexAndRawBits() throws IOException {
        Path dir = model("fixture-llama-14m");
        JsonNode index = MAPPER.readTree(dir.resolve(WeightStore.INDEX_FILE).toFile());
        JsonNode wm = index.get("weight_map");

        try (WeightStore ws = WeightStore.open(dir)) {
            assertEquals(wm.size(), ws.names().size(), "every tensor of the index, nothing else");
            Set<String> shardFiles = new HashSet<>();
            for (String name : ws.names()) {
                assertEquals(DType.BF16, ws.info(name).dtype(), name);
                assertEquals(wm.get(name).asText(), ws.fileOf(name).getFileName().toString(), name);
                shardFiles.add(ws.fileOf(name).getFileName().toString());
            }
            assertEquals(3, shardFiles.size());
            assertEquals(index.get("metadata").get("total_size").asLong(), ws.totalBytes());

            assertArrayEquals(new long[]{8192, 384}, ws.info("model.embed_tokens.weight").shape());
            assertArrayEquals(new long[]{384, 384}, ws.info("model.layers.0.self_attn.q_proj.weight").shape());
            assertArrayEquals(new int[]{128, 384}, ws.info("model.layers.0.self_attn.k_proj.weight").intShape());
            assertFalse(ws.has("lm_head.weight"), "tied embeddings: no lm_head");

            String q = "model.layers.0.self_attn.q_proj.weight";
            float[] floats = ws.floats(q);
            assertEquals(384 * 384, floats.length);
            assertBf16(rawTensor(ws.fileOf(q), q), floats);

            String emb = "model.embed_tokens.weight";
            float[] e = ws.floats(emb);
            assertBf16(rawTensor(ws.fileOf(emb), emb), e);
            boolean anyNonZero = false;
            for (float v : e) {
                assertTrue(Float.isFinite(v));
                anyNonZero |= v != 0;
            }
            assertTrue(anyNonZero, "trained weights are not all zero");
        }
    }

    @Test
    void singleFileF32ModelMatchesRawFloats() throws IOException {
        Path dir = model("stories260K-hf");
        Path file = dir.resolve("model.safetensors");
        try (SafetensorsFile f = SafetensorsFile.open(file)) {
            assertEquals("pt", f.metadata().get("format"));
            for (TensorInfo t : f.tensors()) {
                assertEquals(DType.F32, t.dtype(), t.name());
            }
            TensorInfo emb = f.info("model.embed_tokens.weight").orElseThrow();
            assertArrayEquals(new long[]{512, 64}, emb.shape());
            float[] got = f.readFloats("model.embed_tokens.weight");
            ByteBuffer raw = rawTensor(file, "model.embed_tokens.weight");
            assertEquals(raw.remaining() / 4, got.length);
            for (int i = 0; i < got.length; i++) {
                assertEquals(raw.getFloat(4 * i), got[i], "element " + i);
            }
        }
        try (WeightStore ws = WeightStore.open(dir)) {
            assertEquals(List.of(file), ws.names().stream().map(ws::fileOf).distinct().toList());
            assertTrue(ws.has("model.layers.0.input_layernorm.weight"));
        }
    }

    @Test
    void fixtureRewrittenIntoOtherShardsIsIdentical() throws IOException {
        Path dir = model("fixture-llama-14m");
        Path out = tmp.resolve("copy");
        try (WeightStore src = WeightStore.open(dir)) {
            List<TensorData> tensors = new ArrayList<>();
            for (String name : src.names()) {
                TensorInfo t = src.info(name);
                tensors.add(new TensorData(name, t.dtype(), t.shape(), src.data(name)));
            }
            List<Path> files = SafetensorsWriter.writeModel(out, tensors, 8L << 20, Map.of());
            assertTrue(files.size() >= 4, "several 8 MB shards plus the index: " + files);
            try (WeightStore copy = WeightStore.open(out)) {
                assertEquals(List.copyOf(src.names()), List.copyOf(copy.names()));
                assertEquals(src.totalBytes(), copy.totalBytes());
                for (String name : src.names()) {
                    assertEquals(-1, src.data(name).mismatch(copy.data(name)), name);
                }
            }
        }
    }

    /** Checks floats against bf16 bits decoded by hand: the float whose top half is the stored short. */
    private static void assertBf16(ByteBuffer raw, float[] floats) {
        assertEquals(raw.remaining() / 2, floats.length);
        for (int i = 0; i < floats.length; i++) {
            int bits = (raw.getShort(2 * i) & 0xFFFF) << 16;
            assertEquals(Float.intBitsToFloat(bits), floats[i], "element " + i);
        }
    }
}
