package dev.shrink.core.model;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.shrink.core.ShrinkException;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;

class ModelConfigTest {
    private static final Path SRC = Path.of("config.json");

    static ModelConfig parse(String json) throws Exception {
        return ModelConfig.parse((ObjectNode) new ObjectMapper().readTree(json), SRC);
    }

    static final String LLAMA2_STYLE = """
            {"architectures": ["LlamaForCausalLM"], "hidden_size": 4096, "intermediate_size": 11008,
             "num_hidden_layers": 32, "num_attention_heads": 32, "vocab_size": 32000,
             "max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
             "torch_dtype": "float16", "bos_token_id": 1, "eos_token_id": 2}""";

    @Test
    void transformers4StyleWithDefaults() throws Exception {
        ModelConfig c = parse(LLAMA2_STYLE);
        assertEquals(32, c.kvHeads(), "no num_key_value_heads: multi-head attention");
        assertEquals(128, c.headDim(), "head_dim = hidden / heads");
        assertEquals(10000.0, c.rope().theta());
        assertEquals("default", c.rope().type());
        assertFalse(c.tiedEmbeddings(), "LLaMA's default is an untied head");
        assertFalse(c.attentionBias());
        assertEquals("float16", c.torchDtype());
        assertEquals(1, c.bosTokenId());
        assertEquals(java.util.List.of(2), c.eosTokenIds());
        assertSame(ArchitectureSpec.LLAMA, ArchitectureSpec.forArchitecture(c.architecture(), SRC));
    }

    @Test
    void transformers5RopeParametersAndRealSmolLm2Config() throws Exception {
        Path p = Path.of(System.getProperty("shrink.shared", "../shared"), "models/hf-configs/SmolLM2-135M/config.json");
        assumeTrue(Files.exists(p), "shared configs not found");
        ModelConfig c = ModelConfig.read(p);
        assertEquals(100000.0, c.rope().theta(), "rope_theta inside rope_parameters");
        assertEquals(9, c.heads());
        assertEquals(3, c.kvHeads());
        assertEquals(64, c.headDim());
        assertEquals(576, c.hidden());
        assertTrue(c.tiedEmbeddings());
        assertEquals("bfloat16", c.torchDtype(), "transformers 5 writes dtype, not torch_dtype");
        assertEquals(0, c.bosTokenId());
    }

    @Test
    void mistralAndQwen2() throws Exception {
        ModelConfig m = parse(LLAMA2_STYLE.replace("LlamaForCausalLM", "MistralForCausalLM")
                .replace("\"vocab_size\"", "\"num_key_value_heads\": 8, \"sliding_window\": 4096, \"vocab_size\""));
        assertEquals(8, m.kvHeads());
        assertEquals(4096, m.slidingWindow());
        assertSame(ArchitectureSpec.MISTRAL, ArchitectureSpec.forArchitecture(m.architecture(), SRC));
        ModelConfig q = parse(LLAMA2_STYLE.replace("LlamaForCausalLM", "Qwen2ForCausalLM")
                .replace("\"vocab_size\"", "\"use_sliding_window\": false, \"sliding_window\": 4096, \"vocab_size\""));
        assertTrue(q.attentionBias(), "Qwen2 always has q/k/v biases");
        assertEquals(0, q.slidingWindow(), "Qwen2 uses the window only when use_sliding_window");
        assertTrue(ArchitectureSpec.QWEN2.linear(ArchitectureSpec.Role.Q).bias());
    }

    @Test
    void llama3RopeScalingKeepsHighFrequencies() throws Exception {
        ModelConfig c = parse(LLAMA2_STYLE.replace("\"rope_theta\": 10000.0", "\"rope_theta\": 500000.0, \"rope_scaling\": "
                + "{\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, "
                + "\"original_max_position_embeddings\": 8192}"));
        double[] scaled = c.rope().inverseFrequencies(128);
        double[] plain = new ModelConfig.RopeConfig(500000.0, "default", 1, 1, 4, 8192).inverseFrequencies(128);
        assertEquals(plain[0], scaled[0], 0, "short wavelengths untouched");
        assertEquals(plain[63] / 8, scaled[63], 1e-12 * plain[63], "long wavelengths divided by the factor");
    }

    @Test
    void inverseFrequenciesAreTorchs() {
        // torch: 1 / 10000 ** (arange(0, 8, 2).float() / 8) = [1, 0.1, 0.01, 0.001]
        double[] inv = new ModelConfig.RopeConfig(10000, "default", 1, 1, 4, 8192).inverseFrequencies(8);
        assertArrayEquals(new double[] {1, 0.1, 0.01, 0.001}, inv, 1e-7);
    }

    @Test
    void errorsNameTheFileAndTheField() {
        ShrinkException missing = assertThrows(ShrinkException.class, () -> parse(LLAMA2_STYLE.replace("\"hidden_size\"", "\"hidden\"")));
        assertTrue(missing.getMessage().startsWith("config.json: ") && missing.getMessage().contains("hidden_size"), missing.getMessage());
        ShrinkException arch = assertThrows(ShrinkException.class, () -> parse(LLAMA2_STYLE.replace("LlamaForCausalLM", "GPTNeoXForCausalLM")));
        assertTrue(arch.getMessage().contains("unsupported architecture 'GPTNeoXForCausalLM'"), arch.getMessage());
        ShrinkException gqa = assertThrows(ShrinkException.class, () -> parse(LLAMA2_STYLE.replace("\"vocab_size\"", "\"num_key_value_heads\": 5, \"vocab_size\"")));
        assertTrue(gqa.getMessage().contains("num_key_value_heads"), gqa.getMessage());
        ShrinkException rope = assertThrows(ShrinkException.class, () -> parse(LLAMA2_STYLE.replace("\"rope_theta\": 10000.0",
                "\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4}")));
        assertTrue(rope.getMessage().contains("yarn"), rope.getMessage());
        ShrinkException act = assertThrows(ShrinkException.class, () -> parse(LLAMA2_STYLE.replace("\"vocab_size\"", "\"hidden_act\": \"gelu\", \"vocab_size\"")));
        assertTrue(act.getMessage().contains("gelu"), act.getMessage());
        ShrinkException notInt = assertThrows(ShrinkException.class, () -> parse(LLAMA2_STYLE.replace("\"num_hidden_layers\": 32", "\"num_hidden_layers\": \"32\"")));
        assertTrue(notInt.getMessage().contains("num_hidden_layers"), notInt.getMessage());
    }

    @Test
    void noBosWhenTheConfigHasNone() throws Exception {
        assertNull(parse(LLAMA2_STYLE.replace("\"bos_token_id\": 1,", "")).bosTokenId());
    }
}
