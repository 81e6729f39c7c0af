package dev.shrink.gptq;

import dev.shrink.eval.ArchFixtures;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.shrink.core.forward.CausalLM;
import dev.shrink.core.forward.MoeBlocks;
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
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * GPTQ of a mixture of experts (transformers' tiny Qwen2-MoE, eval's arch/qwen2_moe: 3 sparse blocks of
 * 4 experts, top 2, a shared expert): every expert linear is quantized from the Hessian of its routed
 * tokens, the router and the shared expert's gate are copied byte for byte, the folder names each
 * expert's tensors as the source does and evaluates close to the source; an expert under the token
 * threshold takes the Hessian of every token of its block's MLP input, and the report says which.
 */
class MoeGptqTest {
    @TempDir
    Path tmp;

    /** The committed Qwen2-MoE fixture (eval/src/test/resources/arch/qwen2_moe), from the repository root. */

    static int[][] windows(int n, int T, long seed, int vocab) {
        return ArchFixtures.randomWindows(n, T, 3, vocab, seed);
    }

    static final QuantScheme W4G32 = QuantScheme.of(4, 32, true);

    static GptqStage.Config config(String minTokens) {
        return new GptqStage.Config("gptq", W4G32, false, false, true, 0.01, 128, 4)
                .withExpertMinTokens(MoeBlocks.Threshold.parse(minTokens, "test"));
    }

    @Test
    void everyExpertQuantizedRouterKeptAndTheFolderEvaluates() throws Exception {
        Path src = ArchFixtures.path("qwen2_moe"), out = tmp.resolve("gptq");
        Ops ops = Backends.select("cpu", 0);
        int[][] calib = windows(8, 32, 1, 256);
        GptqStage.Result r = GptqStage.compress(src, out, config(MoeBlocks.DEFAULT_MIN_TOKENS), calib,
                new java.util.LinkedHashMap<>(Map.of("stage", "gptq")), "shrink:test", ops, true, false);
        try (ModelDir dir = ModelDir.open(src); WeightStore q = WeightStore.open(out)) {
            ModelConfig mc = dir.config();
            ArchitectureSpec spec = dir.spec();
            ArchitectureSpec.Moe m = spec.moe();
            int C = mc.hidden(), F = mc.moe().expertIntermediate();
            for (int layer = 0; layer < mc.layers(); layer++) {
                for (String keep : List.of(m.router(), m.sharedExpertGate())) {
                    String t = spec.layer(layer, keep) + ".weight";
                    assertTrue(q.has(t), t);
                    assertArrayEquals(bytes(dir.weights(), t), bytes(q, t), t + " is copied byte for byte");
                    assertFalse(r.quantized().containsKey(spec.layer(layer, keep)));
                }
                for (int e = 0; e < mc.moe().experts(); e++) {
                    for (String part : List.of(m.gate(), m.up(), m.down())) {
                        String x = spec.layer(layer, m.expert(e, part));
                        int K = part.equals(m.down()) ? F : C, N = part.equals(m.down()) ? C : F;
                        assertArrayEquals(new long[] {K * 4 / 32, N}, q.info(x + ".qweight").shape(), x);
                        assertArrayEquals(new long[] {K / 32, N}, q.info(x + ".scales").shape(), x);
                        assertFalse(q.has(x + ".weight"), x + " is not left in float");
                    }
                }
                for (String part : List.of(m.gate(), m.up(), m.down())) {
                    assertTrue(q.has(spec.layer(layer, m.shared(part)) + ".qweight"), "the shared expert is quantized");
                }
            }
            assertTrue(layerNames(r).contains("model.layers.0.mlp.experts.3.down_proj"));
            JsonNode config = new ObjectMapper().readTree(out.resolve("config.json").toFile());
            List<String> notConverted = new ArrayList<>();
            config.at("/quantization_config/modules_to_not_convert").forEach(n -> notConverted.add(n.asText()));
            assertEquals(List.of("model.layers.0.mlp.gate", "model.layers.0.mlp.shared_expert_gate",
                    "model.layers.1.mlp.gate", "model.layers.1.mlp.shared_expert_gate",
                    "model.layers.2.mlp.gate", "model.layers.2.mlp.shared_expert_gate"), notConverted,
                    "only the routers and shared gates stay in float; no dense MLP names in sparse blocks");
            JsonNode report = new ObjectMapper().readTree(out.resolve("shrink-report.json").toFile());
            assertEquals(mc.layers(), report.at("/experts/blocks").size());
            long routed = 0;
            for (JsonNode t : report.at("/experts/blocks/0/tokens")) {
                routed += t.asLong();
            }
            assertEquals(8L * 32 * mc.moe().topK(), routed, "every token at k experts");

            // the folder loads packed and scores close to the source
            int[] ids = windows(1, 4 * 64, 2, 256)[0];
            CausalLM source = CausalLM.load(WeightSource.of(dir.weights()), mc, spec, ops);
            try (ModelDir qd = ModelDir.open(out)) {
                CausalLM quantized = CausalLM.load(WeightSources.forModel(qd), qd.config(), qd.spec(), ops);
                double p0 = Perplexity.evaluate(source, "random", ids, 64, 4, true).ppl();
                double p1 = Perplexity.evaluate(quantized, "random", ids, 64, 4, true).ppl();
                System.out.printf("qwen2_moe gptq w4g32: ppl %.4f -> %.4f%n", p0, p1);
                assertTrue(p1 != p0 && Math.abs(p1 - p0) / p0 < 0.05, "ppl " + p0 + " -> " + p1);
            }
        }
    }

