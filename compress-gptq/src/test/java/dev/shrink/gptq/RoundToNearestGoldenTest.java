package dev.shrink.gptq;

import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.shrink.calib.EvalText;
import dev.shrink.calib.SharedData;
import dev.shrink.core.forward.BlockWeights;
import dev.shrink.core.ops.Backends;
import dev.shrink.eval.LoadedModel;
import dev.shrink.eval.Perplexity;
import dev.shrink.eval.PplResult;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The quantizer against PyTorch: every decoder linear of stories260K-hf fake-quantized to 4 bits
 * per output channel by {@link Gptq#roundToNearest}, then the full tinystories perplexity against
 * the golden RTN figures (shared/golden/goldens-stories260K.json), within the 0.2%.
 */
class RoundToNearestGoldenTest {

    @ParameterizedTest(name = "RTN w4 per-channel {0}")
    @CsvSource({"sym, true", "asym, false"})
    void matchesGoldenPerplexity(String name, boolean sym) throws Exception {
        Path shared = SharedData.root().orElse(Path.of("missing"));
        Path model = shared.resolve("models/stories260K-hf");
        assumeTrue(Files.isDirectory(model), "shared fixtures not found");
        JsonNode g = new ObjectMapper().readTree(shared.resolve("golden/goldens-stories260K.json").toFile());
        double ref = g.at("/ppl/rtn_w4_perchannel_" + name + "/tinystories").asDouble();
        QuantScheme scheme = QuantScheme.of(4, -1, sym);
        try (LoadedModel m = LoadedModel.open(model, Backends.select("cpu", 0))) {
            for (BlockWeights w : m.lm().blocks()) {
                for (String lin : w.linearNames()) {
                    int[] nk = w.shape(lin);
                    w.setWeight(lin, Gptq.roundToNearest(w.weight(lin), nk[0], nk[1], scheme).Q());
                }
            }
            int[] ids = m.tokenStream(EvalText.load("tinystories").text());
            PplResult r = Perplexity.evaluate(m.lm(), "tinystories", ids, 512, 0, true);
            assertTrue(Math.abs(r.ppl() / ref - 1) < 0.002, () -> "ppl " + r.ppl() + " vs golden " + ref);
        }
    }
}
