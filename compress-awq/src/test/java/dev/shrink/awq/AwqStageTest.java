package dev.shrink.awq;

import static dev.shrink.awq.AwqTestSupport.GROUP;
import static dev.shrink.awq.AwqTestSupport.copy;
import static dev.shrink.awq.AwqTestSupport.relDiff;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shrink.core.ShrinkException;
import dev.shrink.core.forward.BlockWeights;
import dev.shrink.core.forward.Decoder;
import dev.shrink.core.forward.Taps;
import dev.shrink.core.forward.WeightSource;
import dev.shrink.core.model.ArchitectureSpec;
import dev.shrink.core.model.ModelDir;
import dev.shrink.core.ops.Backends;
import dev.shrink.core.ops.Ops;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * AwqStage on a small random model: the batched search measures what a plain forward measures, the
 * scale application is exact, the chosen plans beat α = 0, unfit layers are refused or skipped.
 */
class AwqStageTest {
    @TempDir
    Path tmp;

    private final Ops ops = Backends.select("cpu", 0);

    private static final int N_WIN = 4, T = 16;

    /**
     * Every searched loss (stacked candidates for q/k/v and gate/up, the Gram form for o and down)
     * equals the mean squared difference of a plain R = 1 forward of the inspected module.
     */
    @Test
    void searchedLossesEqualPlainForwards() throws IOException {
        Path dir = AwqTestSupport.syntheticModel(tmp.resolve("m"), "Qwen2ForCausalLM", 4, 11);
        int[][] windows = AwqTestSupport.randomWindows(N_WIN, T, 1);
        try (ModelDir m = ModelDir.open(dir)) {
            ArchitectureSpec spec = m.spec();
            for (boolean duo : new boolean[] {false, true}) {
                AwqStage.Result r = AwqStage.run(m, WeightSource.of(m.weights()), windows,
                        new AwqStage.Config(GROUP, duo, true, false, 3), ops, true);
                // the four LLaMA mappings of block 0, v -> o included (no GQA here)
                List<ScalePlan> block0 = r.scalePlans().stream().filter(p -> p.layer() == 0).toList();
                assertEquals(4, block0.size(), r.mappings().toString());
                Decoder dec = new Decoder(m.config(), spec, ops);
                BlockWeights w = BlockWeights.load(WeightSource.of(m.weights()), m.config(), spec, 0);
                float[] x = embed(dec, m, windows);
                AwqTestSupport.Inputs in = new AwqTestSupport.Inputs();
                dec.block(w, x.clone(), N_WIN, T, null, in);
                for (ScalePlan p : block0) {
                    float[] xIn = in.x.get(p.consumers().get(0));
                    int K = p.scales().length;
                    float[] wMean = null;
                    if (duo) {
                        List<float[]> ws = new ArrayList<>();
                        p.consumers().forEach(c -> ws.add(w.weight(c)));
                        wMean = ScaleSearch.wMean(ws, K, GROUP);
                    }
                    float[] xMean = AwqMathTest.meanAbs(xIn, xIn.length / K, K);
                    for (int i : new int[] {0, p.best(), 13}) {
                        float[] s = ScaleSearch.scales(xMean, wMean, p.ratios()[i]);
                        double direct = directLoss(dec, w, spec, p, s, in, N_WIN, T);
                        assertEquals(direct, p.losses()[i], 2e-3 * direct + 1e-12,
                                p.previous() + " -> " + p.consumers() + " at ratio " + p.ratios()[i] + (duo ? " (duo)" : ""));
                        if (i == p.best()) {
                            assertEquals(0, relDiff(s, p.scales()), 1e-5, "the plan holds the chosen ratio's scales");
                        }
                    }
                    assertTrue(p.loss() <= p.lossAtZero(), "argmin");
                }
            }
        }
    }

    /** Scaling without quantization computes the same block, to float rounding (previous / s, consumers · s). */
    @Test
    void applyingScalePlansIsExact() throws IOException {
        for (String arch : new String[] {"LlamaForCausalLM", "Qwen2ForCausalLM"}) {
            Path dir = AwqTestSupport.syntheticModel(tmp.resolve(arch), arch, 4, 12);
            int[][] windows = AwqTestSupport.randomWindows(2, T, 2);
            try (ModelDir m = ModelDir.open(dir)) {
                ArchitectureSpec spec = m.spec();
                Decoder dec = new Decoder(m.config(), spec, ops);
                BlockWeights w = BlockWeights.load(WeightSource.of(m.weights()), m.config(), spec, 1);
                float[] x = embed(dec, m, windows);
                float[] ref = x.clone();
                dec.block(w, ref, 2, T, null, Taps.NONE);
                BlockWeights scaled = copy(w, spec);
                Random rnd = new Random(3);
                for (ArchitectureSpec.AwqMapping map : spec.awqMappings()) {
                    int K = w.shape(map.consumers().get(0))[1];
                    float[] s = new float[K];
                    for (int k = 0; k < K; k++) {
                        s[k] = (float) Math.exp(rnd.nextGaussian() * 1.5); // 0.01 .. 100
                    }
                    AwqApply.scale(scaled, spec, new ScalePlan(1, map.previous(), map.consumers(), map.inspect(), 0,
                            new double[] {0.5}, new double[] {0}, s));
                }
                assertNotEquals(w.weight("mlp.down_proj")[0], scaled.weight("mlp.down_proj")[0], "weights did change");
                float[] out = x.clone();
                dec.block(scaled, out, 2, T, null, Taps.NONE);
                double d = relDiff(out, ref);
                assertTrue(d < 1e-4, arch + ": block output moved by " + d + " of its max");
            }
        }
    }

