package dev.shrink.gptq;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.shrink.calib.EvalText;
import dev.shrink.calib.SharedData;
import dev.shrink.core.safetensors.TokenWindows;
import dev.shrink.core.forward.WeightSource;
import dev.shrink.core.model.ModelDir;
import dev.shrink.core.ops.Backends;
import dev.shrink.core.ops.Ops;
import dev.shrink.eval.LoadedModel;
import dev.shrink.eval.Perplexity;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * On the real fixture model, GPTQ (8 of the golden calibration windows) written as a GPTQ folder
 * and read back gives a lower held-out perplexity than round-to-nearest, and both stay close to
 * the float model. The full-size comparison with the reference figures is scripts/quality-gptq.sh.
 */
class GptqBeatsRtnTest {
    @TempDir
    Path tmp;

    @Test
    void gptqBeatsRoundToNearestOnHeldout() {
        Path shared = SharedData.root().orElse(Path.of("missing"));
        Path model = shared.resolve("models/fixture-llama-14m");
        assumeTrue(Files.isDirectory(model), "shared fixtures not found");
        int[][] windows = Arrays.copyOf(TokenWindows.read(shared.resolve("golden/fixture-llama-14m.calib-c4-128x512.safetensors")), 8);
        Ops ops = Backends.select("cpu", 0);
        double gptq = quantizeAndEval(model, windows, "gptq", ops);
        double rtn = quantizeAndEval(model, windows, "rtn", ops);
        double fp;
        try (LoadedModel m = LoadedModel.open(model, ops)) {
            fp = Perplexity.evaluate(m.lm(), "heldout", m.tokenStream(EvalText.load("heldout").text()), 512, 8, true).ppl();
        }
        assertTrue(gptq < rtn, () -> "GPTQ " + gptq + " should beat RTN " + rtn);
        assertTrue(rtn < fp * 1.05 && gptq > fp * 0.99, () -> "fp " + fp + ", rtn " + rtn + ", gptq " + gptq);
    }

    private double quantizeAndEval(Path model, int[][] windows, String method, Ops ops) {
        Path out = tmp.resolve(method);
        QuantScheme s = QuantScheme.of(4, 128, true);
        try (ModelDir dir = ModelDir.open(model)) {
            GptqStage.Result r = GptqStage.run(dir, WeightSource.of(dir.weights()), windows,
                    new GptqStage.Config(method, s, false, false, true, 0.01, 128, 8), ops, true);
            assertEquals(6 * 7, r.quantized().size(), "every linear of the fixture fits g128");
            GptqCheckpoint.write(dir, out, r.quantized(), new GptqFormat(4, 128, true, false, false, true, 0.01, "shrink:test"), null);
        }
        try (LoadedModel m = LoadedModel.open(out, ops)) {
            return Perplexity.evaluate(m.lm(), "heldout", m.tokenStream(EvalText.load("heldout").text()), 512, 8, true).ppl();
        }
    }
}
