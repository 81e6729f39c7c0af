package dev.shrink.eval;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.shrink.calib.EvalText;
import dev.shrink.core.ShrinkException;
import dev.shrink.core.forward.WeightSource;
import dev.shrink.core.model.ArchitectureSpec;
import dev.shrink.core.model.ModelDir;
import dev.shrink.core.ops.Backends;
import dev.shrink.core.ops.Ops;
import dev.shrink.core.safetensors.SafetensorsWriter;
import dev.shrink.core.safetensors.TensorData;
import dev.shrink.core.safetensors.TensorInfo;
import dev.shrink.core.sparse.CompressedSparseCheckpoint;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The 14M fixture pruned 2:4 by a plain loop, written once dense (by this test, with
 * SafetensorsWriter) and once as compressed-tensors sparse-24-bitmask (by
 * {@link CompressedSparseCheckpoint}): the two load to the same float weights and the same
 * perplexity, and the compressed folder is smaller on disk. Unsupported compressed-tensors configs
 * are refused naming config.json.
 */
class CompressedSparseFolderTest {

    @TempDir
    static Path tmp;

    static Path dense;
    static Path sparse;
    static Map<String, float[]> pruned;

    private static final ObjectMapper JSON = new ObjectMapper();

    @BeforeAll
    static void writeBothFolders() throws IOException {
        Path fixture = Golden.model("fixture-llama-14m");
        dense = tmp.resolve("dense");
        sparse = tmp.resolve("sparse24");
        try (ModelDir src = ModelDir.open(fixture)) {
            pruned = pruneTwoFour(src);
            // The dense folder, written here: pruned linears in the source dtype, the rest copied.
            List<TensorData> tensors = new ArrayList<>();
            for (String name : src.weights().names()) {
                TensorInfo info = src.weights().info(name);
                tensors.add(pruned.containsKey(name)
                        ? TensorData.ofFloats(name, info.shape(), pruned.get(name), info.dtype())
                        : new TensorData(name, info.dtype(), info.shape(), src.weights().data(name)));
            }
            SafetensorsWriter.writeModel(dense, tensors, 1L << 32, null);
            Files.copy(fixture.resolve("config.json"), dense.resolve("config.json"));
            Files.copy(fixture.resolve("tokenizer.json"), dense.resolve("tokenizer.json"));

            CompressedSparseCheckpoint.write(src, sparse, pruned, pruned.keySet(), "sparse-24-bitmask", null, false);
        }
    }

    /** Each decoder linear: of every 4 consecutive inputs of a row, the 2 largest |w| kept. */
    static Map<String, float[]> pruneTwoFour(ModelDir m) {
        ArchitectureSpec spec = m.spec();
        Map<String, float[]> out = new LinkedHashMap<>();
        for (int i = 0; i < m.config().layers(); i++) {
            for (ArchitectureSpec.Linear l : spec.linears()) {
                String name = spec.layer(i, l.name()) + ".weight";
                float[] W = m.weights().floats(name); // W: [N, K]
                for (int g = 0; g < W.length; g += 4) {
                    int a = 0, b = 1; // indices of the two largest |w| in the group
                    if (Math.abs(W[g + b]) > Math.abs(W[g + a])) {
                        a = 1;
                        b = 0;
                    }
                    for (int j = 2; j < 4; j++) {
                        float v = Math.abs(W[g + j]);
                        if (v > Math.abs(W[g + a])) {
                            b = a;
                            a = j;
                        } else if (v > Math.abs(W[g + b])) {
                            b = j;
                        }
                    }
                    for (int j = 0; j < 4; j++) {
                        if (j != a && j != b) {
                            W[g + j] = 0f;
                        }
                    }
                }
                out.put(name, W);
            }
        }
        return out;
    }

