package dev.shrink.core.model;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.shrink.core.ShrinkException;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;

/**
 * Gemma 2 and Gemma 3 (text) config.json files as transformers reads them: its defaults for absent
 * keys (Gemma2Config / Gemma3TextConfig), the older keys (rope_theta, rope_local_base_freq,
 * sliding_window_pattern, rope_scaling) and transformers 5's (rope_parameters per layer type,
 * layer_types), and which blocks slide.
 */
class GemmaConfigTest {
    static ModelConfig parse(String json) throws Exception {
        return ModelConfig.parse((ObjectNode) new ObjectMapper().readTree(json), Path.of("config.json"));
    }

    /** google/gemma-2-2b's config.json as on the Hub (transformers 4 keys). */
    static final String GEMMA2_2B = """
            {"architectures": ["Gemma2ForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
             "attn_logit_softcapping": 50.0, "bos_token_id": 2, "cache_implementation": "hybrid", "eos_token_id": [1, 107],
             "final_logit_softcapping": 30.0, "head_dim": 256, "hidden_act": "gelu_pytorch_tanh",
             "hidden_activation": "gelu_pytorch_tanh", "hidden_size": 2304, "initializer_range": 0.02,
             "intermediate_size": 9216, "max_position_embeddings": 8192, "model_type": "gemma2",
             "num_attention_heads": 8, "num_hidden_layers": 26, "num_key_value_heads": 4, "pad_token_id": 0,
             "query_pre_attn_scalar": 256, "rms_norm_eps": 1e-06, "rope_theta": 10000.0, "sliding_window": 4096,
             "torch_dtype": "float32", "transformers_version": "4.42.4", "use_cache": true, "vocab_size": 256000}""";

    /** The keys every test model needs; the rest is what each test checks. */
    static String gemma(String arch, String more) {
        return "{\"architectures\": [\"" + arch + "\"], \"hidden_size\": 64, \"intermediate_size\": 128, "
                + "\"num_hidden_layers\": 12, \"num_attention_heads\": 4, \"num_key_value_heads\": 2, "
                + "\"vocab_size\": 256" + (more.isEmpty() ? "" : ", " + more) + "}";
    }

    @Test
    void gemma2AsOnTheHub() throws Exception {
        ModelConfig c = parse(GEMMA2_2B);
        assertSame(ArchitectureSpec.GEMMA2, ArchitectureSpec.forArchitecture(c.architecture(), Path.of("config.json")));
        assertEquals(ModelConfig.Activation.GELU_TANH, c.activation());
        assertEquals(1 / 16.0, c.attentionScale(), 1e-15, "query_pre_attn_scalar 256 ** -0.5");
        assertEquals(50f, c.attentionSoftcap());
        assertEquals(30f, c.finalSoftcap());
        assertEquals(256, c.headDim());
        assertTrue(c.tiedEmbeddings(), "Gemma ties its head by default");
        assertEquals(4096, c.slidingWindow(0), "even blocks slide (no layer_types: transformers' default)");
        assertEquals(0, c.slidingWindow(1));
        assertEquals(4096, c.slidingWindow(24));
        assertEquals(0, c.slidingWindow(25));
        assertEquals(4096, c.shortestWindow());
        assertSame(c.rope(), c.rope(0), "Gemma 2 has one RoPE");
        assertNull(c.localRope());
        assertEquals(10000.0, c.rope().theta());
    }

