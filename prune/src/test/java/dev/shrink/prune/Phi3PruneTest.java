package dev.shrink.prune;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shrink.core.forward.FusedLinears;
import dev.shrink.core.forward.WeightSource;
import dev.shrink.core.model.ModelDir;
import dev.shrink.core.ops.Backends;
import dev.shrink.core.ops.Ops;
import dev.shrink.core.sparse.CompressedSparseCheckpoint;
import dev.shrink.core.sparse.SparsityPattern;
import dev.shrink.core.safetensors.WeightStore;
import dev.shrink.eval.ArchFixtures;
import dev.shrink.eval.WeightSources;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Pruning Phi-3 (arch/phi3: q|k|v stored as self_attn.qkv_proj, gate|up as mlp.gate_up_proj): the parts
 * are pruned apart, as the forward reads them, and written back fused (rows concatenated along the output
 * dim), dense or as compressed-tensors' sparse-24-bitmask; read back by Shrink's loader, each part is
 * exactly what the stage pruned, a part left out by --targets as stored.
 */
class Phi3PruneTest {
    private static final List<String> PARTS = List.of("q_proj", "k_proj", "v_proj", "gate_proj", "up_proj");

    @TempDir
    Path tmp;

    private static void noPartApart(WeightStore store) {
        for (String name : store.names()) {
            for (String part : PARTS) {
                assertFalse(name.contains("." + part + "."), "no part written apart: " + name);
            }
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"cpu", "cpu-reference"})
    void wandaTwoFourWritesFusedTensorsThatReadBackAsPruned(String backend) {
        Path src = ArchFixtures.path("phi3"), out = tmp.resolve("phi3-24");
        Ops ops = Backends.select(backend, 0);
        Random rnd = new Random(3);
        int[][] windows = new int[4][32];
        for (int[] w : windows) {
            Arrays.setAll(w, t -> rnd.nextInt(256));
        }
        PruneStage.Config cfg = new PruneStage.Config("wanda", new SparsityPattern.NofM(2, 4), null, List.of(), List.of(), 4);
        PruneStage.Result r = PruneStage.compress(src, out, cfg, windows, ops, true, false);
        assertEquals(3 * 7, r.weights().size(), "every part pruned apart");
        try (ModelDir source = ModelDir.open(src); ModelDir p = ModelDir.open(out)) {
            noPartApart(p.weights());
            for (int layer = 0; layer < 3; layer++) {
                String x = "model.layers." + layer + ".";
                assertArrayEquals(new long[] {192, 64}, p.weights().info(x + "self_attn.qkv_proj.weight").shape());
                assertArrayEquals(new long[] {256, 64}, p.weights().info(x + "mlp.gate_up_proj.weight").shape());
            }
            WeightSource back = WeightSources.forModel(p);
            r.weights().forEach((name, w) -> assertArrayEquals(w, back.floats(name), name));
            float[] got = ArchFixtures.logits(src, p, back, ops);
            float[] want = ArchFixtures.logits(src, source, ArchFixtures.overlay(FusedLinears.of(source), r.weights()), ops);
            assertArrayEquals(want, got, 1e-5f * ArchFixtures.maxAbs(want));
            int V = source.config().vocab();
            double nllSrc = ArchFixtures.meanNll(src, ArchFixtures.logits(src, source, FusedLinears.of(source), ops), V);
            double nllP = ArchFixtures.meanNll(src, got, V);
            System.out.printf("phi3 wanda 2:4 %s: NLL %.4f → %.4f%n", backend, nllSrc, nllP);
            assertTrue(nllP != nllSrc && Math.abs(nllP - nllSrc) < 0.05 * nllSrc, nllSrc + " → " + nllP);

            // the same pruned parts as compressed-tensors' sparse-24-bitmask: the fused tensors compressed
            Path sparse = tmp.resolve("phi3-24-bitmask");
            CompressedSparseCheckpoint.write(source, sparse, r.weights(), r.weights().keySet(), "sparse-24-bitmask", null, false);
            try (ModelDir s = ModelDir.open(sparse)) {
                noPartApart(s.weights());
                assertTrue(s.weights().has("model.layers.0.self_attn.qkv_proj.bitmask"));
                var ignore = s.config().raw().get("quantization_config").get("sparsity_config").get("ignore");
                assertEquals("[\"lm_head\"]", ignore.toString(), "every stored decoder linear compressed");
                WeightSource sb = WeightSources.forModel(s);
                r.weights().forEach((name, w) -> assertArrayEquals(w, sb.floats(name), name));
            }
        }
    }

    @Test
    void partsLeftOutByTargetsStayAsStored() {
        Path src = ArchFixtures.path("phi3"), out = tmp.resolve("phi3-k");
        Ops ops = Backends.select("cpu", 0);
        PruneStage.Config cfg = new PruneStage.Config("magnitude", new SparsityPattern.Unstructured(0.5), null,
                List.of("*.k_proj", "*.up_proj"), List.of(), 4);
        PruneStage.Result r = PruneStage.compress(src, out, cfg, null, ops, true, false);
        assertEquals(6, r.weights().size());
        try (ModelDir source = ModelDir.open(src); ModelDir p = ModelDir.open(out)) {
            noPartApart(p.weights());
            WeightSource before = FusedLinears.of(source), after = WeightSources.forModel(p);
            for (int layer = 0; layer < 3; layer++) {
                for (String part : new String[] {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "mlp.gate_proj",
                        "mlp.up_proj"}) {
                    String w = "model.layers." + layer + "." + part + ".weight";
                    float[] expected = r.weights().containsKey(w) ? r.weights().get(w) : before.floats(w);
                    assertArrayEquals(expected, after.floats(w), w);
                    assertEquals(r.weights().containsKey(w), !Arrays.equals(before.floats(w), after.floats(w)), w);
                }
            }
        }
    }
}
