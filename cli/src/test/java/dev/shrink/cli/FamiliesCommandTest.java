package dev.shrink.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The families beyond LLaMA through the CLI, on the fixtures transformers made
 * (eval/src/test/resources/arch): inspect reads them; GPTQ, AWQ and pruning write Phi-3's folders with
 * its fused linears.
 */
class FamiliesCommandTest {
    @TempDir
    Path tmp;

    private static Path fixture(String family) {
        return ConventionsTest.root().resolve("eval/src/test/resources/arch/" + family);
    }

    @Test
    void inspectReadsEveryNewFamily() {
        for (String f : new String[] {"qwen3", "gemma2", "gemma3", "phi3"}) {
            BadInputTest.Run r = BadInputTest.shrink("inspect", fixture(f).toString());
            assertEquals(0, r.code(), f + ": " + r.err());
        }
    }

    /**
     * The Phi-3 fixture with a stand-in word-level tokenizer (the fixture has none; the stages open the
     * model's tokenizer even for --calib-tokens) and 8 windows of 32 random ids in a --calib-tokens file.
     */
    private Path phi3WithTokenizer() throws Exception {
        Path dir = tmp.resolve("phi3");
        Files.createDirectories(dir);
        for (String f : new String[] {"config.json", "model.safetensors"}) {
            Files.copy(fixture("phi3").resolve(f), dir.resolve(f));
        }
        StringBuilder vocab = new StringBuilder("\"<unk>\": 0, \"<s>\": 1, \"</s>\": 2");
        for (int i = 0; i < 26; i++) {
            vocab.append(", \"").append((char) ('a' + i)).append("\": ").append(3 + i);
        }
        Files.writeString(dir.resolve("tokenizer.json"), """
                {"version": "1.0", "truncation": null, "padding": null, "added_tokens": [], "normalizer": null,
                 "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null, "decoder": null,
                 "model": {"type": "WordLevel", "vocab": {%s}, "unk_token": "<unk>"}}
                """.formatted(vocab));
        java.util.Random rnd = new java.util.Random(1);
        int[][] windows = new int[8][32];
        for (int[] w : windows) {
            java.util.Arrays.setAll(w, t -> rnd.nextInt(256));
        }
        dev.shrink.core.safetensors.TokenWindows.write(tmp.resolve("calib.safetensors"), windows);
        StringBuilder text = new StringBuilder();
        for (int i = 0; i < 400; i++) {
            text.append((char) ('a' + rnd.nextInt(26))).append(i % 20 == 19 ? "\n" : " ");
        }
        Files.writeString(tmp.resolve("eval.txt"), text);
        return dir;
    }

    /** GPTQ, AWQ and pruning of Phi-3 write folders with its fused qkv_proj and gate_up_proj, which eval reads. */
    @Test
    void gptqAwqAndPruneOfPhi3WriteFusedFolders() throws Exception {
        Path model = phi3WithTokenizer(), tokens = tmp.resolve("calib.safetensors");
        String[][] runs = {
                {"gptq", model.toString(), "--work-dir", tmp.resolve("gptq").toString(), "--w-group-size", "32",
                        "--act-order", "--calib-tokens", tokens.toString(), "--calib-samples", "8", "--calib-seqlen", "32", "-q"},
                {"awq", model.toString(), "--work-dir", tmp.resolve("awq").toString(), "--w-group-size", "32",
                        "--calib-tokens", tokens.toString(), "--calib-samples", "8", "--calib-seqlen", "32", "-q"},
                {"prune", model.toString(), "--work-dir", tmp.resolve("prune").toString(), "--method", "wanda",
                        "--pattern", "2:4", "--calib-tokens", tokens.toString(), "--calib-samples", "8", "--calib-seqlen", "32", "-q"},
                {"prune", model.toString(), "--work-dir", tmp.resolve("sparsegpt").toString(), "--method", "sparsegpt",
                        "--sparsity", "0.5", "--w-bits", "4", "--w-group-size", "32", "--calib-tokens", tokens.toString(), "--calib-samples", "8", "--calib-seqlen", "32", "-q"}};
        for (String[] args : runs) {
            BadInputTest.Run r = BadInputTest.shrink(args);
            assertEquals(0, r.code(), String.join(" ", args) + ": " + r.err());
            Path out = Path.of(args[3]);
            try (dev.shrink.core.model.ModelDir m = dev.shrink.core.model.ModelDir.open(out)) {
                java.util.Set<String> names = m.weights().names();
                assertTrue(names.stream().anyMatch(n -> n.startsWith("model.layers.0.self_attn.qkv_proj."))
                        && names.stream().anyMatch(n -> n.startsWith("model.layers.2.mlp.gate_up_proj.")), args[0] + ": " + names);
                assertFalse(names.stream().anyMatch(n -> n.matches(".*\\.(q|k|v|gate|up)_proj\\..*")), args[0] + ": " + names);
            }
            BadInputTest.Run e = BadInputTest.shrink("eval", out.toString(), "--dataset", tmp.resolve("eval.txt").toString(),
                    "--seqlen", "32", "-q");
            assertEquals(0, e.code(), args[0] + " eval: " + e.err());
            assertTrue(e.out().contains("ppl"), e.out());
        }
    }
}