    /** The search runs on GQA models without v -> o, and each chosen loss is at most α = 0's. */
    @Test
    void gqaSkipsValueToOutput() throws IOException {
        Path dir = AwqTestSupport.syntheticModel(tmp.resolve("gqa"), "LlamaForCausalLM", 2, 13);
        try (ModelDir m = ModelDir.open(dir)) {
            AwqStage.Result r = AwqStage.run(m, WeightSource.of(m.weights()), AwqTestSupport.randomWindows(3, T, 3),
                    new AwqStage.Config(GROUP, false, false, false, 8), ops, true);
            long skipped = r.mappings().stream().filter(x -> x.status().equals("skipped")).count();
            assertEquals(AwqTestSupport.LAYERS, skipped);
            assertTrue(r.mappings().stream().filter(x -> x.status().equals("skipped"))
                    .allMatch(x -> x.previous().endsWith("v_proj") && x.reason().contains("grouped KV heads")));
            assertEquals(3 * AwqTestSupport.LAYERS, r.scalePlans().size());
            assertTrue(r.clipPlans().isEmpty(), "--no-clip");
            assertEquals(7 * AwqTestSupport.LAYERS, r.quantized().size());
            for (ScalePlan p : r.scalePlans()) {
                assertTrue(p.loss() <= p.lossAtZero());
            }
            // the norms the scaling divided are handed to the writer
            assertTrue(r.modified().containsKey("model.layers.0.input_layernorm.weight"));
            assertTrue(r.modified().containsKey("model.layers.1.post_attention_layernorm.weight"));
        }
    }

    @Test
    void unfitLayersAreRefusedOrSkipped() throws IOException {
        Path dir = AwqTestSupport.syntheticModel(tmp.resolve("unfit"), "LlamaForCausalLM", 4, 14);
        try (ModelDir m = ModelDir.open(dir)) {
            int[][] windows = AwqTestSupport.randomWindows(2, 8, 4);
            // groups of 128 fit no in-features of 64
            ShrinkException e = assertThrows(ShrinkException.class, () -> AwqStage.run(m, WeightSource.of(m.weights()),
                    windows, new AwqStage.Config(128, true, true, false, 8), ops, true));
            assertTrue(e.getMessage().contains("model.layers.0.self_attn.q_proj") && e.getMessage().contains("--skip-unfit"),
                    e.getMessage());
            // groups of 128 with skip-unfit: only down_proj (in-features 128) is quantized; its up -> down mapping runs
            AwqStage.Result r = AwqStage.run(m, WeightSource.of(m.weights()), windows,
                    new AwqStage.Config(128, true, true, true, 8), ops, true);
            assertEquals(AwqTestSupport.LAYERS, r.quantized().size());
            assertTrue(r.quantized().keySet().stream().allMatch(k -> k.endsWith("mlp.down_proj")));
            assertTrue(r.layers().stream().filter(l -> l.status().equals("skipped"))
                    .allMatch(l -> l.reason().contains("not divisible by the group size 128")));
            // up_proj is unquantized but scaled (the previous op of up -> down): written as floats
            assertTrue(r.modified().containsKey("model.layers.0.mlp.up_proj.weight"));
            assertTrue(r.mappings().stream().anyMatch(x -> x.status().equals("skipped") && x.reason().contains("is not quantized")));
        }
    }

    private static float[] embed(Decoder dec, ModelDir m, int[][] windows) {
        float[] E = m.weights().floats("model.embed_tokens.weight");
        int C = m.config().hidden(), Tw = windows[0].length;
        float[] x = new float[windows.length * Tw * C];
        for (int s = 0; s < windows.length; s++) {
            System.arraycopy(dec.embed(E, windows[s]), 0, x, s * Tw * C, Tw * C);
        }
        return x;
    }

    /** mean((module(x; W) − module(x; Q(W·s)/s))²) with a plain R = 1 forward of the inspected module. */
    private double directLoss(Decoder dec, BlockWeights w, ArchitectureSpec spec, ScalePlan p, float[] s,
                              AwqTestSupport.Inputs in, int B, int Tw) {
        BlockWeights q = copy(w, spec);
        for (String c : p.consumers()) {
            int[] nk = w.shape(c);
            q.setWeight(c, ScaleSearch.scaledQuantized(w.weight(c), nk[0], nk[1], s, GROUP));
        }
        String first = p.consumers().get(0);
        float[] x = in.x.get(first);
        float[] a, b;
        switch (p.inspect()) {
            case "self_attn" -> {
                a = dec.attention(w, x, B, Tw, 1, null, Taps.NONE);
                b = dec.attention(q, x, B, Tw, 1, null, Taps.NONE);
            }
            case "mlp" -> {
                a = dec.mlp(w, x, B * Tw, 1, Taps.NONE);
                b = dec.mlp(q, x, B * Tw, 1, Taps.NONE);
            }
            default -> {
                int[] nk = w.shape(first);
                int M = x.length / nk[1];
                a = new float[M * nk[0]];
                b = new float[M * nk[0]];
                ops.linear(x, M, nk[1], w.weight(first), nk[0], a);
                ops.linear(x, M, nk[1], q.weight(first), nk[0], b);
            }
        }
        double sum = 0;
        for (int i = 0; i < a.length; i++) {
            double d = (double) a[i] - b[i];
            sum += d * d;
        }
        return sum / a.length;
    }
}
