package dev.shrink.gptq;

import static dev.shrink.gptq.GptqTestSupport.shared;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.shrink.calib.EvalText;
import dev.shrink.core.forward.WeightSource;
import dev.shrink.core.model.ModelDir;
import dev.shrink.core.ops.Backends;
import dev.shrink.core.ops.Ops;
import dev.shrink.eval.GptqWeightSource;
import dev.shrink.eval.LoadedModel;
import dev.shrink.eval.Perplexity;
import dev.shrink.eval.PplResult;
import dev.shrink.eval.WeightSources;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.LinkedHashMap;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * GPTQ with AWQ's scales first ({@code awqScales}) on stories260K: the folder holds the scaled norms
 * (s folded into them) and GPTQ codes of the scaled weights, so that dequantized weight × norm is the
 * original W·diag(norm) up to quantization error; it loads as a GPTQ folder and evaluates like a 4-bit
 * model (with GPTAQ on top: GptqCommandTest).
 */
class AwqScalesGptqTest {
    @TempDir
    Path tmp;

    private static final String Q = "model.layers.%d.self_attn.q_proj.weight";
    private static final String NORM = "model.layers.%d.input_layernorm.weight";
    private static final String UP = "model.layers.%d.mlp.up_proj.weight";
    private static final String POST = "model.layers.%d.post_attention_layernorm.weight";

    @Test
    void scaledFolderIsTheSameFunctionQuantized() {
        Path model = shared().resolve("models/stories260K-hf");
        assumeTrue(Files.isDirectory(model), "missing " + model);
        Ops ops = Backends.select("cpu", 2);
        int[] ids;
        try (LoadedModel m = LoadedModel.open(model, ops)) {
            ids = m.tokenStream(EvalText.load("tinystories").text());
        }
        int T = 128;
        int[][] calib = new int[16][];
        for (int i = 0; i < calib.length; i++) {
            calib[i] = Arrays.copyOfRange(ids, (40 + i) * T, (41 + i) * T); // past the evaluated windows
        }
        QuantScheme s = QuantScheme.of(4, 32, true);
        GptqStage.Config plain = new GptqStage.Config("gptq", s, false, false, true, 0.01, 128, 8);
        Path outPlain = tmp.resolve("plain"), outAwq = tmp.resolve("awq");
        GptqStage.compress(model, outPlain, plain, calib, new LinkedHashMap<>(), "shrink:test", ops, true, false);
        GptqStage.Result r = GptqStage.compress(model, outAwq, plain.withMethods(true, false), calib, new LinkedHashMap<>(),
                "shrink:test", ops, true, false);
        assertTrue(r.modified().containsKey(NORM.formatted(0)), "the input norms were scaled: " + r.modified().keySet());

        try (ModelDir src = ModelDir.open(model); ModelDir out = ModelDir.open(outAwq)) {
            WeightSource a = WeightSource.of(src.weights());
            WeightSource b = WeightSources.forModel(out);
            assertInstanceOf(GptqWeightSource.class, b);
            int scaledChannels = 0;
            for (int layer = 0; layer < src.config().layers(); layer++) {
                for (String[] pair : new String[][] {{NORM, Q}, {POST, UP}}) {
                    if (!r.modified().containsKey(pair[0].formatted(layer))) {
                        // gate/up [172, 64] cannot be packed at 4 bits (172·4 not a multiple of 32): no MLP scaling
                        assertEquals(POST, pair[0], "the input norm of layer " + layer + " was not scaled");
                        continue;
                    }
                    float[] norm = a.floats(pair[0].formatted(layer)), normS = b.floats(pair[0].formatted(layer));
                    assertArrayEquals32(r.modified().get(pair[0].formatted(layer)), normS);
                    float[] W = a.floats(pair[1].formatted(layer)), Wq = b.floats(pair[1].formatted(layer));
                    int K = norm.length, N = W.length / K;
                    // the folded scale of channel k: s_k = norm_k / norm'_k; the quantized weight approximates W·diag(s)
                    double err = 0, ref = 0, errUnscaled = 0;
                    for (int k = 0; k < K; k++) {
                        double sk = (double) norm[k] / normS[k];
                        scaledChannels += Math.abs(sk - 1) > 1e-3 ? 1 : 0;
                        for (int n = 0; n < N; n++) {
                            double want = W[n * K + k] * sk;
                            err += (Wq[n * K + k] - want) * (Wq[n * K + k] - want);
                            errUnscaled += (Wq[n * K + k] - W[n * K + k]) * (Wq[n * K + k] - W[n * K + k]);
                            ref += want * want;
                        }
                    }
                    // 4-bit groups of 32 leave ~5-10 % relative error; the unscaled weight is further away
                    double rel = Math.sqrt(err / ref);
                    assertTrue(rel < 0.2, pair[1].formatted(layer) + ": relative error " + rel);
                    assertTrue(err < errUnscaled, pair[1].formatted(layer) + ": the codes are not of the scaled weight");
                }
            }
            assertTrue(scaledChannels > 0, "no channel was scaled");
        }

        double fp = ppl(model, ops), pPlain = ppl(outPlain, ops), pAwq = ppl(outAwq, ops);
        System.out.printf("stories260K tinystories 4 windows: float %.4f, gptq %.4f, awq-scales+gptq %.4f%n", fp, pPlain, pAwq);
        for (double p : new double[] {pPlain, pAwq}) {
            // 4-bit g32 costs this tiny model a few per cent; a wrong fold or a stale norm costs far more
            assertTrue(p > fp * 0.98 && p < fp * 1.25, "ppl " + p + " vs float " + fp);
        }
    }

    private static double ppl(Path dir, Ops ops) {
        try (LoadedModel m = LoadedModel.open(dir, ops)) {
            int[] ids = m.tokenStream(EvalText.load("tinystories").text());
            PplResult r = Perplexity.evaluate(m.lm(), "tinystories", ids, 128, 4, true);
            assertEquals(4, r.windows());
            return r.ppl();
        }
    }

    private static void assertArrayEquals32(float[] want, float[] got) {
        assertEquals(want.length, got.length);
        for (int i = 0; i < want.length; i++) {
            assertEquals(want[i], got[i], Math.abs(want[i]) * 1e-6 + 1e-7, "written norm differs at " + i);
        }
    }
}
