package dev.shrink.distill;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shrink.core.forward.CausalLM;
import dev.shrink.core.forward.FusedLinears;
import dev.shrink.core.forward.Taps;
import dev.shrink.core.forward.WeightSource;
import dev.shrink.core.model.ModelConfig;
import dev.shrink.core.model.ModelDir;
import dev.shrink.eval.ArchFixtures;
import dev.shrink.kernels.cpu.VectorOps;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * The whole model's gradient on stories260K-hf (5 layers, GQA 8/4 heads, tied embeddings): the
 * backward of {@link TrainModel} in float64 against central finite differences of the loss for a
 * few random parameters of every kind of tensor (embedding rows, norms, each linear role, the final
 * norm), with a loss that uses every part of {@link Losses} (KL at T = 2 mixed with CE) plus a
 * hidden-state MSE on one block; then the float32 training path against that float64 gradient, and
 * the training forward against the evaluation decoder ({@link CausalLM}) on both fixtures.
 */
class ModelGradientTest {
    private static final int B = 2, T = 16;

    /** The loss of a pass and its gradients: KL(T=2)·0.6 + CE·0.4 per row, + 0.1 · MSE of block 2's output. */
    static <A> double lossAndGrad(TrainModel<A> model, int[] tokens, A teacher, A hiddenTarget, Weights<A> grads) {
        TrainOps<A> ops = model.ops();
        var cfg = model.weights().config();
        int M = B * T, V = cfg.vocab(), C = cfg.hidden();
        TrainModel.Pass<A> p = model.forward(tokens, B, T);
        int[] targets = targets(tokens);
        double klScale = 0.6 / M, ceScale = 0.4 / (B * (T - 1));
        A dLogits = ops.zeros(M * V);
        Losses.Sums s = ops.distillLoss(p.logits(), teacher, targets, Losses.Kind.KL, 2.0, M, V, klScale, ceScale, dLogits);
        double mseScale = 0.1 / ((double) M * C);
        List<A> dHidden = new ArrayList<>();
        for (int l = 0; l < cfg.layers(); l++) {
            dHidden.add(null);
        }
        A dh = ops.zeros(M * C);
        double se = ops.squaredError(p.blockOutput(2), hiddenTarget, M * C, mseScale, dh);
        dHidden.set(2, dh);
        if (grads != null) {
            model.backward(p, dLogits, dHidden, grads);
        }
        return klScale * s.kl() + ceScale * s.ce() + mseScale * se;
    }

    static int[] targets(int[] tokens) {
        int[] t = new int[tokens.length];
        for (int i = 0; i < tokens.length; i++) {
            t[i] = i % T == T - 1 ? -1 : tokens[i + 1];
        }
        return t;
    }

    static int[] tokens(int V, Random rnd) {
        int[] t = new int[B * T];
        for (int i = 0; i < t.length; i++) {
            t[i] = rnd.nextInt(V);
        }
        return t;
    }

    static float[] noise(Random rnd, int n, double scale) {
        float[] a = new float[n];
        for (int i = 0; i < n; i++) {
            a[i] = (float) (rnd.nextGaussian() * scale);
        }
        return a;
    }

    @Test
    void float64GradientMatchesFiniteDifferences() {
        try (ModelDir dir = ModelDir.open(TestSupport.stories())) {
            assertEquals(33, checkFiniteDifferences(dir, List.of("model.embed_tokens.weight",
                    "model.layers.0.input_layernorm.weight",
                    "model.layers.1.self_attn.q_proj.weight", "model.layers.1.self_attn.k_proj.weight",
                    "model.layers.2.self_attn.v_proj.weight", "model.layers.0.self_attn.o_proj.weight",
                    "model.layers.3.mlp.gate_proj.weight", "model.layers.4.mlp.up_proj.weight",
                    "model.layers.2.mlp.down_proj.weight", "model.layers.4.post_attention_layernorm.weight",
                    "model.norm.weight"), 21));
        }
    }

    /**
     * Qwen3 (the fixture transformers made: 3 layers, GQA 4/2 heads of an explicit head_dim 32 ≠ hidden / heads,
     * an untied head): the per-head RMSNorms of q and k before RoPE, their weights' gradients and the
     * gradients that flow through them into q_proj and k_proj.
     */
    @Test
    void qwen3GradientMatchesFiniteDifferences() {
        try (ModelDir dir = ModelDir.open(ArchFixtures.path("qwen3"))) {
            assertEquals(32, dir.config().headDim());
            assertEquals(36, checkFiniteDifferences(dir, List.of("model.embed_tokens.weight",
                    "model.layers.0.self_attn.q_norm.weight", "model.layers.2.self_attn.k_norm.weight",
                    "model.layers.1.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight",
                    "model.layers.1.self_attn.v_proj.weight", "model.layers.2.self_attn.o_proj.weight",
                    "model.layers.1.mlp.gate_proj.weight", "model.layers.0.input_layernorm.weight",
                    "model.layers.2.post_attention_layernorm.weight", "model.norm.weight", "lm_head.weight"), 24));
        }
    }

