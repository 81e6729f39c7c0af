package dev.shrink.core.model;

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
import java.util.List;
import java.util.stream.IntStream;
import org.junit.jupiter.api.Test;

/**
 * Mixtral, Qwen2-MoE and Qwen3-MoE config.json files as transformers reads them: its defaults for absent
 * keys (MixtralConfig, Qwen2MoeConfig, Qwen3MoeConfig), which blocks are sparse (mlp_only_layers,
 * decoder_sparse_step, num_experts 0), norm_topk_prob, transformers 5's num_local_experts for Qwen3-MoE,
 * sliding windows, and the errors for values transformers would fail on.
 */
class MoeConfigTest {
    static ModelConfig parse(String json) throws Exception {
        return ModelConfig.parse((ObjectNode) new ObjectMapper().readTree(json), Path.of("config.json"));
    }

    static String config(String arch, String more) {
        return "{\"architectures\": [\"" + arch + "\"], \"hidden_size\": 64, \"intermediate_size\": 128, "
                + "\"num_hidden_layers\": 6, \"num_attention_heads\": 4, \"num_key_value_heads\": 2, "
                + "\"vocab_size\": 256" + (more.isEmpty() ? "" : ", " + more) + "}";
    }

    static List<Integer> sparseLayers(ModelConfig c) {
        return IntStream.range(0, c.layers()).filter(c::sparseLayer).boxed().toList();
    }

    /** mistralai/Mixtral-8x7B-v0.1's config.json as on the Hub (transformers 4 keys). */
    @Test
    void mixtralAsOnTheHub() throws Exception {
        ModelConfig c = parse("""
                {"architectures": ["MixtralForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 1, "eos_token_id": 2,
                 "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336,
                 "max_position_embeddings": 32768, "model_type": "mixtral", "num_attention_heads": 32,
                 "num_experts_per_tok": 2, "num_hidden_layers": 32, "num_key_value_heads": 8, "num_local_experts": 8,
                 "output_router_logits": false, "rms_norm_eps": 1e-05, "rope_theta": 1000000.0,
                 "router_aux_loss_coef": 0.02, "sliding_window": null, "tie_word_embeddings": false,
                 "torch_dtype": "bfloat16", "transformers_version": "4.36.0.dev0", "use_cache": true, "vocab_size": 32000}""");
        assertSame(ArchitectureSpec.MIXTRAL, ArchitectureSpec.forArchitecture(c.architecture(), Path.of("config.json")));
        MoeConfig m = c.moe();
        assertEquals(8, m.experts());
        assertEquals(2, m.topK());
        assertTrue(m.normTopK(), "Mixtral always renormalises the top-k weights");
        assertEquals(14336, m.expertIntermediate(), "Mixtral's experts are intermediate_size wide");
        assertFalse(m.sharedExpert());
        assertEquals(32, sparseLayers(c).size(), "every Mixtral block is sparse");
        assertEquals(0, c.shortestWindow(), "sliding_window null: full attention");
        assertEquals(1e6, c.rope().theta());
        assertTrue(ArchitectureSpec.MIXTRAL.unlikeLlama().contains("mixture-of-experts"),
                "the device-only loops refuse it with a reason");
        assertEquals("block_sparse_moe.experts.7.w2", ArchitectureSpec.MIXTRAL.moe().expert(7, "w2"));
    }

    @Test
    void mixtralDefaults() throws Exception {
        ModelConfig c = parse(config("MixtralForCausalLM", ""));
        assertEquals(8, c.moe().experts());
        assertEquals(2, c.moe().topK());
        assertEquals(0, c.shortestWindow(), "Mixtral's sliding_window defaults to None, not Mistral's 4096");
        assertEquals(1e6, c.rope().theta(), "Mixtral's default rope_theta");
        assertEquals(4096, parse(config("MixtralForCausalLM", "\"sliding_window\": 4096")).slidingWindow(5),
                "a window applies to every block");
        assertEquals(4096, parse(config("MistralForCausalLM", "")).slidingWindow(0), "Mistral's default is unchanged");
        assertNull(parse(config("MistralForCausalLM", "")).moe(), "dense families have no mixture");
        assertFalse(parse(config("LlamaForCausalLM", "")).sparseLayer(0));
    }

    @Test
    void qwen2MoeDefaultsAndSharedExpert() throws Exception {
        ModelConfig c = parse(config("Qwen2MoeForCausalLM", ""));
        MoeConfig m = c.moe();
        assertEquals(60, m.experts());
        assertEquals(4, m.topK());
        assertFalse(m.normTopK(), "norm_topk_prob defaults to false");
        assertEquals(1408, m.expertIntermediate());
        assertEquals(5632, m.sharedIntermediate());
        assertTrue(m.sharedExpert());
        assertEquals(List.of(0, 1, 2, 3, 4, 5), sparseLayers(c));
        assertTrue(c.attentionBias(), "qkv_bias defaults to true");
        assertFalse(parse(config("Qwen2MoeForCausalLM", "\"qkv_bias\": false")).attentionBias());
        assertEquals("mlp.shared_expert.down_proj", ArchitectureSpec.QWEN2_MOE.moe().shared("down_proj"));
        assertEquals("mlp.shared_expert_gate", ArchitectureSpec.QWEN2_MOE.moe().sharedExpertGate());
    }