    @Test
    void gemma2DefaultsAndTransformers5Keys() throws Exception {
        ModelConfig d = parse(gemma("Gemma2ForCausalLM", ""));
        assertEquals(256, d.headDim(), "Gemma2Config's head_dim default, not hidden / heads");
        assertEquals(50f, d.attentionSoftcap(), "Gemma2Config soft-caps by default");
        assertEquals(30f, d.finalSoftcap());
        assertEquals(1 / 16.0, d.attentionScale(), 1e-15);
        assertEquals(4096, d.slidingWindow(0));
        assertEquals(8192, d.maxPositions());
        ModelConfig none = parse(gemma("Gemma2ForCausalLM", "\"attn_logit_softcapping\": null, "
                + "\"final_logit_softcapping\": null, \"sliding_window\": null, \"head_dim\": 16"));
        assertEquals(0f, none.attentionSoftcap(), "null: no soft-cap");
        assertEquals(0f, none.finalSoftcap());
        assertEquals(0, none.shortestWindow(), "sliding_window null: full attention everywhere");
        ModelConfig v5 = parse(gemma("Gemma2ForCausalLM", "\"head_dim\": 16, \"sliding_window\": 8, "
                + "\"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 20000.0}, "
                + "\"layer_types\": [" + "\"full_attention\", ".repeat(11) + "\"sliding_attention\"]"));
        assertEquals(20000.0, v5.rope().theta());
        assertEquals(0, v5.slidingWindow(0), "layer_types decides where given");
        assertEquals(8, v5.slidingWindow(11));
        assertEquals(1 / Math.sqrt(256), v5.attentionScale(), 1e-15, "query_pre_attn_scalar's default, not head_dim");
    }

    @Test
    void gemma3OldKeys() throws Exception {
        ModelConfig c = parse(gemma("Gemma3ForCausalLM", "\"head_dim\": 16, \"sliding_window\": 512, "
                + "\"query_pre_attn_scalar\": 16, \"rope_theta\": 1000000.0, \"rope_local_base_freq\": 10000.0, "
                + "\"rope_scaling\": {\"rope_type\": \"linear\", \"factor\": 8.0}"));
        assertSame(ArchitectureSpec.GEMMA3, ArchitectureSpec.forArchitecture(c.architecture(), Path.of("config.json")));
        assertEquals(0.25, c.attentionScale(), 1e-15);
        assertEquals(0f, c.attentionSoftcap(), "Gemma 3 does not soft-cap by default");
        assertEquals(0f, c.finalSoftcap());
        assertEquals(131072, c.maxPositions());
        for (int l = 0; l < 12; l++) {
            boolean full = l == 5 || l == 11; // sliding_window_pattern 6: every 6th block attends to all keys
            assertEquals(full ? 0 : 512, c.slidingWindow(l), "block " + l);
            assertEquals(!full, c.slidingLayer(l));
            ModelConfig.RopeConfig r = c.rope(l);
            assertEquals(full ? 1e6 : 1e4, r.theta(), "block " + l);
            assertEquals(full ? "linear" : "default", r.type(), "rope_scaling applies to the global RoPE only");
        }
        ModelConfig p3 = parse(gemma("Gemma3ForCausalLM", "\"sliding_window_pattern\": 3"));
        assertArrayEquals(new boolean[] {true, true, false, true, true, false},
                new boolean[] {p3.slidingLayer(0), p3.slidingLayer(1), p3.slidingLayer(2), p3.slidingLayer(3),
                        p3.slidingLayer(4), p3.slidingLayer(5)});
        ModelConfig d = parse(gemma("Gemma3ForCausalLM", ""));
        assertEquals(1e6, d.rope().theta(), "Gemma3TextConfig's global default");
        assertEquals(1e4, d.localRope().theta(), "and its local default");
        assertEquals(4096, d.slidingWindow(0));
    }

