package dev.shrink.eval;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.shrink.calib.EvalText;
import dev.shrink.core.forward.Taps;
import dev.shrink.core.ops.Backends;
import dev.shrink.core.safetensors.SafetensorsWriter;
import dev.shrink.core.safetensors.TensorData;
import dev.shrink.core.safetensors.WeightStore;
import dev.shrink.core.tensor.DType;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The plain-Java reference backend against the golden logits, and the Qwen2 (q/k/v bias) path. */
class BackendsAndFamiliesTest {
    @TempDir
    Path tmp;

    /** The reference backend is the spec: it must reproduce PyTorch on its own. */
    @Test
    void referenceBackendMatchesGoldenLogits() {
        JsonNode g = Golden.numbers("stories260K").get("logits_wikitext2_first64");
        try (LoadedModel m = LoadedModel.open(Golden.model("stories260K-hf"), Backends.select("cpu-reference", 1))) {
            int[] ids = Arrays.copyOf(m.tokenStream(EvalText.load("wikitext2").text()), 64);
            float[] logits = m.lm().logits(m.lm().hidden(ids, 1, 64, null, Taps.NONE), 0, 64);
            int V = m.lm().config().vocab();
            for (int i = 0; i < 8; i++) {
                assertEquals(g.get("pos0_first8").get(i).asDouble(), logits[i], 2e-3);
                assertEquals(g.get("pos63_first8").get(i).asDouble(), logits[63 * V + i], 2e-3);
            }
        }
    }

    /**
     * Qwen2's q/k/v biases. With zero biases it computes what the LLaMA does. A bias b on v shifts
     * every head's attention output by b (softmax weights sum to 1), so o_proj adds Wo·b: the same
     * model as a LLaMA whose o_proj has the bias Wo·b, an independent way to the same logits.
     */
    @Test
    void qwen2BiasesAreApplied() throws Exception {
        Path src = Golden.model("stories260K-hf");
        var ops = Backends.select("cpu", 0);
        Path zero = copy(src, tmp.resolve("zero"), "Qwen2ForCausalLM", 0f, false);
        Path qwen = copy(src, tmp.resolve("qwen"), "Qwen2ForCausalLM", 0.25f, false);
        Path llama = copy(src, tmp.resolve("llama"), "LlamaForCausalLM", 0.25f, true);
        float[] base = logits(src, ops), z = logits(zero, ops), q = logits(qwen, ops), l = logits(llama, ops);
        double moved = 0;
        for (int i = 0; i < base.length; i++) {
            assertEquals(base[i], z[i], 1e-5);
            assertEquals(l[i], q[i], 1e-4);
            moved = Math.max(moved, Math.abs(base[i] - q[i]));
        }
        assertNotEquals(0.0, moved, "a non-zero bias changes the logits");
    }

    private static float[] logits(Path model, dev.shrink.core.ops.Ops ops) {
        try (LoadedModel m = LoadedModel.open(model, ops)) {
            int[] ids = Arrays.copyOf(m.tokenStream(EvalText.load("tinystories").text()), 32);
            return m.lm().logits(m.lm().hidden(ids, 1, 32, null, Taps.NONE), 0, 32);
        }
    }

    /**
     * Writes stories260K under another architecture name. vBias: the bias of every v_proj (q/k get
     * zero biases) or, with {@code foldIntoO}, no q/k/v biases and o_proj.bias = Wo·vBias instead.
     */
    static Path copy(Path src, Path dst, String arch, float vBias, boolean foldIntoO) throws Exception {
        Files.createDirectories(dst);
        ObjectNode cfg = (ObjectNode) new ObjectMapper().readTree(src.resolve("config.json").toFile());
        cfg.putArray("architectures").add(arch);
        Files.writeString(dst.resolve("config.json"), cfg.toString());
        Files.copy(src.resolve("tokenizer.json"), dst.resolve("tokenizer.json"));
        List<TensorData> tensors = new ArrayList<>();
        try (WeightStore w = WeightStore.open(src)) {
            for (String n : w.names()) {
                long[] shape = w.info(n).shape();
                float[] W = w.floats(n);
                tensors.add(TensorData.ofFloats(n, shape, W, DType.F32));
                boolean qkv = n.endsWith("q_proj.weight") || n.endsWith("k_proj.weight") || n.endsWith("v_proj.weight");
                if (qkv && !foldIntoO) {
                    float[] b = new float[(int) shape[0]];
                    Arrays.fill(b, n.endsWith("v_proj.weight") ? vBias : 0f);
                    tensors.add(TensorData.ofFloats(n.replace(".weight", ".bias"), new long[] {shape[0]}, b, DType.F32));
                }
                if (foldIntoO && n.endsWith("o_proj.weight")) {
                    // b_o[n] = Σ_k Wo[n, k] · vBias (the v bias repeats over the H heads of the attention output)
                    int N = (int) shape[0], K = (int) shape[1];
                    float[] b = new float[N];
                    for (int r = 0; r < N; r++) {
                        double acc = 0;
                        for (int k = 0; k < K; k++) {
                            acc += W[r * K + k] * (double) vBias;
                        }
                        b[r] = (float) acc;
                    }
                    tensors.add(TensorData.ofFloats(n.replace(".weight", ".bias"), new long[] {N}, b, DType.F32));
                }
            }
            SafetensorsWriter.write(dst.resolve("model.safetensors"), tensors, Map.of());
        }
        return dst;
    }
}