    /**
     * Gemma 3 (the fixture: 4 layers, head_dim 16, tied embeddings): the (1 + w) norms (input, q/k, the
     * attention's and MLP's outputs, the MLP's input, the final one), the embeddings scaled by √hidden,
     * GeGLU, and the RoPE of each layer type.
     */
    @Test
    void gemma3GradientMatchesFiniteDifferences() {
        try (ModelDir dir = ModelDir.open(ArchFixtures.path("gemma3"))) {
            assertTrue(dir.spec().unitOffsetNorms() && dir.config().localRope() != null);
            assertEquals(42, checkFiniteDifferences(dir, List.of("model.embed_tokens.weight",
                    "model.layers.0.input_layernorm.weight", "model.layers.1.self_attn.q_norm.weight",
                    "model.layers.2.self_attn.k_norm.weight", "model.layers.0.post_attention_layernorm.weight",
                    "model.layers.3.pre_feedforward_layernorm.weight", "model.layers.1.post_feedforward_layernorm.weight",
                    "model.layers.2.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight",
                    "model.layers.3.self_attn.o_proj.weight", "model.layers.1.mlp.gate_proj.weight",
                    "model.layers.2.mlp.up_proj.weight", "model.layers.0.mlp.down_proj.weight", "model.norm.weight"), 26));
        }
    }

    /**
     * Gemma 2 (the fixture: 3 layers, head_dim 16, query_pre_attn_scalar 24, tied embeddings, no q/k norms): the
     * attention's scale 24^-0.5 and the soft-caps, first as config.json sets them (50 and 30, which change the
     * fixture's small logits by 0.4 %), then with caps small enough that tanh bends them (asserted), so that the
     * (1 − tanh²) factors of the scores' and the logits' backward are what the finite differences check.
     */
    @Test
    void gemma2GradientMatchesFiniteDifferences() throws Exception {
        try (ModelDir dir = ModelDir.open(ArchFixtures.path("gemma2"))) {
            ModelConfig cfg = dir.config();
            assertTrue(cfg.attentionSoftcap() == 50f && cfg.finalSoftcap() == 30f && dir.spec().qNorm() == null);
            assertEquals(Math.pow(24, -0.5), cfg.attentionScale(), 1e-15);
            List<String> names = List.of("model.embed_tokens.weight", "model.layers.0.input_layernorm.weight",
                    "model.layers.1.self_attn.q_proj.weight", "model.layers.2.self_attn.k_proj.weight",
                    "model.layers.0.self_attn.v_proj.weight", "model.layers.1.self_attn.o_proj.weight",
                    "model.layers.2.post_attention_layernorm.weight", "model.layers.0.pre_feedforward_layernorm.weight",
                    "model.layers.1.post_feedforward_layernorm.weight", "model.layers.2.mlp.gate_proj.weight",
                    "model.layers.0.mlp.up_proj.weight", "model.layers.1.mlp.down_proj.weight", "model.norm.weight");
            assertEquals(39, checkFiniteDifferences(dir, cfg, names, 27));
            double attnBend = bend(dir, withCaps(dir, ATTN_CAP, 0)), logitBend = bend(dir, withCaps(dir, 0, LOGIT_CAP));
            assertTrue(attnBend > 0.05 && logitBend > 0.2, "the small caps change the logits by " + attnBend + " and "
                    + logitBend + " (relative)");
            ModelConfig tight = withCaps(dir, ATTN_CAP, LOGIT_CAP);
            assertEquals(39, checkFiniteDifferences(dir, tight, names, 28));
        }
    }

    /** Caps that bend the Gemma 2 fixture's attention scores and logits. */
    private static final double ATTN_CAP = 0.05, LOGIT_CAP = 0.3;

    /** {@code dir}'s config with other attn_logit_softcapping and final_logit_softcapping (≤ 0: none). */
    static ModelConfig withCaps(ModelDir dir, double attention, double logits) throws java.io.IOException {
        Path file = dir.dir().resolve("config.json");
        var root = (com.fasterxml.jackson.databind.node.ObjectNode) new com.fasterxml.jackson.databind.ObjectMapper()
                .readTree(file.toFile());
        for (String key : new String[] {"attn_logit_softcapping", "final_logit_softcapping"}) {
            double cap = key.startsWith("attn") ? attention : logits;
            if (cap > 0) {
                root.put(key, cap);
            } else {
                root.putNull(key); // no cap
            }
        }
        return ModelConfig.parse(root, file);
    }

