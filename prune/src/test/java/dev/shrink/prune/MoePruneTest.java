package dev.shrink.prune;

import dev.shrink.eval.ArchFixtures;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shrink.core.forward.MoeBlocks;
import dev.shrink.core.forward.WeightSource;
import dev.shrink.core.model.ArchitectureSpec;
import dev.shrink.core.model.ModelDir;
import dev.shrink.core.ops.Backends;
import dev.shrink.core.safetensors.WeightStore;
import dev.shrink.core.sparse.SparsityPattern;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Pruning a mixture of experts (eval's arch/qwen2_moe fixture): every expert's and the shared expert's
 * linears are pruned, the routers and shared-expert gates never (byte for byte in the folder); Wanda
 * scores each expert from its routed tokens, and an expert under the token threshold from every token
 * of its block's MLP input, as the report says.
 */
class MoePruneTest {
    @TempDir
    Path tmp;


    static int[][] windows(int n, int T, long seed) {
        return ArchFixtures.randomWindows(n, T, 3, 253, seed);
    }

    @Test
    void magnitudePrunesEveryExpertNeverTheRouter() {
        Path out = tmp.resolve("pruned");
        PruneStage.Config cfg = new PruneStage.Config("magnitude", new SparsityPattern.NofM(2, 4), null, List.of(),
                List.of(), 4);
        PruneStage.Result r = PruneStage.compress(ArchFixtures.path("qwen2_moe"), out, cfg, null, Backends.select("cpu", 0), true, false);
        try (ModelDir dir = ModelDir.open(ArchFixtures.path("qwen2_moe")); WeightStore p = WeightStore.open(out)) {
            ArchitectureSpec spec = dir.spec();
            ArchitectureSpec.Moe m = spec.moe();
            int experts = dir.config().moe().experts();
            for (int layer = 0; layer < dir.config().layers(); layer++) {
                for (String keep : List.of(m.router(), m.sharedExpertGate())) {
                    String t = spec.layer(layer, keep) + ".weight";
                    assertArrayEquals(bytes(dir.weights(), t), bytes(p, t), t + " is never pruned");
                }
                for (int e = 0; e < experts; e++) {
                    String x = spec.layer(layer, m.expert(e, m.down())) + ".weight";
                    float[] w = p.floats(x);
                    long zeros = 0;
                    for (float v : w) {
                        zeros += v == 0 ? 1 : 0;
                    }
                    assertEquals(w.length / 2, zeros, x + " is 2:4 sparse");
                }
            }
            // attention 4 + experts 4 × 3 + shared expert 3 per block
            assertEquals(dir.config().layers() * (4 + 3 * experts + 3), r.layers().size());
            assertTrue(r.layers().stream().noneMatch(l -> l.name().endsWith(".mlp.gate") || l.name().endsWith("shared_expert_gate")));
        }
    }

    @Test
    void wandaFallsBackForUnderRoutedExperts() {
        int[][] calib = windows(4, 16, 5);
        try (ModelDir dir = ModelDir.open(ArchFixtures.path("qwen2_moe"))) {
            PruneStage.Config own = new PruneStage.Config("wanda", new SparsityPattern.Unstructured(0.5), null, List.of(),
                    List.of(), 2, MoeBlocks.Threshold.parse("1", "test"));
            PruneStage.Result a = PruneStage.run(dir, WeightSource.of(dir.weights()), calib, own, Backends.select("cpu", 0), true);
            long[] tokens = a.experts().get(0).tokens();
            assertTrue(a.experts().stream().allMatch(b -> b.fallback().isEmpty()));
            long max = java.util.Arrays.stream(tokens).max().orElseThrow();
            PruneStage.Config low = new PruneStage.Config("wanda", new SparsityPattern.Unstructured(0.5), null, List.of(),
                    List.of(), 2, MoeBlocks.Threshold.parse(Long.toString(max), "test"));
            PruneStage.Result b = PruneStage.run(dir, WeightSource.of(dir.weights()), calib, low, Backends.select("cpu", 0), true);
            List<Integer> expected = new ArrayList<>();
            for (int e = 0; e < tokens.length; e++) {
                if (tokens[e] < max) {
                    expected.add(e);
                }
            }
            assertFalse(expected.isEmpty(), java.util.Arrays.toString(tokens));
            assertEquals(expected, b.experts().get(0).fallback());
            ArchitectureSpec.Moe m = dir.spec().moe();
            for (int e = 0; e < tokens.length; e++) {
                String x = dir.spec().layer(0, m.expert(e, m.up())) + ".weight";
                boolean same = java.util.Arrays.equals(a.weights().get(x), b.weights().get(x));
                assertEquals(!expected.contains(e), same, x + ": fell back " + expected.contains(e));
            }
            assertTrue(PruneStage.report(b, low).containsKey("experts"));
        }
    }

    private static byte[] bytes(WeightStore store, String name) {
        return store.data(name).toArray(java.lang.foreign.ValueLayout.JAVA_BYTE);
    }
}
