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
        return withTokenizer("phi3");
    }

    /** {@link #phi3WithTokenizer} for the fixture of {@code family}. */
    private Path withTokenizer(String family) throws Exception {
        Path dir = tmp.resolve(family);
        Files.createDirectories(dir);
        for (String f : new String[] {"config.json", "model.safetensors"}) {
            Files.copy(fixture(family).resolve(f), dir.resolve(f));
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
        Files.writeString(tmp.resolve("train.txt"), text);
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

    /**
     * Distillation of Qwen3 (per-head q/k norms), Phi-3 (fused tensors), Gemma 3 (sandwich block) and Gemma 2
     * (query_pre_attn_scalar's scale, soft-capped attention scores and logits) into a
     * layer-dropped student of the same family: the folder holds the family's tensors (Phi-3's fused,
     * trained: not the teacher's bytes), the layers kept, and eval reads it.
     */
    @Test
    void distillOfQwen3AndPhi3WritesFoldersEvalReads() throws Exception {
        for (String[] f : new String[][] {{"qwen3", "self_attn.q_norm.weight"}, {"phi3", "self_attn.qkv_proj.weight"},
                {"gemma3", "post_feedforward_layernorm.weight"}, {"gemma2", "self_attn.o_proj.weight"}}) {
            Path model = withTokenizer(f[0]), out = tmp.resolve("kd-" + f[0]);
            String seqlen = f[0].startsWith("gemma") ? "8" : "32"; // Gemma 3's and Gemma 2's fixtures slide over 8 keys
            BadInputTest.Run r = BadInputTest.shrink("distill", "--teacher", model.toString(), "--drop-layers", "1",
                    "--work-dir", out.toString(), "--steps", "2", "--batch", "2", "--seqlen", seqlen, "--warmup", "1",
                    "--lr", "1e-3", "--calib-dataset", tmp.resolve("train.txt").toString(), "-q");
            assertEquals(0, r.code(), f[0] + ": " + r.err());
            try (dev.shrink.core.model.ModelDir m = dev.shrink.core.model.ModelDir.open(out);
                 dev.shrink.core.model.ModelDir t = dev.shrink.core.model.ModelDir.open(model)) {
                int L = t.config().layers();
                assertEquals(L - 1, m.config().layers());
                java.util.Set<String> names = m.weights().names();
                assertTrue(names.contains("model.layers.1." + f[1]) && !names.contains("model.layers." + (L - 1) + "." + f[1]),
                        f[0] + ": " + names);
                if (f[0].equals("phi3")) {
                    assertFalse(names.stream().anyMatch(n -> n.matches(".*\\.(q|k|v|gate|up)_proj\\..*")), names.toString());
                }
                // student layer 1 is teacher layer 2, trained
                float[] before = t.weights().floats("model.layers.2." + f[1]), after = m.weights().floats("model.layers.1." + f[1]);
                assertEquals(before.length, after.length);
                assertFalse(java.util.Arrays.equals(before, after), f[0] + ": " + f[1] + " not trained");
            }
            BadInputTest.Run e = BadInputTest.shrink("eval", out.toString(), "--dataset", tmp.resolve("eval.txt").toString(),
                    "--seqlen", seqlen, "-q");
            assertEquals(0, e.code(), f[0] + " eval: " + e.err());
            assertTrue(e.out().contains("ppl"), e.out());
        }
    }

    /**
     * What distillation does not train yet is refused in one line naming it, exit 2, no folder: the mixtures of
     * experts, and Gemma 2 past its sliding window (training attends to every earlier key).
     */
    @Test
    void distillRefusesMixturesAndGemma2PastItsWindow() throws Exception {
        Path text = tmp.resolve("train.txt");
        Files.writeString(text, "a b c d e f g h\n".repeat(20));
        String[][] cases = {
                {"gemma2", "config.json: sliding_window 8 is shorter than --seqlen 16; distillation attends to all keys,"
                        + " so use --seqlen 8 or less"},
                {"mixtral", "mixture-of-experts models (mixtral) are not distilled yet"},
                {"qwen3_moe", "mixture-of-experts models (qwen3_moe) are not distilled yet"}};
        for (String[] c : cases) {
            Path out = tmp.resolve("kd-" + c[0]);
            BadInputTest.Run r = BadInputTest.shrink("distill", "--teacher", fixture(c[0]).toString(), "--drop-layers", "1",
                    "--work-dir", out.toString(), "--steps", "1", "--batch", "1", "--seqlen", c[0].equals("gemma2") ? "16" : "8",
                    "--calib-dataset", text.toString(), "-q");
            assertEquals(2, r.code(), c[0] + ": " + r.err());
            assertTrue(r.err().startsWith("shrink: error: ") && r.err().strip().lines().count() == 1, c[0] + ": " + r.err());
            assertTrue(r.err().contains(c[1]), c[0] + ": " + r.err());
            assertFalse(Files.exists(out), c[0] + ": " + out + " written");
        }
    }
}
