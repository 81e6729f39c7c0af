package dev.shrink.pipeline;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shrink.pipeline.Recipe.CalibSettings;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Cache keys: equal specs share a key; any option, the input or the calibration changes it. */
class KeysTest {
    @TempDir
    Path tmp;

    static final CalibSettings C = new CalibSettings("c4", null, 16, 512, 0, null, "random");

    static StageSpec.Gptq gptq(String method, int bits, int group, boolean sym, boolean act, boolean stat, boolean seq,
                               double damp, boolean mse, int block, int batch) {
        return new StageSpec.Gptq(method, bits, group, sym, act, stat, seq, damp, mse, block, batch, C);
    }

    @Test
    void sameSpecSameKeyAnyOptionChangeAnotherKey() {
        StageSpec base = gptq("gptq", 4, 128, true, false, false, true, 0.01, false, 128, 8);
        String k = Keys.stageKey("in", base, "fp");
        assertEquals(k, Keys.stageKey("in", gptq("gptq", 4, 128, true, false, false, true, 0.01, false, 128, 8), "fp"));
        assertEquals(64, k.length());
        List<StageSpec> variants = List.of(
                gptq("rtn", 4, 128, true, false, false, true, 0.01, false, 128, 8),
                gptq("gptq", 8, 128, true, false, false, true, 0.01, false, 128, 8),
                gptq("gptq", 4, 64, true, false, false, true, 0.01, false, 128, 8),
                gptq("gptq", 4, 128, false, false, false, true, 0.01, false, 128, 8),
                gptq("gptq", 4, 128, true, true, false, true, 0.01, false, 128, 8),
                gptq("gptq", 4, 128, true, true, true, true, 0.01, false, 128, 8),
                gptq("gptq", 4, 128, true, false, false, false, 0.01, false, 128, 8),
                gptq("gptq", 4, 128, true, false, false, true, 0.02, false, 128, 8),
                gptq("gptq", 4, 128, true, false, false, true, 0.01, true, 128, 8),
                gptq("gptq", 4, 128, true, false, false, true, 0.01, false, 64, 8),
                gptq("gptq", 4, 128, true, false, false, true, 0.01, false, 128, 4),
                new StageSpec.Awq(4, 128, true, true, false, "gemm", 8, C),
                new StageSpec.Awq(4, 128, true, true, false, "fake", 8, C),
                new StageSpec.Awq(4, 128, false, true, false, "gemm", 8, C),
                new StageSpec.Prune("wanda", "2:4", 0.5, null, List.of(), List.of(), 8, C),
                new StageSpec.Prune("wanda", "unstructured", 0.5, null, List.of(), List.of(), 8, C),
                new StageSpec.Prune("wanda", "2:4", 0.5, "row", List.of(), List.of(), 8, C),
                new StageSpec.Prune("wanda", "2:4", 0.5, null, List.of(), List.of("down_proj"), 8, C));
        Set<String> keys = new HashSet<>(List.of(k));
        for (StageSpec v : variants) {
            assertTrue(keys.add(Keys.stageKey("in", v, "fp")), "a distinct key for " + v.describe());
        }
        assertNotEquals(k, Keys.stageKey("other input", base, "fp"), "the input model is part of the key");
        assertNotEquals(k, Keys.stageKey("in", base, "other windows"), "the calibration windows are part of the key");
        assertNotEquals(k, Keys.stageKey("in", base, null));
    }

    @Test
    void calibrationSettingsOnlyMatterThroughTheWindows() {
        StageSpec a = gptq("gptq", 4, 128, true, false, false, true, 0.01, false, 128, 8);
        StageSpec b = new StageSpec.Gptq("gptq", 4, 128, true, false, false, true, 0.01, false, 128, 8,
                new CalibSettings("wikitext2", null, 16, 512, 0, null, "random"));
        assertEquals(Keys.stageKey("in", a, "fp"), Keys.stageKey("in", b, "fp"),
                "two settings that draw the same windows share the output");
    }

    @Test
    void canonicalJsonSortsKeys() {
        Map<String, Object> inner = new java.util.LinkedHashMap<>();
        inner.put("d", null);
        inner.put("c", List.of(2, "x"));
        Map<String, Object> outer = new java.util.LinkedHashMap<>();
        outer.put("b", inner);
        outer.put("a", 1);
        assertEquals("{\"a\":1,\"b\":{\"c\":[2,\"x\"],\"d\":null}}", Keys.canonicalJson(outer));
    }

    @Test
    void modelKeyCoversEveryByteButNotTheFolder() throws IOException {
        Path a = Files.createDirectories(tmp.resolve("a"));
        Files.writeString(a.resolve("config.json"), "{\"x\": 1}");
        byte[] weights = new byte[4096];
        weights[0] = 8;
        Files.write(a.resolve("model.safetensors"), weights);
        Files.writeString(a.resolve("shrink-report.json"), "{\"seconds\": 1}");
        Files.writeString(a.resolve("notes.md"), "not part of the model");
        String k = Keys.modelKey(a);

        Path b = Files.createDirectories(tmp.resolve("elsewhere/b"));
        Files.copy(a.resolve("config.json"), b.resolve("config.json"));
        Files.copy(a.resolve("model.safetensors"), b.resolve("model.safetensors"));
        assertEquals(k, Keys.modelKey(b), "the same bytes elsewhere, without the report and other files: same key");

        weights[4000] = 1; // a data byte, far from the header
        Files.write(b.resolve("model.safetensors"), weights);
        assertNotEquals(k, Keys.modelKey(b), "a changed weight changes the key");
        Files.write(b.resolve("model.safetensors"), new byte[4096]);
        weights[4000] = 0;
        weights[0] = 8;
        Files.write(b.resolve("model.safetensors"), weights);
        assertEquals(k, Keys.modelKey(b));
        Files.writeString(b.resolve("tokenizer.json"), "{}");
        assertNotEquals(k, Keys.modelKey(b), "the tokenizer is part of the model");
    }
}
