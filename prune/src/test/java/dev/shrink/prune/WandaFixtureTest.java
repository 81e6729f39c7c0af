package dev.shrink.prune;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shrink.calib.EvalText;
import dev.shrink.core.safetensors.TokenWindows;
import dev.shrink.core.forward.WeightSource;
import dev.shrink.core.model.ArchitectureSpec;
import dev.shrink.core.ops.Backends;
import dev.shrink.core.ops.Ops;
import dev.shrink.core.sparse.SparsityPattern;
import dev.shrink.core.sparse.SparsityRecord;
import dev.shrink.eval.LoadedModel;
import dev.shrink.eval.Perplexity;
import dev.shrink.eval.PplResult;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Wanda end to end on fixture-llama-14m with a few calibration windows (the first of the golden C4
 * windows): exactly the requested sparsity in every row of every linear, a folder that evaluates,
 * and a lower perplexity than magnitude pruning at the same 50 % (the point of using activations).
 */
class WandaFixtureTest {
    @TempDir
    Path tmp;

    static final int CALIB = 8, EVAL_WINDOWS = 8;

    static double ppl(LoadedModel m, String what) {
        int[] ids = m.tokenStream(EvalText.load("heldout").text());
        PplResult r = Perplexity.evaluate(m.lm(), "heldout", ids, 512, EVAL_WINDOWS, true);
        System.out.println(what + ": " + r.summary());
        return r.ppl();
    }

    @Test
    void wandaIsExactAndBeatsMagnitudeAtHalfSparsity() {
        Ops ops = Backends.select("auto", 0);
        int[][] windows = Arrays.copyOf(TokenWindows.read(PruneTestSupport.shared()
                .resolve("golden/fixture-llama-14m.calib-c4-128x512.safetensors")), CALIB);
        SparsityPattern half = new SparsityPattern.Unstructured(0.5);
        Path wanda = tmp.resolve("wanda");
        PruneStage.Result r = PruneStage.compress(PruneTestSupport.fixture(), wanda,
                new PruneStage.Config("wanda", half, null, List.of(), List.of(), 8), windows, ops, true, false);

        assertEquals(42, r.totals().linearsPruned());
        for (PruneStage.LayerReport l : r.layers()) {
            float[] P = r.weights().get(l.name() + ".weight");
            for (int n = 0; n < l.N(); n++) {
                int z = 0;
                for (int j = 0; j < l.K(); j++) {
                    z += P[n * l.K() + j] == 0f ? 1 : 0;
                }
                assertEquals(l.K() / 2, z, l.name() + " row " + n);
            }
        }
        assertEquals(0.5, r.totals().linearRatio());
        assertEquals("wanda", r.record().method());
        assertEquals("row", r.record().scope());

        double pw;
        try (LoadedModel m = LoadedModel.open(wanda, ops)) {
            assertEquals(r.record(), SparsityRecord.read(m.dir()));
            pw = ppl(m, "wanda 0.5 per row, " + CALIB + " calibration windows");
        }
        // magnitude at the same 50 % (per layer, and per row like Wanda), its weights swapped into the float model
        double[] pm = new double[2];
        String[] scopes = {"layer", "row"};
        try (LoadedModel m = LoadedModel.open(PruneTestSupport.fixture(), ops)) {
            for (int s = 0; s < 2; s++) {
                PruneStage.Result mr = PruneStage.run(m.dir(), WeightSource.of(m.dir().weights()), null,
                        new PruneStage.Config("magnitude", half, scopes[s], List.of(), List.of(), 8), ops, true);
                ArchitectureSpec spec = m.dir().spec();
                for (int layer = 0; layer < m.lm().blocks().size(); layer++) {
                    for (ArchitectureSpec.Linear l : spec.linears()) {
                        m.lm().blocks().get(layer).setWeight(l.name(), mr.weights().get(spec.layer(layer, l.name()) + ".weight"));
                    }
                }
                pm[s] = ppl(m, "magnitude 0.5 per " + scopes[s]);
            }
        }
        // measured: 64.52 vs 65.61 (per layer) and 65.44 (per row); over 100 eval windows with the reference's
        // 128 calibration windows 47.67 vs 48.98 (unpruned ≈ 42.5): a modest gain, a small model has few
        // outlier features, but deterministic and the same at every size tried
        assertTrue(pw < pm[0] && pw < pm[1], "wanda " + pw + " vs magnitude per layer " + pm[0] + ", per row " + pm[1]);
    }
}