    /** How much {@code cfg}'s caps change the logits: max |capped − uncapped| / max |uncapped| (float64, T tokens). */
    private static double bend(ModelDir dir, ModelConfig cfg) throws java.io.IOException {
        F64TrainOps ops = new F64TrainOps();
        int[] tokens = tokens(cfg.vocab(), new Random(3));
        double[][] z = new double[2][];
        ModelConfig[] both = {cfg, withCaps(dir, 0, 0)}; // capped, uncapped
        for (int i = 0; i < 2; i++) {
            z[i] = new TrainModel<>(ops, Weights.load(FusedLinears.of(dir), both[i], dir.spec(), ops), T)
                    .forward(tokens, B, T).logits();
        }
        double diff = 0, ref = 0;
        for (int i = 0; i < z[0].length; i++) {
            diff = Math.max(diff, Math.abs(z[0][i] - z[1][i]));
            ref = Math.max(ref, Math.abs(z[1][i]));
        }
        return diff / ref;
    }

    /**
     * Phi-3 (the fixture: fused qkv_proj and gate_up_proj, read apart; LongRoPE, whose attention factor
     * scales cos and sin, so its rotation is not orthogonal and its backward must scale alike).
     */
    @Test
    void phi3GradientMatchesFiniteDifferences() {
        try (ModelDir dir = ModelDir.open(ArchFixtures.path("phi3"))) {
            assertTrue(dir.config().rope().attentionFactor() != 1.0, "the fixture's LongRoPE scales cos and sin");
            assertEquals(15, checkFiniteDifferences(dir, List.of("model.layers.0.self_attn.q_proj.weight",
                    "model.layers.1.self_attn.k_proj.weight", "model.layers.2.self_attn.v_proj.weight",
                    "model.layers.1.mlp.gate_proj.weight", "model.layers.0.mlp.up_proj.weight"), 25));
        }
    }

    /**
     * The float64 backward of {@code dir}'s model against central finite differences of the loss at three
     * random entries of each named tensor (embedding entries in rows in use); returns the count checked.
     */
    private static int checkFiniteDifferences(ModelDir dir, List<String> names, long seed) {
        return checkFiniteDifferences(dir, dir.config(), names, seed);
    }

    /** {@link #checkFiniteDifferences(ModelDir, List, long)} with the model's config replaced by {@code cfg}. */
    private static int checkFiniteDifferences(ModelDir dir, ModelConfig cfg, List<String> names, long seed) {
        F64TrainOps ops = new F64TrainOps();
        Weights<double[]> w = Weights.load(FusedLinears.of(dir), cfg, dir.spec(), ops);
        TrainModel<double[]> model = new TrainModel<>(ops, w, T);
        Random rnd = new Random(seed);
        int V = cfg.vocab(), C = cfg.hidden();
        int[] tokens = tokens(V, rnd);
        double[] teacher = ops.adopt(noise(rnd, B * T * V, 2));
        double[] hiddenTarget = ops.adopt(noise(rnd, B * T * C, 1));
        Weights<double[]> grads = w.zerosLike(ops);
        lossAndGrad(model, tokens, teacher, hiddenTarget, grads);
        double h = 1e-5;
        int checked = 0;
        for (String name : names) {
            double[] p = w.get(name), g = grads.get(name);
            assertTrue(p != null && g != null, name + ": not a trained tensor");
            double gMax = Arrays.stream(g).map(Math::abs).max().orElse(0);
            assertTrue(gMax > 0, name + ": zero gradient");
            for (int trial = 0; trial < 3; trial++) {
                int i = name.contains("embed")
                        ? tokens[rnd.nextInt(tokens.length)] * C + rnd.nextInt(C) // a row in use
                        : rnd.nextInt(p.length);
                double old = p[i];
                p[i] = old + h;
                double lp = lossAndGrad(model, tokens, teacher, hiddenTarget, null);
                p[i] = old - h;
                double lm = lossAndGrad(model, tokens, teacher, hiddenTarget, null);
                p[i] = old;
                double fd = (lp - lm) / (2 * h);
                double err = Math.abs(fd - g[i]) / Math.max(Math.abs(g[i]), 1e-2 * gMax);
                assertTrue(err < 1e-5, name + "[" + i + "]: finite difference " + fd + ", backward " + g[i]
                        + " (relative error " + err + ")");
                checked++;
            }
        }
        return checked;
    }