    @Test
    void gemma3Transformers5Keys() throws Exception {
        ModelConfig c = parse(gemma("Gemma3ForCausalLM", "\"head_dim\": 16, \"sliding_window\": 8, "
                + "\"rope_parameters\": {\"full_attention\": {\"rope_type\": \"linear\", \"factor\": 4.0, \"rope_theta\": 500000.0}, "
                + "\"sliding_attention\": {\"rope_type\": \"default\", \"rope_theta\": 1000.0}}, "
                + "\"layer_types\": [" + "\"sliding_attention\", \"full_attention\", ".repeat(5)
                + "\"sliding_attention\", \"full_attention\"]"));
        for (int l = 0; l < 12; l++) {
            boolean sliding = l % 2 == 0;
            assertEquals(sliding ? 8 : 0, c.slidingWindow(l), "block " + l);
            assertEquals(sliding ? 1000.0 : 500000.0, c.rope(l).theta(), "block " + l);
            assertEquals(sliding ? "default" : "linear", c.rope(l).type());
        }
        assertEquals(4.0, c.rope().factor());
        ModelConfig half = parse(gemma("Gemma3ForCausalLM", "\"rope_parameters\": {\"sliding_attention\": "
                + "{\"rope_type\": \"default\"}}"));
        assertEquals(1e6, half.rope().theta(), "a layer type without rope_theta takes the family's default");
        assertEquals(1e4, half.localRope().theta());
    }

    @Test
    void badGemmaConfigsAreRefusedNamingTheField() {
        String[][] cases = {
                {"\"hidden_activation\": \"gelu\"", "hidden_activation 'gelu' is not supported"},
                {"\"layer_types\": [\"sliding_attention\"]", "field 'layer_types' must be a list of 12 layer types"},
                {"\"layer_types\": [" + "\"full_attention\", ".repeat(11) + "\"chunked_attention\"]",
                        "field 'layer_types' must hold only"},
                {"\"query_pre_attn_scalar\": 0", "field 'query_pre_attn_scalar' must be a positive number"},
                {"\"attn_logit_softcapping\": -1.0", "field 'attn_logit_softcapping' must be a positive number"},
                {"\"use_bidirectional_attention\": true", "use_bidirectional_attention: true is not supported"},
                {"\"rope_parameters\": {\"sliding_attention\": {\"rope_theta\": -1}}",
                        "field 'rope_parameters.sliding_attention.rope_theta' must be a positive number"},
                {"\"rope_local_base_freq\": \"x\"", "field 'rope_local_base_freq' must be a positive number"},
        };
        for (String[] c : cases) {
            ShrinkException e = assertThrows(ShrinkException.class, () -> parse(gemma("Gemma3ForCausalLM", c[0])), c[0]);
            assertTrue(e.getMessage().startsWith("config.json: ") && e.getMessage().contains(c[1]), e.getMessage());
        }
    }

    @Test
    void gemmaSpecsAreData() {
        for (ArchitectureSpec s : new ArchitectureSpec[] {ArchitectureSpec.GEMMA2, ArchitectureSpec.GEMMA3}) {
            assertFalse(s.plainLlamaBlock(), "the device-only loops refuse " + s.family());
            assertTrue(s.unlikeLlama().contains("norms of the attention and MLP outputs"), s.unlikeLlama());
            assertEquals("pre_feedforward_layernorm.weight", s.postAttentionNorm(), "the MLP's input norm");
            assertEquals("post_attention_layernorm.weight", s.attentionOutputNorm());
            assertEquals("post_feedforward_layernorm.weight", s.mlpOutputNorm());
            assertTrue(s.awqMappings().stream().anyMatch(m -> m.previous().equals("pre_feedforward_layernorm")),
                    "AWQ scales gate/up against the norm that feeds them");
            float[] stored = {-0.5f, 0f, 0.25f, 3f};
            float[] g = s.normWeight(stored);
            assertArrayEquals(new float[] {0.5f, 1f, 1.25f, 4f}, g, "(1 + w)");
            assertArrayEquals(stored, s.storedNorm(g), "written back as stored");
        }
        assertTrue(ArchitectureSpec.GEMMA3.unlikeLlama().contains("per-head q/k norms"));
        assertNull(ArchitectureSpec.LLAMA.unlikeLlama());
        float[] w = {0.5f, 2f};
        assertSame(w, ArchitectureSpec.LLAMA.normWeight(w), "LLaMA's norms are read as they are");
    }
}
