package dev.shrink.eval;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shrink.calib.EvalText;
import dev.shrink.core.forward.BlockWeights;
import dev.shrink.core.forward.Taps;
import dev.shrink.core.ops.Backends;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** Decoder.tapInputs delivers exactly the linear inputs that a full block delivers, and leaves x alone. */
class TapInputsTest {

    /** Copies every linear input it sees. */
    static final class Recorder implements Taps {
        final Map<String, float[]> inputs = new HashMap<>();

        @Override
        public void linearInput(int layer, String linear, float[] x, int M, int K) {
            inputs.put(linear, Arrays.copyOf(x, M * K));
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"self_attn.q_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.down_proj"})
    void sameInputsAsTheFullBlock(String wanted) {
        try (LoadedModel m = LoadedModel.open(Golden.model("fixture-llama-14m"), Backends.select("cpu", 0))) {
            int T = 64, B = 2;
            int[] ids = Arrays.copyOf(m.tokenStream(EvalText.load("heldout").text()), B * T);
            BlockWeights w = m.lm().blocks().get(1);
            float[] x = m.lm().decoder().embed(m.lm().embedding(), ids);
            m.lm().decoder().block(m.lm().blocks().get(0), x, B, T, null, Taps.NONE);
            float[] before = x.clone();

            Recorder partial = new Recorder();
            m.lm().decoder().tapInputs(w, x, B, T, Set.of(wanted), partial);
            assertArrayEquals(before, x, "x unchanged");
            Recorder full = new Recorder();
            m.lm().decoder().block(w, x.clone(), B, T, null, full);

            assertTrue(partial.inputs.containsKey(wanted));
            for (var e : partial.inputs.entrySet()) {
                assertArrayEquals(full.inputs.get(e.getKey()), e.getValue(), e.getKey());
            }
            int expected = switch (wanted) {
                case "self_attn.q_proj" -> 3;   // q, k, v share the first norm
                case "self_attn.o_proj" -> 4;
                case "mlp.gate_proj" -> 6;
                default -> 7;
            };
            assertEquals(expected, partial.inputs.size(), "ran no further than needed: " + List.copyOf(partial.inputs.keySet()));
        }
    }
}