    @Test
    void sparseAndDenseBlocks() throws Exception {
        // transformers: sparse iff l not in mlp_only_layers and num_experts > 0 and (l + 1) % decoder_sparse_step == 0
        ModelConfig c = parse(config("Qwen2MoeForCausalLM", "\"decoder_sparse_step\": 2, \"mlp_only_layers\": [3]"));
        assertEquals(List.of(1, 5), sparseLayers(c));
        assertEquals(List.of(0, 2, 3, 4, 5), sparseLayers(parse(config("Qwen3MoeForCausalLM", "\"mlp_only_layers\": [1]"))));
        assertEquals(List.of(), sparseLayers(parse(config("Qwen2MoeForCausalLM", "\"num_experts\": 0"))),
                "no experts: every block dense");
        assertEquals(List.of(0, 1, 2, 3, 4, 5), sparseLayers(parse(config("Qwen3MoeForCausalLM", "\"mlp_only_layers\": null"))),
                "null mlp_only_layers is []");
        assertEquals(List.of(2, 5), sparseLayers(parse(config("Qwen3MoeForCausalLM", "\"decoder_sparse_step\": 3"))));
    }

    @Test
    void qwen3MoeKeysOldAndNew() throws Exception {
        ModelConfig d = parse(config("Qwen3MoeForCausalLM", ""));
        assertEquals(128, d.moe().experts());
        assertEquals(8, d.moe().topK());
        assertEquals(768, d.moe().expertIntermediate());
        assertFalse(d.moe().normTopK());
        assertFalse(d.moe().sharedExpert(), "Qwen3-MoE has no shared expert");
        ModelConfig v5 = parse(config("Qwen3MoeForCausalLM",
                "\"num_local_experts\": 8, \"num_experts_per_tok\": 2, \"moe_intermediate_size\": 32, \"norm_topk_prob\": true"));
        assertEquals(8, v5.moe().experts(), "transformers 5 writes num_experts as num_local_experts");
        assertEquals(2, v5.moe().topK());
        assertEquals(32, v5.moe().expertIntermediate());
        assertTrue(v5.moe().normTopK());
        assertEquals(16, parse(config("Qwen3MoeForCausalLM", "\"num_experts\": 16")).moe().experts());
        assertEquals(0, parse(config("Qwen3MoeForCausalLM", "\"sliding_window\": 8")).shortestWindow(),
                "a window only with use_sliding_window");
        ModelConfig w = parse(config("Qwen3MoeForCausalLM", "\"sliding_window\": 8, \"use_sliding_window\": true"));
        assertEquals(8, w.slidingWindow(0), "Qwen3-MoE slides in every block");
        assertEquals(8, w.slidingWindow(5));
        ModelConfig q2 = parse(config("Qwen2MoeForCausalLM",
                "\"sliding_window\": 8, \"use_sliding_window\": true, \"max_window_layers\": 4"));
        assertEquals(0, q2.slidingWindow(3), "Qwen2-MoE as Qwen2: blocks below max_window_layers attend to all");
        assertEquals(8, q2.slidingWindow(4));
    }

    @Test
    void badValuesNameTheField() {
        for (String[] bad : new String[][] {
                {"MixtralForCausalLM", "\"num_local_experts\": 2, \"num_experts_per_tok\": 3", "num_experts_per_tok 3 is more than the 2 experts"},
                {"Qwen3MoeForCausalLM", "\"num_experts\": 4, \"num_experts_per_tok\": 8", "num_experts_per_tok 8 is more than the 4 experts"},
                {"Qwen2MoeForCausalLM", "\"mlp_only_layers\": 3", "field 'mlp_only_layers' must be a list"},
                {"Qwen2MoeForCausalLM", "\"mlp_only_layers\": [-1]", "field 'mlp_only_layers' must hold layer indices"},
                {"Qwen2MoeForCausalLM", "\"decoder_sparse_step\": 0", "field 'decoder_sparse_step' must be a positive integer"},
                {"Qwen3MoeForCausalLM", "\"norm_topk_prob\": \"yes\"", "field 'norm_topk_prob' must be true or false"},
                {"Qwen3MoeForCausalLM", "\"num_experts\": -2", "field 'num_experts' must be an integer from 0"},
                {"Qwen2MoeForCausalLM", "\"moe_intermediate_size\": 1.5", "field 'moe_intermediate_size' must be a positive integer"},
                {"MixtralForCausalLM", "\"num_experts_per_tok\": 0", "field 'num_experts_per_tok' must be a positive integer"}}) {
            ShrinkException e = assertThrows(ShrinkException.class, () -> parse(config(bad[0], bad[1])), bad[1]);
            assertTrue(e.getMessage().startsWith("config.json: ") && e.getMessage().contains(bad[2]), e.getMessage());
        }
        ShrinkException missing = assertThrows(ShrinkException.class, () -> parse(config("Qwen2MoeForCausalLM", "")
                .replace("\"intermediate_size\": 128, ", "")));
        assertTrue(missing.getMessage().contains("missing required field 'intermediate_size'"), missing.getMessage());
    }
}
