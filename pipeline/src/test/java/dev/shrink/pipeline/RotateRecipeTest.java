package dev.shrink.pipeline;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shrink.core.ShrinkException;
import dev.shrink.core.transform.RotatedModel;
import java.util.List;
import org.junit.jupiter.api.Test;

/** {@code rotate: true} [{@code rotate_seed: N}, {@code rotate_heads: B}] of gptq and awq stages: parsed, part of the cache key only when on. */
class RotateRecipeTest {

    @Test
    void rotateIsAStageOptionOfGptqAndAwq() {
        Recipe r = RecipeParser.parse("""
                model: m
                pipelines:
                  - {name: plain, stages: [{gptq: {method: rtn}}]}
                  - {name: rot, stages: [{gptq: {method: rtn, rotate: true}}]}
                  - {name: rot5, stages: [{gptq: {method: rtn, rotate: true, rotate_seed: 5}}]}
                  - {name: awq-rot, stages: [{awq: {rotate: true}}]}
                  - {name: heads, stages: [{gptq: {method: rtn, rotate: true, rotate_heads: true}}]}
                """, RecipeParserTest.FILE);
        List<StageSpec> s = r.pipelines().stream().map(p -> p.stages().get(0)).toList();
        StageSpec.Gptq plain = (StageSpec.Gptq) s.get(0), rot = (StageSpec.Gptq) s.get(1), rot5 = (StageSpec.Gptq) s.get(2);
        assertNull(plain.rotate());
        assertFalse(plain.options().containsKey("rotate"), "the keys of recipes without rotation stay what they were");
        assertEquals(new RotatedModel.Settings(0, false), rot.rotate());
        assertEquals(new RotatedModel.Settings(5, false), rot5.rotate());
        StageSpec.Gptq heads = (StageSpec.Gptq) s.get(4);
        assertEquals(new RotatedModel.Settings(0, true), heads.rotate());
        assertEquals(true, rot.options().get("rotate"));
        assertEquals(5L, rot5.options().get("rotate_seed"));
        assertTrue(rot5.describe().contains("rotate=true, rotate_seed=5, rotate_heads=false"), rot5.describe());
        assertEquals(new RotatedModel.Settings(0, false), ((StageSpec.Awq) s.get(3)).rotate());

        String k = Keys.stageKey("in", plain, null);
        assertNotEquals(k, Keys.stageKey("in", rot, null));
        assertNotEquals(Keys.stageKey("in", rot, null), Keys.stageKey("in", rot5, null));
        assertNotEquals(Keys.stageKey("in", rot, null), Keys.stageKey("in", heads, null));
        assertEquals(k, Keys.stageKey("in", new StageSpec.Gptq("rtn", 4, 128, true, false, false, true, 0.01, false, 128, 8,
                plain.calibSettings()), null));
    }

    @Test
    void theShippedRotationExampleParses() {
        java.nio.file.Path file = java.nio.file.Path.of(System.getProperty("user.dir")).resolve("../examples/rotate.yaml").normalize();
        Recipe r = RecipeParser.read(file);
        List<Boolean> rotated = r.pipelines().stream()
                .map(p -> p.stages().get(0).options().containsKey("rotate")).toList();
        assertEquals(List.of(false, true, false, true, false, true), rotated);
    }

    @Test
    void aSeedWithoutRotateIsAnError() {
        ShrinkException e = RecipeParserTest.bad("""
                model: m
                pipelines:
                  - {name: x, stages: [{gptq: {rotate_seed: 3}}]}
                """);
        assertTrue(e.getMessage().contains("rotate_seed") && e.getMessage().contains("goes with rotate: true"), e.getMessage());
        assertTrue(RecipeParserTest.bad("""
                model: m
                pipelines:
                  - {name: x, stages: [{awq: {rotate_heads: true}}]}
                """).getMessage().contains("'rotate_heads'"));
        assertTrue(RecipeParserTest.bad("""
                model: m
                pipelines:
                  - {name: x, stages: [{awq: {rotate: yes please}}]}
                """).getMessage().contains("rotate"));
    }
}
