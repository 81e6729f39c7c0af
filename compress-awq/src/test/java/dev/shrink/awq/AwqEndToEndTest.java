package dev.shrink.awq;

import static dev.shrink.awq.AwqTestSupport.fixture;
import static dev.shrink.awq.AwqTestSupport.shared;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.shrink.calib.EvalText;
import dev.shrink.core.safetensors.TokenWindows;
import dev.shrink.core.forward.CausalLM;
import dev.shrink.core.forward.WeightSource;
import dev.shrink.core.model.ModelDir;
import dev.shrink.core.ops.Backends;
import dev.shrink.core.ops.Ops;
import dev.shrink.eval.AwqWeightSource;
import dev.shrink.eval.LoadedModel;
import dev.shrink.eval.Perplexity;
import dev.shrink.eval.PplResult;
import dev.shrink.eval.WeightSources;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Set;
import java.util.stream.Collectors;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * AWQ on fixture-llama-14m with a little of the golden calibration data, written as an AutoAWQ GEMM
 * folder and evaluated the way `shrink eval` does: it loads through AwqWeightSource and beats plain
 * round-to-nearest with the same quantizer.
 */
class AwqEndToEndTest {
    @TempDir
    Path tmp;

    @Test
    void awqFolderEvaluatesBetterThanRoundToNearest() throws IOException {
        Path golden = shared().resolve("golden");
        int[][] all = TokenWindows.read(golden.resolve("fixture-llama-14m.calib-c4-128x512.safetensors"));
        int[][] windows = new int[4][];
        for (int i = 0; i < windows.length; i++) {
            windows[i] = Arrays.copyOf(all[i], 128);
        }
        Ops ops = Backends.select("cpu", 0);
        Path out = tmp.resolve("fixture-awq");
        double rtn;
        int[] ids;
        try (ModelDir src = ModelDir.open(fixture())) {
            AwqStage.Result r = AwqStage.run(src, WeightSource.of(src.weights()), windows,
                    new AwqStage.Config(128, false, true, false, 4), ops, true);
            assertEquals(42, r.quantized().size());
            AwqCheckpoint.write(src, out, r.quantized(), r.modified(), 128, AwqCheckpoint.Export.GEMM, null, false);
            // the bf16 norms that the scaling changed are written as fp16
            try (ModelDir q = ModelDir.open(out)) {
                assertEquals(dev.shrink.core.tensor.DType.F16, q.weights().info("model.layers.0.input_layernorm.weight").dtype());
                assertEquals(dev.shrink.core.tensor.DType.BF16, q.weights().info("model.embed_tokens.weight").dtype());
            }
            // round-to-nearest with AWQ's quantizer, no search: the baseline
            Set<String> linears = r.quantized().keySet().stream().map(x -> x + ".weight").collect(Collectors.toSet());
            WeightSource plain = WeightSource.of(src.weights());
            WeightSource rtnSource = new WeightSource() {
                @Override
                public boolean has(String name) {
                    return plain.has(name);
                }

                @Override
                public float[] floats(String name) {
                    float[] w = plain.floats(name);
                    if (!linears.contains(name)) {
                        return w;
                    }
                    long[] s = plain.shape(name);
                    return AwqQuantizer.pseudoQuantize(w, (int) s[0], (int) s[1], 128);
                }

                @Override
                public long[] shape(String name) {
                    return plain.shape(name);
                }
            };
            try (LoadedModel m = LoadedModel.open(fixture(), ops)) {
                // the first 6 windows need ~3k tokens: a prefix of the text tokenizes to the same ids, faster
                ids = m.tokenStream(EvalText.load("heldout").text().substring(0, 60_000));
            }
            CausalLM rtnModel = CausalLM.load(rtnSource, src.config(), src.spec(), ops);
            rtn = Perplexity.evaluate(rtnModel, "heldout", ids, 512, 6, true).ppl();
        }
        JsonNode g = new ObjectMapper().readTree(shared().resolve("golden/goldens-fixture-llama-14m.json").toFile());
        double fp8 = g.at("/ppl_first8/heldout").asDouble();
        try (LoadedModel m = LoadedModel.open(out, ops)) {
            assertInstanceOf(AwqWeightSource.class, WeightSources.forModel(m.dir()));
            PplResult awq = Perplexity.evaluate(m.lm(), "heldout", ids, 512, 6, true);
            System.out.println("AWQ w4g128 folder (512 calibration tokens): " + awq.summary() + "; RTN " + rtn
                    + "; float, first 8 windows: " + fp8);
            assertTrue(Double.isFinite(awq.ppl()) && awq.ppl() < rtn, "AWQ " + awq.ppl() + " vs RTN " + rtn);
            // the float model's first 8 windows: 60.62; RTN g128 costs ~2 %, a broken packing orders of magnitude more
            assertTrue(awq.ppl() > fp8 * 0.95 && awq.ppl() < fp8 * 1.05, awq.summary() + " vs float " + fp8);
        }
        assertTrue(Files.isRegularFile(out.resolve("tokenizer.json")));
    }
}
