package dev.shrink.gptq;

import static dev.shrink.gptq.GptqTestSupport.fixture;
import static dev.shrink.gptq.GptqTestSupport.quantizeAll;
import static dev.shrink.gptq.GptqTestSupport.shared;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.shrink.calib.EvalText;
import dev.shrink.core.model.ModelDir;
import dev.shrink.core.ops.Backends;
import dev.shrink.core.ops.Ops;
import dev.shrink.core.quant.QuantizedLinear;
import dev.shrink.eval.GptqWeightSource;
import dev.shrink.eval.LoadedModel;
import dev.shrink.eval.Perplexity;
import dev.shrink.eval.PplResult;
import dev.shrink.eval.WeightSources;
import java.io.IOException;
import java.nio.file.Path;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A GPTQ folder written by {@link GptqCheckpoint} loads with the eval module's {@link LoadedModel}
 * and gives the perplexity a 4-bit model should: finite, a little above the float model's.
 */
class GptqEndToEndTest {

    @TempDir
    Path tmp;

    @Test
    void gptqFolderEvaluates() throws IOException {
        Path out = tmp.resolve("fixture-w4g128");
        try (ModelDir src = ModelDir.open(fixture())) {
            Map<String, QuantizedLinear> q = quantizeAll(src, 4, 128, true, false, 0);
            GptqCheckpoint.write(src, out, q, new GptqFormat(4, 128, true, false, false, true, 0.01, "shrink:0.1.0"), null);
        }
        JsonNode golden = new ObjectMapper().readTree(shared().resolve("golden/goldens-fixture-llama-14m.json").toFile());
        double fpFirst8 = golden.at("/ppl_first8/heldout").asDouble();

        Ops ops = Backends.select("cpu", 0);
        try (LoadedModel m = LoadedModel.open(out, ops)) {
            assertInstanceOf(GptqWeightSource.class, WeightSources.forModel(m.dir()));
            int[] ids = m.tokenStream(EvalText.load("heldout").text());
            PplResult r = Perplexity.evaluate(m.lm(), "heldout", ids, 512, 8, true);
            System.out.println("GPTQ w4g128 folder: " + r.summary() + "; float model first 8 windows: " + fpFirst8);
            assertEquals(8, r.windows());
            assertTrue(Double.isFinite(r.ppl()), r.summary());
            // RTN w4 g128 costs the fixture about 2 % on heldout (shared/golden/README.md: 42.88 -> 43.74);
            // a wrong packing, zero point or group would cost orders of magnitude more.
            assertTrue(r.ppl() > fpFirst8 * 0.99 && r.ppl() < fpFirst8 * 1.05,
                    () -> "4-bit ppl " + r.summary() + " vs float " + fpFirst8);
        }
    }
}
