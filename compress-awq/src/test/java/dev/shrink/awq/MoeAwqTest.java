package dev.shrink.awq;

import dev.shrink.eval.ArchFixtures;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shrink.core.forward.BlockWeights;
import dev.shrink.core.forward.CausalLM;
import dev.shrink.core.forward.MoeBlocks;
import dev.shrink.core.forward.Routing;
import dev.shrink.core.forward.Taps;
import dev.shrink.core.forward.WeightSource;
import dev.shrink.core.model.ArchitectureSpec;
import dev.shrink.core.model.ModelConfig;
import dev.shrink.core.model.ModelDir;
import dev.shrink.core.ops.Backends;
import dev.shrink.core.ops.Ops;
import dev.shrink.core.safetensors.WeightStore;
import dev.shrink.eval.Perplexity;
import dev.shrink.eval.WeightSources;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * AWQ of a mixture of experts (eval's arch/qwen2_moe fixture): every expert's gate and up (and the shared
 * expert's) scaled as one group from the MLP's input norm, the router and shared expert's gate
 * compensated so that the routing of the calibration tokens is the same, each expert's up → down
 * scaled on its routed rows, and the GEMM folder evaluates close to the source; under-routed experts
 * are reported and get no up → down search.
 */
class MoeAwqTest {
    @TempDir
    Path tmp;


    static int[][] windows(int n, int T, long seed) {
        return ArchFixtures.randomWindows(n, T, 3, 253, seed);
    }

    /** Each sparse block's routing (expert rows) of the tokens, in the model {@code lm}. */
    static List<int[][]> routing(CausalLM lm, ModelConfig cfg, ArchitectureSpec spec, int[] ids) {
        List<int[][]> out = new java.util.ArrayList<>();
        for (int layer = 0; layer < cfg.layers(); layer++) {
            final int l = layer;
            float[][] h = new float[1][];
            lm.hidden(ids, 1, ids.length, null, new Taps() {
                @Override
                public void linearInput(int layer, String linear, float[] x, int M, int K) {
                    if (layer == l && linear.equals(spec.moe().router())) {
                        h[0] = java.util.Arrays.copyOf(x, M * K);
                    }
                }
            });
            BlockWeights w = lm.blocks().get(layer);
            int M = ids.length, C = cfg.hidden(), E = cfg.moe().experts();
            float[] logits = new float[M * E];
            lm.decoder().ops().linear(h[0], M, C, w.weight(spec.moe().router()), E, logits);
            Routing r = Routing.of(logits, M, E, cfg.moe().topK(), cfg.moe().normTopK());
            int[][] rows = new int[E][];
            for (int e = 0; e < E; e++) {
                rows[e] = r.rows(e);
            }
            out.add(rows);
        }
        return out;
    }

    @Test
    void expertsScaledRoutingKeptAndTheFolderEvaluates() throws Exception {
        Path src = ArchFixtures.path("qwen2_moe"), out = tmp.resolve("awq");
        Ops ops = Backends.select("cpu", 0);
        int[][] calib = windows(8, 32, 11);
        AwqStage.Config cfg = new AwqStage.Config(32, true, true, true, 4);
        AwqStage.Result r = AwqStage.compress(src, out, cfg, AwqCheckpoint.Export.GEMM, calib,
                new LinkedHashMap<>(Map.of("stage", "awq")), ops, true, false);
        try (ModelDir dir = ModelDir.open(src); WeightStore q = WeightStore.open(out)) {
            ModelConfig mc = dir.config();
            ArchitectureSpec spec = dir.spec();
            ArchitectureSpec.Moe m = spec.moe();
            for (int layer = 0; layer < mc.layers(); layer++) {
                for (int e = 0; e < mc.moe().experts(); e++) {
                    for (String part : List.of(m.gate(), m.up(), m.down())) {
                        String x = spec.layer(layer, m.expert(e, part));
                        assertTrue(q.has(x + ".qweight"), x);
                        assertFalse(q.has(x + ".weight"), x);
                    }
                }
                String router = spec.layer(layer, m.router()) + ".weight";
                assertTrue(r.modified().containsKey(router), "the router took the norm's scales");
                assertEquals(mc.moe().experts() * 2 + 2, r.mappings().stream()
                        .filter(p -> p.previous().endsWith("post_attention_layernorm") && p.status().equals("searched"))
                        .findFirst().orElseThrow().consumers().size(), "every expert's gate and up, and the shared expert's");
            }
            // the router of the scaled float model routes the calibration tokens as the source's did
            CausalLM source = CausalLM.load(WeightSource.of(dir.weights()), mc, spec, ops, false);
            CausalLM folded = CausalLM.load(foldedFloats(dir, r), mc, spec, ops, false);
            int[] ids = calib[0];
            List<int[][]> a = routing(source, mc, spec, ids), b = routing(folded, mc, spec, ids);
            for (int layer = 0; layer < mc.layers(); layer++) {
                for (int e = 0; e < mc.moe().experts(); e++) {
                    assertArrayEquals(a.get(layer)[e], b.get(layer)[e], "block " + layer + " expert " + e + " routes the same tokens");
                }
            }
            // the GEMM folder loads and scores close to the source
            int[] eval = windows(1, 4 * 64, 12)[0];
            try (ModelDir qd = ModelDir.open(out)) {
                CausalLM quantized = CausalLM.load(WeightSources.forModel(qd), qd.config(), qd.spec(), ops);
                double p0 = Perplexity.evaluate(CausalLM.load(WeightSource.of(dir.weights()), mc, spec, ops), "random",
                        eval, 64, 4, true).ppl();
                double p1 = Perplexity.evaluate(quantized, "random", eval, 64, 4, true).ppl();
                System.out.printf("qwen2_moe awq w4g32: ppl %.4f -> %.4f%n", p0, p1);
                assertTrue(p1 != p0 && Math.abs(p1 - p0) / p0 < 0.05, "ppl " + p0 + " -> " + p1);
            }
        }
    }

    @Test
    void underRoutedExpertsGetNoDownScaling() {
        int[][] calib = windows(4, 16, 13);
        try (ModelDir dir = ModelDir.open(ArchFixtures.path("qwen2_moe"))) {
            AwqStage.Result all = AwqStage.run(dir, WeightSource.of(dir.weights()), calib,
                    new AwqStage.Config(32, true, false, true, 2, MoeBlocks.Threshold.parse("1", "t")), Backends.select("cpu", 0), true);
            long[] tokens = all.experts().get(0).tokens();
            long max = java.util.Arrays.stream(tokens).max().orElseThrow();
            AwqStage.Result few = AwqStage.run(dir, WeightSource.of(dir.weights()), calib,
                    new AwqStage.Config(32, true, false, true, 2, MoeBlocks.Threshold.parse(Long.toString(max), "t")),
                    Backends.select("cpu", 0), true);
            List<Integer> expected = new java.util.ArrayList<>();
            for (int e = 0; e < tokens.length; e++) {
                if (tokens[e] < max) {
                    expected.add(e);
                }
            }
            assertFalse(expected.isEmpty());
            assertTrue(all.experts().get(0).fallback().isEmpty());
            assertEquals(expected, few.experts().get(0).fallback());
            ArchitectureSpec.Moe m = dir.spec().moe();
            for (int e = 0; e < tokens.length; e++) {
                String up = dir.spec().layer(0, m.expert(e, m.up()));
                String status = few.mappings().stream().filter(p -> p.layer() == 0 && p.previous().equals(up))
                        .findFirst().orElseThrow().status();
                assertEquals(expected.contains(e) ? "skipped" : "searched", status, up);
            }
        }
    }

    /** The source's float weights with the run's modified tensors and its quantized linears' scaled float weights (before rounding). */
    private static WeightSource foldedFloats(ModelDir dir, AwqStage.Result r) {
        WeightSource base = WeightSource.of(dir.weights());
        Map<String, float[]> scaledLinears = new java.util.HashMap<>();
        for (ScalePlan p : r.scalePlans()) {
            for (String c : p.consumers()) {
                String name = dir.spec().layer(p.layer(), c) + ".weight";
                float[] w = scaledLinears.computeIfAbsent(name, k -> base.floats(k).clone());
                int K = p.scales().length, N = w.length / K;
                AwqApply.multiplyColumns(w, N, K, p.scales());
            }
            if (MoeBlocks.role(dir.spec(), p.previous()) != null) { // a linear: rows divided
                String name = dir.spec().layer(p.layer(), p.previous()) + ".weight";
                float[] w = scaledLinears.computeIfAbsent(name, k -> base.floats(k).clone());
                int N = p.scales().length;
                AwqApply.divideRows(w, N, w.length / N, p.scales());
            }
        }
        return new WeightSource() {
            public boolean has(String n) {
                return base.has(n);
            }

            public float[] floats(String n) {
                if (scaledLinears.containsKey(n)) {
                    return scaledLinears.get(n);
                }
                return r.modified().containsKey(n) ? r.modified().get(n) : base.floats(n);
            }

            public long[] shape(String n) {
                return base.shape(n);
            }

            public dev.shrink.core.quant.QuantizedLinear quantized(String prefix) {
                return null;
            }
        };
    }
}
