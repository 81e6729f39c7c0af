package dev.shrink.prune;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shrink.core.ShrinkException;
import dev.shrink.core.forward.WeightSource;
import dev.shrink.core.model.ArchitectureSpec;
import dev.shrink.core.model.ModelDir;
import dev.shrink.core.ops.Backends;
import dev.shrink.core.ops.Ops;
import dev.shrink.core.sparse.SparsityPattern;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The stage on stories260K-hf (5 layers; linears 64×64, 32×64, 172×64, 64×172): the exact zero count
 * of every linear for each scope, the global threshold, N:M in every group, kept weights untouched,
 * targets and ignore, and the refusals.
 */
class PruneStageTest {
    static ModelDir model;
    static final Ops OPS = Backends.select("auto", 0);

    @BeforeAll
    static void open() {
        model = ModelDir.open(PruneTestSupport.stories());
    }

    @AfterAll
    static void close() {
        if (model != null) {
            model.close();
        }
    }

    static PruneStage.Config magnitude(SparsityPattern p, String scope) {
        return new PruneStage.Config("magnitude", p, scope, List.of(), List.of(), 8);
    }

    static PruneStage.Result run(PruneStage.Config cfg) {
        return PruneStage.run(model, WeightSource.of(model.weights()), null, cfg, OPS, true);
    }

    static float[] original(String weight) {
        return model.weights().floats(weight);
    }

    /** The model has no zeros of its own, so zeros counted after pruning are exactly the pruned weights. */
    @Test
    void sourceHasNoZeros() {
        for (PruneStage.LayerReport l : run(magnitude(new SparsityPattern.Unstructured(0), null)).layers()) {
            assertEquals(0, l.zeros(), l.name());
        }
    }

    /** Pruned values are 0, every other value is the original, bit for bit. */
    static void assertOnlyZeroed(float[] W, float[] P, String name) {
        for (int i = 0; i < W.length; i++) {
            if (P[i] != 0f) {
                assertEquals(Float.floatToIntBits(W[i]), Float.floatToIntBits(P[i]), name + " element " + i);
            }
        }
    }

    @Test
    void perLayerPrunesExactlyFloorOfRatioTimesSizeSmallestFirst() {
        for (double ratio : new double[] {0.5, 0.3}) {
            PruneStage.Result r = run(magnitude(new SparsityPattern.Unstructured(ratio), "layer"));
            assertEquals(35, r.weights().size());
            for (PruneStage.LayerReport l : r.layers()) {
                String w = l.name() + ".weight";
                float[] W = original(w), P = r.weights().get(w);
                long k = (long) Math.floor(ratio * l.N() * l.K());
                assertEquals(k, l.pruned(), l.name());
                assertEquals(k, l.zeros(), l.name());
                assertEquals(k, Masks.zeros(P), l.name());
                assertEquals((double) k / (l.N() * l.K()), r.record().layers().get(l.name()));
                assertOnlyZeroed(W, P, w);
                float maxPruned = 0, minKept = Float.MAX_VALUE;
                for (int i = 0; i < W.length; i++) {
                    if (P[i] == 0f) {
                        maxPruned = Math.max(maxPruned, Math.abs(W[i]));
                    } else {
                        minKept = Math.min(minKept, Math.abs(W[i]));
                    }
                }
                assertTrue(maxPruned <= minKept, l.name() + ": one threshold per layer");
            }
            assertEquals("layer", r.record().scope());
        }
    }

    @Test
    void perRowPrunesExactlyFloorOfRatioTimesKInEveryRow() {
        double ratio = 0.4;
        PruneStage.Result r = run(magnitude(new SparsityPattern.Unstructured(ratio), "row"));
        for (PruneStage.LayerReport l : r.layers()) {
            String w = l.name() + ".weight";
            float[] W = original(w), P = r.weights().get(w);
            int k = (int) Math.floor(ratio * l.K());
            assertEquals((long) k * l.N(), l.zeros(), l.name());
            for (int n = 0; n < l.N(); n++) {
                int z = 0;
                float maxPruned = 0, minKept = Float.MAX_VALUE;
                for (int j = 0; j < l.K(); j++) {
                    int i = n * l.K() + j;
                    if (P[i] == 0f) {
                        z++;
                        maxPruned = Math.max(maxPruned, Math.abs(W[i]));
                    } else {
                        minKept = Math.min(minKept, Math.abs(W[i]));
                    }
                }
                assertEquals(k, z, l.name() + " row " + n);
                assertTrue(maxPruned <= minKept, l.name() + " row " + n);
            }
            assertOnlyZeroed(W, P, w);
        }
    }

