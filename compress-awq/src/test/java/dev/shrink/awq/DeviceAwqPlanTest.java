package dev.shrink.awq;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.shrink.core.model.ArchitectureSpec;
import dev.shrink.core.model.ModelConfig;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;

/** The GPU loop's plan, checked where there is no GPU: its memory estimate against the 7B job's measured peak, chunks. */
class DeviceAwqPlanTest {
    static ModelConfig config(int layers, int hidden, int inter, int heads, int kvHeads, int vocab) {
        ObjectNode c = new ObjectMapper().createObjectNode();
        c.putArray("architectures").add("LlamaForCausalLM");
        c.put("hidden_size", hidden).put("intermediate_size", inter).put("num_hidden_layers", layers)
                .put("num_attention_heads", heads).put("num_key_value_heads", kvHeads).put("vocab_size", vocab)
                .put("max_position_embeddings", 4096).put("rms_norm_eps", 1e-5).put("hidden_act", "silu");
        return ModelConfig.parse(c, Path.of("synthetic/config.json"));
    }

    @Test
    void memoryEstimateMatchesTheMeasured7bPeak() {
        ModelConfig mc = config(32, 4096, 11008, 32, 32, 32000);
        double need = DeviceAwq.bytesNeeded(mc, 128, 2048) / (double) (1L << 30);
        // AwqDeviceBench on a `shrink synth --preset llama2-7b` folder, 128 x 2048 tokens, 2 blocks, H100:
        // 23.69 GiB allocated by the loop at its peak (the MLP's 20 candidates of gate and up, 6.7 GiB, on
        // top of X, Xmid, Xout (12 GiB), a chunk's scratch, one block and the Gram matrices)
        assertEquals(23.69, need, 0.02 * 23.69, "GiB");
        assertTrue(DeviceAwq.bytesNeeded(mc, 64, 2048) < DeviceAwq.bytesNeeded(mc, 128, 2048), "fewer sequences, less");
        assertEquals(8, DeviceAwq.chunkSequences(128, 2048));
        assertEquals(4, DeviceAwq.chunkSequences(4, 512));
    }

    @Test
    void theLlamaFamiliesRunOnTheLoop() {
        assertNull(DeviceAwq.unsupported(ArchitectureSpec.LLAMA));
    }
}
