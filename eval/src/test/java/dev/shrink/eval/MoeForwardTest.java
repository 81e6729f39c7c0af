package dev.shrink.eval;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shrink.core.forward.BlockWeights;
import dev.shrink.core.forward.CausalLM;
import dev.shrink.core.forward.Routing;
import dev.shrink.core.forward.Taps;
import dev.shrink.core.model.ArchitectureSpec;
import dev.shrink.core.model.ModelConfig;
import dev.shrink.core.model.MoeConfig;
import dev.shrink.core.model.ModelDir;
import dev.shrink.core.ops.Backends;
import dev.shrink.core.safetensors.SafetensorsFile;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * What the stages will observe of a mixture of experts (transformers' fixtures, arch/FAMILY/): the taps
 * see the router's input on every row, each expert linear's input on exactly the rows routed to it (the
 * router's input rows in increasing token order, as {@link Routing} chooses them from the router's
 * logits), every token at k experts, the shared expert on every row; and {@code tapInputs} of a sparse
 * block's expert linears delivers what the block's own forward delivered.
 */
class MoeForwardTest {

    /** Every linear input of one block, copied. */
    static final class Recorder implements Taps {
        final int layer;
        final Map<String, float[]> inputs = new LinkedHashMap<>();

        Recorder(int layer) {
            this.layer = layer;
        }

        @Override
        public void linearInput(int l, String linear, float[] x, int M, int K) {
            if (l == layer) {
                inputs.put(linear, Arrays.copyOf(x, M * K));
            }
        }
    }

    @ParameterizedTest
    @CsvSource({"qwen2_moe", "mixtral", "qwen3_moe"})
    void tapsSeeEachExpertOnItsRoutedRows(String family) {
        try (ModelDir m = ModelDir.open(ArchitectureGoldenTest.fixture(family));
             SafetensorsFile ref = SafetensorsFile.open(m.dir().resolve("reference.safetensors"))) {
            ModelConfig cfg = m.config();
            ArchitectureSpec spec = m.spec();
            MoeConfig moe = cfg.moe();
            ArchitectureSpec.Moe names = spec.moe();
            CausalLM lm = CausalLM.load(WeightSources.forModel(m), cfg, spec, Backends.select("cpu", 0), false); // float arrays: the test reads the router
            int[] ids = ref.readInts("input_ids");
            int M = ids.length, C = cfg.hidden(), E = moe.experts(), layer = 1;
            assertTrue(cfg.sparseLayer(layer));
            Recorder rec = new Recorder(layer);
            lm.hidden(ids, 1, M, null, rec);
            float[] h = rec.inputs.get(names.router());
            assertEquals(M * C, h.length, "the router sees every row");
            BlockWeights w = lm.blocks().get(layer);
            float[] logits = new float[M * E];
            lm.decoder().ops().linear(h, M, C, w.weight(names.router()), E, logits);
            Routing route = Routing.of(logits, M, E, moe.topK(), moe.normTopK());
            int routed = 0;
            for (int e = 0; e < E; e++) {
                int[] rows = route.rows(e);
                String gate = names.expert(e, names.gate()), up = names.expert(e, names.up());
                if (rows.length == 0) {
                    assertTrue(!rec.inputs.containsKey(gate), "an expert without tokens is not run");
                    continue;
                }
                float[] expected = new float[rows.length * C];
                for (int i = 0; i < rows.length; i++) {
                    System.arraycopy(h, rows[i] * C, expected, i * C, C);
                }
                assertArrayEquals(expected, rec.inputs.get(gate), family + " expert " + e + "'s input: its routed rows");
                assertArrayEquals(expected, rec.inputs.get(up));
                assertEquals(rows.length * moe.expertIntermediate(), rec.inputs.get(names.expert(e, names.down())).length);
                routed += rows.length;
            }
            assertEquals(M * moe.topK(), routed, "every token at k experts");
            if (moe.sharedExpert()) {
                assertArrayEquals(h, rec.inputs.get(names.shared(names.gate())), "the shared expert sees every row");
                assertArrayEquals(h, rec.inputs.get(names.sharedExpertGate()));
            }

            // tapInputs of the expert linears: the same arrays as the block's forward gave
            float[] x = lm.decoder().embed(lm.embedding(), ids);
            for (int l = 0; l < layer; l++) {
                lm.decoder().block(lm.blocks().get(l), x, 1, M, null, Taps.NONE);
            }
            Recorder only = new Recorder(layer);
            float[] before = x.clone();
            lm.decoder().tapInputs(w, x, 1, M, Set.of(names.expert(0, names.down())), only);
            assertArrayEquals(before, x, "tapInputs leaves x alone");
            assertEquals(rec.inputs.keySet(), only.inputs.keySet());
            for (String k : rec.inputs.keySet()) {
                assertArrayEquals(rec.inputs.get(k), only.inputs.get(k), k);
            }
        }
    }
}
