package dev.shrink.prune;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.shrink.core.ShrinkException;
import dev.shrink.core.forward.BlockWeights;
import dev.shrink.core.model.ArchitectureSpec;
import dev.shrink.core.model.ModelDir;
import dev.shrink.core.ops.Backends;
import dev.shrink.core.ops.Ops;
import dev.shrink.core.safetensors.TensorInfo;
import dev.shrink.core.sparse.PrunedCheckpoint;
import dev.shrink.core.sparse.SparsityPattern;
import dev.shrink.core.sparse.SparsityRecord;
import dev.shrink.eval.LoadedModel;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The folder {@link PrunedCheckpoint} writes: every untouched tensor byte for byte, pruned linears in
 * the source's dtype with exact zeros, config.json = the source's plus shrink.sparsity (other shrink
 * keys kept), the other files copied; it reads back through eval's {@link LoadedModel}. And nothing
 * is left behind when it refuses.
 */
class PrunedCheckpointTest {
    @TempDir
    Path tmp;

    static final Ops OPS = Backends.select("auto", 0);
    static final ObjectMapper JSON = new ObjectMapper();

    /** A copy of a shared model whose config.json carries another stage's key under "shrink". */
    Path copyWithShrinkKey(Path src) throws IOException {
        Path dst = tmp.resolve("src-" + src.getFileName());
        Files.createDirectories(dst);
        try (Stream<Path> s = Files.list(src)) {
            for (Path p : s.toList()) {
                Files.copy(p, dst.resolve(p.getFileName()));
            }
        }
        Path c = dst.resolve("config.json");
        c.toFile().setWritable(true);
        ObjectNode cfg = (ObjectNode) JSON.readTree(c.toFile());
        cfg.putObject("shrink").putObject("distill").put("steps", 400);
        Files.writeString(c, cfg.toPrettyString());
        return dst;
    }

    void assertFolderIsThePrunedModel(Path srcDir, Path out, PruneStage.Result r) throws IOException {
        try (ModelDir src = ModelDir.open(srcDir); ModelDir back = ModelDir.open(out)) {
            assertEquals(src.weights().names(), back.weights().names(), "same tensors, same order");
            for (String name : src.weights().names()) {
                TensorInfo a = src.weights().info(name), b = back.weights().info(name);
                assertEquals(a.dtype(), b.dtype(), name);
                assertEquals(Arrays.toString(a.shape()), Arrays.toString(b.shape()), name);
                float[] pruned = r.weights().get(name);
                if (pruned == null) {
                    assertEquals(-1, src.weights().data(name).mismatch(back.weights().data(name)), name + " byte for byte");
                } else {
                    float[] got = back.weights().floats(name);
                    float[] orig = src.weights().floats(name);
                    long zeros = 0;
                    for (int i = 0; i < got.length; i++) {
                        assertEquals(Float.floatToIntBits(pruned[i]), Float.floatToIntBits(got[i]), name + " element " + i);
                        if (got[i] == 0f) {
                            zeros++;
                        } else {
                            assertEquals(orig[i], got[i], "kept values unchanged");
                        }
                    }
                    String linear = name.substring(0, name.length() - ".weight".length());
                    assertEquals(r.record().layers().get(linear), (double) zeros / got.length, name);
                }
            }
            SparsityRecord rec = SparsityRecord.read(back);
            assertNotNull(rec);
            assertEquals(r.record(), rec);
            JsonNode cfg = back.config().raw();
            assertEquals(400, cfg.at("/shrink/distill/steps").asInt(), "other shrink keys kept");
            ObjectNode withoutShrink = cfg.deepCopy();
            withoutShrink.remove("shrink");
            ObjectNode srcWithout = src.config().raw().deepCopy();
            srcWithout.remove("shrink");
            assertEquals(srcWithout, withoutShrink, "every other config key kept");
            assertEquals(Files.readString(srcDir.resolve("tokenizer.json")), Files.readString(out.resolve("tokenizer.json")));
            JsonNode report = JSON.readTree(out.resolve("shrink-report.json").toFile());
            assertEquals(r.layers().size(), report.get("layers").size());
            assertEquals(r.record().toJson(), report.get("sparsity"));
        }
        try (Stream<Path> s = Files.list(out.getParent())) {
            assertEquals(0, s.filter(p -> p.getFileName().toString().contains(".tmp-")).count(), "no temp folder left");
        }
    }

