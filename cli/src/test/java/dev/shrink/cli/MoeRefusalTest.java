package dev.shrink.cli;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The compression stages run on a mixture of experts (MoeCommandTest); a Mixtral folder whose weights lack
 * the block's tensors is bad input for each of them: one line naming the file and the missing part (awq: the tokenizer its calibration needs first),
 * exit code 2, and no output left behind.
 */
class MoeRefusalTest {
    @TempDir
    Path tmp;

    /** A Mixtral folder: its config and a weights file holding only the embedding (the refusal comes first). */
    Path mixtral() throws IOException {
        Path dir = tmp.resolve("tiny-mixtral");
        Files.createDirectories(dir);
        Files.writeString(dir.resolve("config.json"), """
                {"architectures": ["MixtralForCausalLM"], "hidden_size": 8, "intermediate_size": 16,
                 "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 16,
                 "num_local_experts": 4, "num_experts_per_tok": 2, "sliding_window": null}
                """);
        BadInputTest.writeSafetensors(dir.resolve("model.safetensors"),
                "{\"model.embed_tokens.weight\":{\"dtype\":\"F32\",\"shape\":[16,8],\"data_offsets\":[0,512]}}", 512);
        return dir;
    }

    @Test
    void gptqRefusesMissingTensors() throws IOException {
        Path model = mixtral(), out = tmp.resolve("q");
        BadInputTest.Run r = BadInputTest.shrink("gptq", model.toString(), "--work-dir", out.toString(), "--method", "rtn",
                "-q");
        BadInputTest.assertOneLineError(r, model.toString(), "no tensor 'model.layers.0.input_layernorm.weight'");
        assertFalse(Files.exists(out), "no output folder");
    }

    @Test
    void awqAndPruneRefuseItToo() throws IOException {
        Path model = mixtral(), out = tmp.resolve("o");
        BadInputTest.Run awq = BadInputTest.shrink("awq", model.toString(), "--work-dir", out.toString(), "-q");
        BadInputTest.assertOneLineError(awq, model.toString(), "missing tokenizer"); // awq reads its calibration text first
        BadInputTest.Run prune = BadInputTest.shrink("prune", model.toString(), "--work-dir", out.toString(), "--method",
                "magnitude", "--pattern", "2:4", "-q");
        BadInputTest.assertOneLineError(prune, model.toString(), "no tensor 'model.layers.0.self_attn.q_proj.weight'");
        assertFalse(Files.exists(out), "no output folder");
        assertTrue(Files.exists(model.resolve("model.safetensors")), "the model is left alone");
    }
}