    @Test
    void sameWeightsAndPerplexityAsTheDenseFolderAndSmallerOnDisk() throws IOException {
        Ops ops = Backends.select("cpu", 0);
        String text = EvalText.load("heldout").text();
        PplResult rDense, rSparse;
        try (LoadedModel d = LoadedModel.open(dense, ops); LoadedModel s = LoadedModel.open(sparse, ops)) {
            WeightSource src = WeightSources.forModel(s.dir());
            CompressedSparseWeightSource cs = assertInstanceOf(CompressedSparseWeightSource.class, src);
            WeightSource plain = WeightSources.forModel(d.dir());
            for (Map.Entry<String, float[]> e : pruned.entrySet()) {
                assertTrue(cs.isCompressed(e.getKey()), e.getKey());
                assertArrayEquals(plain.shape(e.getKey()), cs.shape(e.getKey()), e.getKey());
                assertArrayEquals(e.getValue(), cs.floats(e.getKey()), e.getKey());
            }
            rDense = Perplexity.evaluate(d.lm(), "heldout", d.tokenStream(text), 128, 3, true);
            rSparse = Perplexity.evaluate(s.lm(), "heldout", s.tokenStream(text), 128, 3, true);
        }
        assertEquals(3, rSparse.windows());
        assertTrue(Double.isFinite(rSparse.ppl()), rSparse.summary());
        assertEquals(rDense.ppl(), rSparse.ppl(), 0.0, rDense.summary() + " vs " + rSparse.summary());
        long denseBytes = weightFileBytes(dense), sparseBytes = weightFileBytes(sparse);
        System.out.printf("2:4 fixture: dense %d bytes, sparse-24-bitmask %d bytes (%.1f%%); %s%n",
                denseBytes, sparseBytes, 100.0 * sparseBytes / denseBytes, rSparse.summary());
        assertTrue(sparseBytes < denseBytes * 0.75, sparseBytes + " vs " + denseBytes);
    }

    private static long weightFileBytes(Path dir) throws IOException {
        try (Stream<Path> s = Files.list(dir)) {
            long total = 0;
            for (Path p : s.filter(p -> p.getFileName().toString().endsWith(".safetensors")).toList()) {
                total += Files.size(p);
            }
            return total;
        }
    }

    /** A copy of the sparse folder's files with config.json's quantization_config edited. */
    private static Path withQuantConfig(String name, java.util.function.Consumer<ObjectNode> edit) throws IOException {
        Path dir = tmp.resolve(name);
        Files.createDirectories(dir);
        try (Stream<Path> s = Files.list(sparse)) {
            for (Path p : s.toList()) {
                Files.createSymbolicLink(dir.resolve(p.getFileName()), p);
            }
        }
        ObjectNode cfg = (ObjectNode) JSON.readTree(sparse.resolve("config.json").toFile());
        edit.accept((ObjectNode) cfg.get("quantization_config"));
        Files.delete(dir.resolve("config.json"));
        Files.writeString(dir.resolve("config.json"), JSON.writeValueAsString(cfg));
        return dir;
    }

    private static String openError(Path dir) {
        try (ModelDir m = ModelDir.open(dir)) {
            return assertThrows(ShrinkException.class, () -> WeightSources.forModel(m)).getMessage();
        }
    }

    @Test
    void quantizedOrUnknownCompressedTensorsConfigsAreRefusedNamingConfigJson() throws IOException {
        Path packed = withQuantConfig("packed", qc -> {
            qc.put("format", "pack-quantized");
            qc.putObject("config_groups").putObject("group_0").putArray("targets").add("Linear");
        });
        String m = openError(packed);
        assertTrue(m.startsWith(packed.resolve("config.json").toString()), m);
        assertTrue(m.contains("compressed-tensors quantized weights (config_groups, format 'pack-quantized', together with "
                + "a sparsity_config) are not supported"), m);

        Path unknown = withQuantConfig("unknown", qc -> ((ObjectNode) qc.get("sparsity_config")).put("format", "sparse-8-16"));
        m = openError(unknown);
        assertTrue(m.contains("sparsity_config.format 'sparse-8-16' is not supported"), m);

        Path fp8 = withQuantConfig("fp8", qc -> qc.put("format", "float-quantized"));
        m = openError(fp8);
        assertTrue(m.contains("compressed-tensors format 'float-quantized' is not supported"), m);
    }
}