    @Test
    void globalHasOneThresholdExactOverallAndUnevenPerLayer() {
        double ratio = 0.6;
        PruneStage.Result r = run(magnitude(new SparsityPattern.Unstructured(ratio), "global"));
        long total = 0, zeros = 0;
        float maxPruned = 0, minKept = Float.MAX_VALUE;
        Set<Double> ratios = new HashSet<>();
        for (PruneStage.LayerReport l : r.layers()) {
            String w = l.name() + ".weight";
            float[] W = original(w), P = r.weights().get(w);
            total += W.length;
            zeros += Masks.zeros(P);
            ratios.add(l.ratio());
            assertOnlyZeroed(W, P, w);
            for (int i = 0; i < W.length; i++) {
                if (P[i] == 0f) {
                    maxPruned = Math.max(maxPruned, Math.abs(W[i]));
                } else {
                    minKept = Math.min(minKept, Math.abs(W[i]));
                }
            }
        }
        assertEquals((long) Math.floor(ratio * total), zeros, "exactly floor(ratio · all targeted weights)");
        assertEquals(zeros, r.totals().linearZeros());
        assertTrue(maxPruned <= minKept, "one threshold across layers: " + maxPruned + " vs " + minKept);
        double min = ratios.stream().mapToDouble(d -> d).min().orElseThrow();
        double max = ratios.stream().mapToDouble(d -> d).max().orElseThrow();
        assertTrue(max - min > 0.1, "layers pruned unevenly: " + min + " .. " + max);
        assertEquals("global", r.record().scope());
    }

    @Test
    void twoOfFourHoldsInEveryGroupOfEveryRow() {
        PruneStage.Result r = run(magnitude(new SparsityPattern.NofM(2, 4), null));
        assertNull(r.record().scope());
        assertEquals("2:4", r.record().pattern().label());
        for (PruneStage.LayerReport l : r.layers()) {
            String w = l.name() + ".weight";
            float[] W = original(w), P = r.weights().get(w);
            for (int g = 0; g < P.length; g += 4) {
                int nz = 0;
                float minKept = Float.MAX_VALUE, maxPruned = 0;
                for (int i = g; i < g + 4; i++) {
                    if (P[i] != 0f) {
                        nz++;
                        minKept = Math.min(minKept, Math.abs(W[i]));
                    } else {
                        maxPruned = Math.max(maxPruned, Math.abs(W[i]));
                    }
                }
                assertEquals(2, nz, l.name() + " group at " + g);
                assertTrue(maxPruned <= minKept, l.name() + " group at " + g + ": the 2 largest kept");
            }
            assertEquals(0.5, l.ratio());
            assertOnlyZeroed(W, P, w);
        }
    }

    @Test
    void targetsAndIgnoreChooseTheLinears() {
        PruneStage.Config cfg = new PruneStage.Config("magnitude", new SparsityPattern.NofM(2, 4), null,
                List.of("*mlp*", "model.layers.0.self_attn.q_proj"), List.of("re:model\\.layers\\.[34]\\..*"), 8);
        PruneStage.Result r = run(cfg);
        List<String> pruned = new ArrayList<>();
        for (PruneStage.LayerReport l : r.layers()) {
            if (l.status().equals("pruned")) {
                pruned.add(l.name());
            } else {
                assertEquals(0, l.zeros(), l.name());
                assertFalse(r.weights().containsKey(l.name() + ".weight"));
                assertTrue(l.reason().contains("targets") || l.reason().contains("ignored"), l.reason());
            }
        }
        ArchitectureSpec spec = model.spec();
        List<String> expected = new ArrayList<>();
        for (int layer = 0; layer < 3; layer++) {
            if (layer == 0) {
                expected.add(spec.layer(0, "self_attn.q_proj"));
            }
            for (String lin : List.of("mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")) {
                expected.add(spec.layer(layer, lin));
            }
        }
        assertEquals(expected, pruned);
        assertEquals(35, r.layers().size(), "every decoder linear is reported");
        assertEquals(Set.copyOf(expected), r.record().layers().keySet());
        assertEquals(expected.size(), r.totals().linearsPruned());
    }

