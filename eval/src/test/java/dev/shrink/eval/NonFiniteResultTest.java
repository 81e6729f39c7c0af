package dev.shrink.eval;

import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shrink.calib.EvalText;
import dev.shrink.core.ShrinkException;
import dev.shrink.core.forward.BlockWeights;
import dev.shrink.core.ops.Backends;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * A candidate whose forward overflows (finite weights: block 1's down_proj scaled to ~1e38) gives
 * an error naming the first op that went non-finite from every measure compare takes: perplexity,
 * KL from a clean reference, greedy generation. Before, they printed NaN with exit 0.
 */
class NonFiniteResultTest {
    @Test
    void everyMeasureNamesTheFirstNonFiniteOp() {
        var ops = Backends.select("cpu", 2);
        try (LoadedModel ref = LoadedModel.open(Golden.model("stories260K-hf"), ops);
             LoadedModel bad = LoadedModel.open(Golden.model("stories260K-hf"), ops)) {
            BlockWeights b = bad.lm().blocks().get(1);
            float[] w = WeightSources.forModel(bad.dir()).floats("model.layers.1.mlp.down_proj.weight");
            for (int i = 0; i < w.length; i++) {
                w[i] = Math.copySign(3e38f, w[i]);
            }
            b.setWeight("mlp.down_proj", w);
            int[] ids = ref.tokenStream(EvalText.load("tinystories").text());
            String where = "first at layer 1 mlp.down_proj (linear model.layers.1.mlp.down_proj)";

            ShrinkException ppl = assertThrows(ShrinkException.class,
                    () -> Perplexity.evaluate(bad.lm(), "tinystories", ids, 64, 2, true));
            assertTrue(ppl.getMessage().contains("stories260K-hf: tinystories window 0 (perplexity): non-finite output")
                    && ppl.getMessage().endsWith(where), ppl.getMessage());

            KlDivergence.Reference r = KlDivergence.reference(ref.lm(), "tinystories", ids, 64, 1);
            ShrinkException kl = assertThrows(ShrinkException.class, () -> KlDivergence.evaluate(r, bad.lm(), true));
            assertTrue(kl.getMessage().contains("window 0 (KL divergence): non-finite output")
                    && kl.getMessage().endsWith(where), kl.getMessage());

            ShrinkException gen = assertThrows(ShrinkException.class,
                    () -> Generator.generate(bad.lm(), java.util.Arrays.copyOf(ids, 5), 3, 0, 0, List.of(), t -> { }));
            assertTrue(gen.getMessage().contains("generation step 0: non-finite output")
                    && gen.getMessage().endsWith(where), gen.getMessage());
        }
    }
}
