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

    /** Which blocks use a window, as transformers' configs decide it (see ModelConfig.slidingWindow(int)). */
    @Test
    void slidingWindowPerLayerAsTransformersReadsIt() throws Exception {
        String mistral = LLAMA2_STYLE.replace("LlamaForCausalLM", "MistralForCausalLM");
        assertEquals(4096, parse(mistral).slidingWindow(5), "MistralConfig's default when the key is absent");
        assertEquals(0, parse(mistral.replace("\"vocab_size\"", "\"sliding_window\": null, \"vocab_size\"")).slidingWindow(0),
                "null: full attention");
        ModelConfig m4 = parse(mistral.replace("\"vocab_size\"", "\"sliding_window\": 4, \"vocab_size\""));
        assertEquals(4, m4.slidingWindow(0));
        assertEquals(4, m4.slidingWindow(31), "Mistral: every block");
        assertEquals(0, parse(LLAMA2_STYLE.replace("\"vocab_size\"", "\"sliding_window\": 4, \"vocab_size\""))
                .slidingWindow(3), "LlamaForCausalLM has no sliding window");
        String qwen = LLAMA2_STYLE.replace("LlamaForCausalLM", "Qwen2ForCausalLM")
                .replace("\"vocab_size\"", "\"use_sliding_window\": true, \"sliding_window\": 8, \"vocab_size\"");
        ModelConfig q = parse(qwen.replace("\"vocab_size\"", "\"max_window_layers\": 2, \"vocab_size\""));
        assertEquals(0, q.slidingWindow(1), "blocks below max_window_layers: full attention");
        assertEquals(8, q.slidingWindow(2));
        assertEquals(0, parse(qwen).slidingWindow(27), "max_window_layers defaults to 28");
        assertEquals(8, parse(qwen).slidingWindow(28));
        ModelConfig typed = parse(qwen.replace("\"vocab_size\"", "\"layer_types\": [\"sliding_attention\", "
                + "\"full_attention\"], \"vocab_size\""));
        assertEquals(8, typed.slidingWindow(0), "layer_types decides where given");
        assertEquals(0, typed.slidingWindow(1));
        ShrinkException e = assertThrows(ShrinkException.class,
                () -> parse(mistral.replace("\"vocab_size\"", "\"sliding_window\": 0, \"vocab_size\"")));
        assertTrue(e.getMessage().startsWith("config.json: field 'sliding_window' must be a positive integer"), e.getMessage());
    }

    /** Values that make the forward non-finite are refused, naming the field. */
    @Test
    void valuesThatMakeTheMathNonFiniteAreRefused() {
        for (String[] c : new String[][] {
                {"\"rope_theta\": 10000.0", "\"rope_theta\": 0", "rope_theta"},
                {"\"rope_theta\": 10000.0", "\"rope_theta\": -5.0", "rope_theta"},
                {"\"rms_norm_eps\": 1e-5", "\"rms_norm_eps\": -1", "rms_norm_eps"},
                {"\"rms_norm_eps\": 1e-5", "\"rms_norm_eps\": 0.0", "rms_norm_eps"}}) {
            ShrinkException e = assertThrows(ShrinkException.class, () -> parse(LLAMA2_STYLE.replace(c[0], c[1])), c[1]);
            // refused by the field's type rule (a positive number) or, for derived values, by the finiteness rule
            assertTrue(e.getMessage().startsWith("config.json: field '" + c[2] + "' must be a positive number")
                    || e.getMessage().startsWith("config.json: '" + c[2] + "' must be a finite number above 0"), e.getMessage());
        }
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

    /** The message of the error parsing LLAMA2_STYLE with {@code from} replaced by {@code to}. */
    static String refused(String from, String to) {
        assertTrue(LLAMA2_STYLE.contains(from), from);
        String m = assertThrows(ShrinkException.class, () -> parse(LLAMA2_STYLE.replace(from, to))).getMessage();
        assertTrue(m.startsWith("config.json: ") && !m.contains("\n"), m);
        return m;
    }

    @Test
    void integersThatDoNotFitAreRefusedNotTruncated() {
        // 4294967304 = 2^32 + 8 used to be read as 8
        String m = refused("\"vocab_size\"", "\"head_dim\": 4294967304, \"vocab_size\"");
        assertTrue(m.contains("'head_dim'") && m.contains("4294967304"), m);
        assertTrue(refused("\"hidden_size\": 4096", "\"hidden_size\": 2147483648").contains("'hidden_size'"));
        assertTrue(refused("\"vocab_size\": 32000", "\"vocab_size\": 123456789012345678901234567890").contains("'vocab_size'"));
        assertTrue(refused("\"max_position_embeddings\": 4096", "\"max_position_embeddings\": 4294967296")
                .contains("'max_position_embeddings'"));
        assertTrue(refused("\"bos_token_id\": 1", "\"bos_token_id\": 4294967297").contains("'bos_token_id'"));
        assertTrue(refused("\"eos_token_id\": 2", "\"eos_token_id\": [2, 4294967298]").contains("'eos_token_id'"));
        assertTrue(refused("\"vocab_size\"", "\"head_dim\": 1073741824, \"vocab_size\"").contains("too large"),
                "heads × head_dim overflows an int");
    }

    @Test
    void wrongTypesAreRefusedNotCoerced() {
        // "abc" used to become 0 (bos) or the default (rms_norm_eps)
        assertTrue(refused("\"bos_token_id\": 1", "\"bos_token_id\": \"abc\"").contains("'bos_token_id'"));
        assertTrue(refused("\"rms_norm_eps\": 1e-5", "\"rms_norm_eps\": \"abc\"").contains("'rms_norm_eps'"));
        assertTrue(refused("\"rope_theta\": 10000.0", "\"rope_theta\": \"1e4\"").contains("'rope_theta'"));
        assertTrue(refused("\"num_hidden_layers\": 32", "\"num_hidden_layers\": 32.5").contains("'num_hidden_layers'"));
        assertTrue(refused("\"num_hidden_layers\": 32", "\"num_hidden_layers\": true").contains("'num_hidden_layers'"));
        assertTrue(refused("\"eos_token_id\": 2", "\"eos_token_id\": [2, \"3\"]").contains("'eos_token_id'"));
        assertTrue(refused("\"torch_dtype\": \"float16\"", "\"torch_dtype\": 16").contains("'torch_dtype'"));
        assertTrue(refused("\"vocab_size\"", "\"tie_word_embeddings\": \"true\", \"vocab_size\"").contains("'tie_word_embeddings'"));
        assertTrue(refused("\"vocab_size\"", "\"attention_bias\": 1, \"vocab_size\"").contains("'attention_bias'"));
        assertTrue(refused("\"vocab_size\"", "\"hidden_act\": [\"silu\"], \"vocab_size\"").contains("'hidden_act'"));
        assertTrue(refused("\"vocab_size\"", "\"quantization_config\": \"gptq\", \"vocab_size\"").contains("'quantization_config'"));
        assertTrue(refused("[\"LlamaForCausalLM\"]", "[7]").contains("'architectures'"));
        assertTrue(refused("\"rope_theta\": 10000.0", "\"rope_theta\": 10000.0, \"rope_scaling\": {\"rope_type\": \"linear\", "
                + "\"factor\": \"2\"}").contains("'rope_scaling.factor'"));
        assertTrue(refused("\"rope_theta\": 10000.0", "\"rope_theta\": 10000.0, \"rope_scaling\": [1]").contains("'rope_scaling'"));
    }

    @Test
    void sizesOutOfRangeAreRefused() {
        assertTrue(refused("\"num_attention_heads\": 32", "\"num_attention_heads\": 0").contains("'num_attention_heads'"));
        assertTrue(refused("\"intermediate_size\": 11008", "\"intermediate_size\": -1").contains("'intermediate_size'"));
        assertTrue(refused("\"vocab_size\"", "\"num_key_value_heads\": 64, \"vocab_size\"").contains("more than"));
        assertTrue(refused("\"vocab_size\"", "\"num_key_value_heads\": -8, \"vocab_size\"").contains("'num_key_value_heads'"));
        assertTrue(refused("\"rms_norm_eps\": 1e-5", "\"rms_norm_eps\": 0").contains("'rms_norm_eps'"));
        assertTrue(refused("\"rms_norm_eps\": 1e-5", "\"rms_norm_eps\": 1e999").contains("'rms_norm_eps'"), "infinite");
        assertTrue(refused("\"bos_token_id\": 1", "\"bos_token_id\": -1").contains("'bos_token_id'"));
        assertTrue(refused("\"rope_theta\": 10000.0", "\"rope_theta\": 10000.0, \"rope_scaling\": {\"rope_type\": \"llama3\", "
                + "\"factor\": 8, \"low_freq_factor\": 4, \"high_freq_factor\": 4}").contains("high_freq_factor"));
    }

    @Test
    void nullsStayAllowedWhereTransformersAllowsThem() throws Exception {
        ModelConfig c = parse(LLAMA2_STYLE.replace("\"bos_token_id\": 1, \"eos_token_id\": 2",
                "\"bos_token_id\": null, \"eos_token_id\": null, \"num_key_value_heads\": null, \"head_dim\": null, "
                        + "\"sliding_window\": null, \"rope_scaling\": null, \"quantization_config\": null, \"pad_token_id\": null")
                .replace("\"torch_dtype\": \"float16\"", "\"torch_dtype\": null"));
        assertNull(c.bosTokenId());
        assertTrue(c.eosTokenIds().isEmpty());
        assertEquals(32, c.kvHeads());
        assertEquals(128, c.headDim());
        assertEquals(0, c.slidingWindow());
        assertNull(c.torchDtype());
        assertTrue(refused("\"rms_norm_eps\": 1e-5", "\"rms_norm_eps\": null").contains("'rms_norm_eps'"),
                "transformers has no None for rms_norm_eps");
        assertTrue(refused("\"num_hidden_layers\": 32", "\"num_hidden_layers\": null").contains("'num_hidden_layers'"));
    }

    @Test
    void theFileIsStrictJson(@org.junit.jupiter.api.io.TempDir Path tmp) throws Exception {
        Path f = tmp.resolve("config.json");
        Files.writeString(f, LLAMA2_STYLE);
        assertEquals(4096, ModelConfig.read(f).hidden());
        Files.writeString(f, LLAMA2_STYLE + "\n{\"x\": 1}");
        String trailing = assertThrows(ShrinkException.class, () -> ModelConfig.read(f)).getMessage();
        assertTrue(trailing.startsWith(f + ": ") && trailing.contains("after the end of the JSON value"), trailing);
        Files.writeString(f, LLAMA2_STYLE + "garbage");
        assertTrue(assertThrows(ShrinkException.class, () -> ModelConfig.read(f)).getMessage().contains("not valid JSON"));
        Files.writeString(f, LLAMA2_STYLE.replace("\"vocab_size\"", "\"hidden_size\": 8, \"vocab_size\""));
        String dup = assertThrows(ShrinkException.class, () -> ModelConfig.read(f)).getMessage();
        assertTrue(dup.contains("Duplicate field 'hidden_size'") && dup.contains("line "), dup);
        Files.writeString(f, "\uFEFF" + LLAMA2_STYLE);
        assertTrue(assertThrows(ShrinkException.class, () -> ModelConfig.read(f)).getMessage().contains("byte-order mark"));
        Files.write(f, LLAMA2_STYLE.getBytes(java.nio.charset.StandardCharsets.UTF_16LE));
        assertTrue(assertThrows(ShrinkException.class, () -> ModelConfig.read(f)).getMessage().startsWith(f + ": "));
    }
}