    @Test
    void float32GradientMatchesFloat64() {
        for (var model : List.of(TestSupport.stories(), ArchFixtures.path("qwen3"), ArchFixtures.path("gemma3"),
                ArchFixtures.path("gemma2"))) {
          try (ModelDir dir = ModelDir.open(model)) {
            WeightSource src = WeightSource.of(dir.weights());
            F64TrainOps o64 = new F64TrainOps();
            F32TrainOps o32 = new F32TrainOps(new VectorOps(2), 2);
            Weights<double[]> w64 = Weights.load(src, dir.config(), dir.spec(), o64);
            Weights<float[]> w32 = Weights.load(src, dir.config(), dir.spec(), o32);
            Random rnd = new Random(22);
            int V = dir.config().vocab(), C = dir.config().hidden();
            int[] tokens = tokens(V, rnd);
            float[] teacher = noise(rnd, B * T * V, 2), target = noise(rnd, B * T * C, 1);
            Weights<double[]> g64 = w64.zerosLike(o64);
            Weights<float[]> g32 = w32.zerosLike(o32);
            double l64 = lossAndGrad(new TrainModel<>(o64, w64, T), tokens, o64.adopt(teacher), o64.adopt(target), g64);
            double l32 = lossAndGrad(new TrainModel<>(o32, w32, T), tokens, teacher.clone(), target.clone(), g32);
            assertEquals(l64, l32, 1e-5 * l64);
            var e64 = g64.entries();
            var e32 = g32.entries();
            assertEquals(e64.size(), e32.size());
            for (int t = 0; t < e64.size(); t++) {
                double[] a = e64.get(t).value();
                float[] b = e32.get(t).value();
                double dot = 0, na = 0, nb = 0, maxErr = 0, maxRef = 0;
                for (int i = 0; i < a.length; i++) {
                    dot += a[i] * b[i];
                    na += a[i] * a[i];
                    nb += (double) b[i] * b[i];
                    maxErr = Math.max(maxErr, Math.abs(a[i] - b[i]));
                    maxRef = Math.max(maxRef, Math.abs(a[i]));
                }
                String name = e64.get(t).name();
                assertTrue(dot / Math.sqrt(na * nb) > 1 - 1e-8, name + ": cosine " + dot / Math.sqrt(na * nb));
                assertTrue(maxErr < 1e-3 * maxRef, name + ": max error " + maxErr + " of " + maxRef);
            }
          }
        }
    }

    /**
     * The training forward's logits are the evaluation decoder's, on the LLaMA fixtures and the Qwen3 and
     * Phi-3 fixtures transformers made (Phi-3's fused tensors split as the stages read them; 64 tokens
     * use its short LongRoPE factors, 80 its long ones and attention factor), and Gemma 3's and Gemma 2's
     * (query_pre_attn_scalar's scale, soft-capped scores and logits) within their sliding windows.
     */
    @Test
    void trainingForwardIsTheEvaluationForward() {
        for (var model : List.of(TestSupport.stories(), TestSupport.fixture(), ArchFixtures.path("qwen3"),
                ArchFixtures.path("phi3"), ArchFixtures.path("gemma3"), ArchFixtures.path("gemma2"))) {
          try (ModelDir dir = ModelDir.open(model)) {
            // Gemma 3's and Gemma 2's fixtures slide over 8 keys, which training does not (distill refuses --seqlen past it)
            int window = dir.config().shortestWindow();
            for (int Tq : window > 0 ? new int[] {window} : new int[] {64, 80}) {
                WeightSource src = FusedLinears.of(dir);
                VectorOps backend = new VectorOps(2);
                CausalLM lm = CausalLM.load(src, dir.config(), dir.spec(), backend);
                F32TrainOps ops = new F32TrainOps(backend, 2);
                TrainModel<float[]> tm = new TrainModel<>(ops, Weights.load(src, dir.config(), dir.spec(), ops), 80);
                int[] tokens = new int[2 * Tq];
                Random rnd = new Random(23);
                for (int i = 0; i < tokens.length; i++) {
                    tokens[i] = rnd.nextInt(dir.config().vocab());
                }
                float[] ref = lm.logits(lm.hidden(tokens, 2, Tq, null, Taps.NONE), 0, 2 * Tq);
                float[] got = tm.forward(tokens, 2, Tq).logits();
                double maxRef = 0, maxErr = 0;
                for (int i = 0; i < ref.length; i++) {
                    maxRef = Math.max(maxRef, Math.abs(ref[i]));
                    maxErr = Math.max(maxErr, Math.abs(ref[i] - got[i]));
                }
                assertTrue(maxErr < 1e-4 * maxRef, model + " T=" + Tq + ": logits differ by " + maxErr
                        + " (max |logit| " + maxRef + ")");
            }
          }
        }
    }
}