    @Test
    void underRoutedExpertsUseEveryTokenAndAreReported() {
        Path src = ArchFixtures.path("qwen2_moe");
        Ops ops = Backends.select("cpu", 0);
        int[][] calib = windows(4, 16, 3, 256);
        try (ModelDir dir = ModelDir.open(src)) {
            GptqStage.Result plain = GptqStage.run(dir, WeightSource.of(dir.weights()), calib, config("1"), ops, true);
            long[] tokens = plain.experts().get(0).tokens();
            assertTrue(plain.experts().stream().allMatch(b -> b.fallback().isEmpty()), "a threshold of 1 token: "
                    + plain.experts());
            long min = Long.MAX_VALUE, max = 0;
            for (long t : tokens) {
                min = Math.min(min, t);
                max = Math.max(max, t);
            }
            assertTrue(min < max, "the experts of block 0 got different counts: " + java.util.Arrays.toString(tokens));
            long threshold = max; // every expert of block 0 with fewer tokens than the busiest falls back
            GptqStage.Result fb = GptqStage.run(dir, WeightSource.of(dir.weights()), calib,
                    config(Long.toString(threshold)), ops, true);
            MoeBlocks.Report b0 = fb.experts().get(0);
            List<Integer> expected = new ArrayList<>();
            for (int e = 0; e < tokens.length; e++) {
                if (tokens[e] < threshold) {
                    expected.add(e);
                }
            }
            assertEquals(expected, b0.fallback());
            assertArrayEquals(tokens, b0.tokens(), "block 0 routes the same tokens");
            ArchitectureSpec.Moe m = dir.spec().moe();
            for (int e = 0; e < tokens.length; e++) {
                for (String part : List.of(m.gate(), m.up(), m.down())) {
                    String x = dir.spec().layer(0, m.expert(e, part));
                    boolean same = java.util.Arrays.equals(plain.quantized().get(x).codes(), fb.quantized().get(x).codes());
                    if (expected.contains(e)) {
                        assertFalse(same, x + " fell back: another Hessian, other codes");
                    } else {
                        assertTrue(same, x + " kept its routed tokens' Hessian");
                    }
                }
            }
        }
    }

    @Test
    void awqScalesFirstCompensateTheRouter() {
        int[][] calib = windows(4, 16, 4, 256);
        try (ModelDir dir = ModelDir.open(ArchFixtures.path("qwen2_moe"))) {
            GptqStage.Result r = GptqStage.run(dir, WeightSource.of(dir.weights()), calib,
                    config("1").withMethods(true, false), Backends.select("cpu", 0), true);
            ArchitectureSpec spec = dir.spec();
            for (int layer = 0; layer < dir.config().layers(); layer++) {
                String router = spec.layer(layer, spec.moe().router()) + ".weight";
                assertTrue(r.modified().containsKey(router), "the norm's scales went into " + router);
                assertTrue(r.modified().containsKey(spec.layer(layer, spec.postAttentionNorm())));
                assertFalse(r.quantized().containsKey(spec.layer(layer, spec.moe().router())));
            }
        }
    }

    private static Set<String> layerNames(GptqStage.Result r) {
        Set<String> s = new java.util.HashSet<>();
        r.layers().forEach(l -> s.add(l.name()));
        return s;
    }

    private static byte[] bytes(WeightStore store, String name) {
        return store.data(name).toArray(java.lang.foreign.ValueLayout.JAVA_BYTE);
    }
}