    @Test
    void nOfMThatDoesNotDivideTheInFeaturesIsAnErrorUnlessIgnored() {
        ShrinkException e = assertThrows(ShrinkException.class, () -> run(magnitude(new SparsityPattern.NofM(4, 8), null)));
        assertTrue(e.getMessage().contains("model.layers.0.mlp.down_proj [64, 172]"), e.getMessage());
        assertTrue(e.getMessage().contains("in-features 172 not divisible by 8"), e.getMessage());
        PruneStage.Result r = run(new PruneStage.Config("magnitude", new SparsityPattern.NofM(4, 8), null, List.of(),
                List.of("*down_proj"), 8));
        assertEquals(30, r.totals().linearsPruned());
        assertEquals(5, r.totals().linearsKept());
    }

    @Test
    void badPlansAndConfigsAreRefused() {
        Map<String, List<String>> cases = Map.of(
                "targets pattern 'model.embed_tokens' matches no decoder linear", List.of("model.embed_tokens"),
                "targets pattern '*mpl*' matches no decoder linear", List.of("*mpl*"));
        cases.forEach((msg, targets) -> {
            ShrinkException e = assertThrows(ShrinkException.class, () -> run(new PruneStage.Config("magnitude",
                    new SparsityPattern.NofM(2, 4), null, targets, List.of(), 8)));
            assertTrue(e.getMessage().contains(msg), e.getMessage());
        });
        ShrinkException ig = assertThrows(ShrinkException.class, () -> run(new PruneStage.Config("magnitude",
                new SparsityPattern.NofM(2, 4), null, List.of(), List.of("*.lm_head"), 8)));
        assertTrue(ig.getMessage().contains("ignore pattern '*.lm_head' matches no decoder linear"), ig.getMessage());
        ShrinkException none = assertThrows(ShrinkException.class, () -> run(new PruneStage.Config("magnitude",
                new SparsityPattern.NofM(2, 4), null, List.of("*q_proj"), List.of("*self_attn*"), 8)));
        assertTrue(none.getMessage().contains("no decoder linear to prune"), none.getMessage());
        ShrinkException re = assertThrows(ShrinkException.class, () -> run(new PruneStage.Config("magnitude",
                new SparsityPattern.NofM(2, 4), null, List.of("re:(unclosed"), List.of(), 8)));
        assertTrue(re.getMessage().contains("not a valid regular expression"), re.getMessage());

        SparsityPattern half = new SparsityPattern.Unstructured(0.5);
        assertThrows(ShrinkException.class, () -> new PruneStage.Config("wanda", half, "global", null, null, 8));
        assertThrows(ShrinkException.class, () -> new PruneStage.Config("magnitude", new SparsityPattern.NofM(2, 4), "row", null, null, 8));
        assertThrows(ShrinkException.class, () -> new PruneStage.Config("sparsegpt", half, null, null, null, 8));
        assertThrows(ShrinkException.class, () -> new PruneStage.Config("magnitude", half, "block", null, null, 8));
        assertThrows(ShrinkException.class, () -> new PruneStage.Config("magnitude", half, null, null, null, 0));
        assertEquals("layer", new PruneStage.Config("magnitude", half, null, null, null, 8).scope());
        assertEquals("row", new PruneStage.Config("wanda", half, null, null, null, 8).scope());
        ShrinkException noData = assertThrows(ShrinkException.class, () -> PruneStage.run(model,
                WeightSource.of(model.weights()), null, new PruneStage.Config("wanda", half, null, null, null, 8), OPS, true));
        assertTrue(noData.getMessage().contains("calibration"), noData.getMessage());
    }

    @Test
    void namePatternsAreWholeNameGlobsOrRegexes() {
        assertTrue(NamePattern.of("*down_proj").matches("model.layers.3.mlp.down_proj"));
        assertFalse(NamePattern.of("down_proj").matches("model.layers.3.mlp.down_proj"), "whole name");
        assertTrue(NamePattern.of("model.layers.1*").matches("model.layers.12.mlp.up_proj"));
        assertFalse(NamePattern.of("model.layers.1.*").matches("model.layers.12.mlp.up_proj"), "dots are literal");
        assertTrue(NamePattern.of("re:model\\.layers\\.1\\..*").matches("model.layers.1.mlp.up_proj"));
        assertFalse(NamePattern.of("re:model\\.layers\\.1\\..*").matches("model.layers.12.mlp.up_proj"));
        assertEquals(List.of("*q_proj", "*k_proj", "re:a{1,2}"), NamePattern.split(List.of("*q_proj, *k_proj", "re:a{1,2}")));
        assertThrows(ShrinkException.class, () -> NamePattern.split(List.of("a,,b")));
    }
}