    @Test
    void bf16FixtureTwoOfFourReadsBackWithExactZeros() throws IOException {
        Path src = copyWithShrinkKey(PruneTestSupport.fixture());
        Path out = tmp.resolve("out/p24");
        PruneStage.Config cfg = new PruneStage.Config("magnitude", new SparsityPattern.NofM(2, 4), null, List.of(),
                List.of("*down_proj"), 8);
        PruneStage.Result r = PruneStage.compress(src, out, cfg, null, OPS, true, false);
        assertFolderIsThePrunedModel(src, out, r);
        // eval's loader sees the zeros (the blocks it runs hold the pruned weights)
        try (LoadedModel m = LoadedModel.open(out, OPS)) {
            ArchitectureSpec spec = m.dir().spec();
            BlockWeights b = m.lm().blocks().get(2);
            assertEquals(0.5, Masks.zeros(b.weight("mlp.up_proj")) / (double) b.weight("mlp.up_proj").length);
            assertEquals(0, Masks.zeros(b.weight("mlp.down_proj")), "ignored: untouched");
            assertEquals("2:4", SparsityRecord.read(m.dir()).pattern().label());
            assertEquals(36, SparsityRecord.read(m.dir()).layers().size());
            assertFalse(SparsityRecord.read(m.dir()).layers().containsKey(spec.layer(0, "mlp.down_proj")));
        }
    }

    @Test
    void f32StoriesRowScopeWritesF32() throws IOException {
        Path src = copyWithShrinkKey(PruneTestSupport.stories());
        Path out = tmp.resolve("s");
        PruneStage.Result r = PruneStage.compress(src, out, new PruneStage.Config("magnitude",
                new SparsityPattern.Unstructured(0.7), "row", null, null, 8), null, OPS, true, false);
        assertFolderIsThePrunedModel(src, out, r);
        try (ModelDir back = ModelDir.open(out)) {
            assertEquals("F32", back.weights().info("model.layers.0.mlp.up_proj.weight").dtype().safetensorsName());
        }
        // a second run refuses the non-empty folder, then replaces it with --overwrite
        PruneStage.Config half = new PruneStage.Config("magnitude", new SparsityPattern.Unstructured(0.5), null, null, null, 8);
        ShrinkException e = assertThrows(ShrinkException.class, () -> PruneStage.compress(src, out, half, null, OPS, true, false));
        assertTrue(e.getMessage().contains("not empty"), e.getMessage());
        PruneStage.compress(src, out, half, null, OPS, true, true);
        try (ModelDir back = ModelDir.open(out)) {
            assertEquals(0.5, SparsityRecord.read(back).ratio());
        }
    }

    @Test
    void quantizedSourceIsRefusedAndNothingIsWritten() throws IOException {
        Path src = copyWithShrinkKey(PruneTestSupport.stories());
        Path c = src.resolve("config.json");
        ObjectNode cfg = (ObjectNode) JSON.readTree(c.toFile());
        cfg.putObject("quantization_config").put("quant_method", "gptq");
        Files.writeString(c, cfg.toPrettyString());
        Path out = tmp.resolve("q");
        ShrinkException e = assertThrows(ShrinkException.class, () -> PruneStage.compress(src, out,
                new PruneStage.Config("magnitude", new SparsityPattern.NofM(2, 4), null, null, null, 8), null, OPS, true, false));
        assertTrue(e.getMessage().contains("config.json") && e.getMessage().contains("quantized"), e.getMessage());
        assertFalse(Files.exists(out));
    }

    @Test
    void badReplacementLeavesNothingBehind() throws IOException {
        Path out = tmp.resolve("bad");
        SparsityRecord rec = new SparsityRecord("magnitude", new SparsityPattern.NofM(2, 4), null, Map.of());
        try (ModelDir src = ModelDir.open(PruneTestSupport.stories())) {
            ShrinkException size = assertThrows(ShrinkException.class, () -> PrunedCheckpoint.write(src, out,
                    Map.of("model.layers.0.mlp.up_proj.weight", new float[5]), rec, null, false));
            assertTrue(size.getMessage().contains("model.layers.0.mlp.up_proj.weight"), size.getMessage());
            ShrinkException missing = assertThrows(ShrinkException.class, () -> PrunedCheckpoint.write(src, out,
                    Map.of("model.layers.0.mlp.nope.weight", new float[5]), rec, null, false));
            assertTrue(missing.getMessage().contains("no tensor 'model.layers.0.mlp.nope.weight'"), missing.getMessage());
            // a report Jackson cannot serialize fails mid-write: the temp folder is removed
            Object unserializable = new Object() {
                public Object getSelf() {
                    return this;
                }
            };
            assertThrows(ShrinkException.class, () -> PrunedCheckpoint.write(src, out, Map.of(), rec, unserializable, false));
        }
        try (Stream<Path> s = Files.list(tmp)) {
            assertEquals(List.of(), s.toList(), "no folder, no temp folder");
        }
    }
}
