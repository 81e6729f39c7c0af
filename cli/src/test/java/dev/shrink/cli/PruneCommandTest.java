package dev.shrink.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.shrink.core.safetensors.TokenWindows;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** `shrink prune` as users run it, on stories260K-hf (fast), and every refusal: one line, exit 2, no folder. */
class PruneCommandTest {
    @TempDir
    Path tmp;

    static final ObjectMapper JSON = new ObjectMapper();

    @Test
    void magnitudeTwoOfFourWritesTheFolderTheTableAndTheRecord() throws IOException {
        Path out = tmp.resolve("p24");
        BadInputTest.Run r = BadInputTest.shrink("prune", GptqCommandTest.stories().toString(), "--work-dir", out.toString(),
                "--method", "magnitude", "--pattern", "2:4", "-q");
        assertEquals(0, r.code(), r.err());
        assertTrue(r.out().contains("model.layers.4.mlp.down_proj") && r.out().contains("64 x 172"), r.out());
        assertTrue(r.out().contains("magnitude 2:4: 113280 of 226560 weights in 35 pruned linears are zero (0.5000)"), r.out());
        assertTrue(r.out().contains("wrote " + out), r.out());
        JsonNode sp = JSON.readTree(out.resolve("config.json").toFile()).at("/shrink/sparsity");
        assertEquals("magnitude", sp.get("method").asText());
        assertEquals("2:4", sp.get("pattern").asText());
        assertEquals(0.5, sp.get("ratio").asDouble());
        assertTrue(sp.get("scope").isNull());
        assertEquals(35, sp.get("layers").size());
        JsonNode report = JSON.readTree(out.resolve("shrink-report.json").toFile());
        assertEquals("prune", report.get("stage").asText());
        assertTrue(report.get("calibration").isNull(), "magnitude uses no data");
        assertEquals(35, report.get("layers").size());
        // eval reads it
        BadInputTest.Run e = BadInputTest.shrink("eval", "--model", out.toString(), "--dataset", "tinystories",
                "--max-windows", "2", "--json", "-q");
        assertEquals(0, e.code(), e.err());
        assertTrue(Double.isFinite(JSON.readTree(e.out()).at("/results/0/ppl").asDouble()));
    }

    @Test
    void wandaWithTargetsIgnoreAndSavedCalibration() throws IOException {
        Path out = tmp.resolve("w");
        Path tokens = tmp.resolve("calib.safetensors");
        BadInputTest.Run r = BadInputTest.shrink("prune", GptqCommandTest.stories().toString(), "--work-dir", out.toString(),
                "--method", "wanda", "--sparsity", "0.5", "--targets", "*mlp*", "--ignore", "re:model\\.layers\\.0\\..*",
                "--calib-dataset", "tinystories", "--calib-samples", "4", "--calib-seqlen", "64",
                "--save-calib-tokens", tokens.toString(), "-q");
        assertEquals(0, r.code(), r.err());
        assertTrue(r.out().contains("wanda 0.5 (scope row): "), r.out());
        assertTrue(r.out().contains("12 linears pruned, 23 kept"), r.out());
        JsonNode report = JSON.readTree(out.resolve("shrink-report.json").toFile());
        assertEquals(TokenWindows.fingerprint(TokenWindows.read(tokens)),
                report.at("/calibration/fingerprint_sha256").asText(), "the report names the windows used");
        List<String> pruned = new ArrayList<>();
        for (JsonNode l : report.get("layers")) {
            if (l.get("status").asText().equals("pruned")) {
                pruned.add(l.get("name").asText());
                assertEquals(0.5, l.get("ratio").asDouble(), l.toString());
            } else {
                assertEquals(0, l.get("zeros").asInt(), l.toString());
            }
        }
        assertEquals(12, pruned.size());
        assertTrue(pruned.stream().allMatch(n -> n.contains(".mlp.") && !n.startsWith("model.layers.0.")), pruned.toString());
        assertEquals("row", JSON.readTree(out.resolve("config.json").toFile()).at("/shrink/sparsity/scope").asText());
    }

    /** Refused before any work: exit 2, one line naming the option (or linear) and the problem, no folder. */
    void assertRefused(String expected, String... options) throws IOException {
        Path out = tmp.resolve("out");
        List<String> args = new ArrayList<>(List.of("prune", GptqCommandTest.stories().toString(), "--work-dir", out.toString(), "-q"));
        args.addAll(List.of(options));
        BadInputTest.Run r = BadInputTest.shrink(args.toArray(String[]::new));
        assertEquals(2, r.code(), () -> String.join(" ", options) + ": " + r.err());
        String[] lines = r.err().strip().split("\n");
        assertTrue(lines[0].contains(expected), () -> "'" + expected + "' in: " + r.err());
        assertFalse(r.err().contains("\tat "), "no stack trace");
        assertFalse(Files.exists(out), "no output folder");
        try (Stream<Path> s = Files.list(tmp)) {
            assertEquals(0, s.filter(p -> p.getFileName().toString().contains(".tmp-")).count(), "no temp folder");
        }
    }

    @Test
    void badInputIsRefusedWithOneClearLine() throws IOException {
        assertRefused("--sparsity must be in [0, 1)", "--method", "magnitude", "--sparsity", "1");
        assertRefused("--sparsity must be in [0, 1)", "--method", "magnitude", "--sparsity", "-0.1");
        assertRefused("--sparsity must be in [0, 1)", "--method", "magnitude", "--sparsity", "NaN");
        assertRefused("--sparsity and --pattern exclude each other", "--method", "magnitude", "--sparsity", "0.5", "--pattern", "2:4");
        assertRefused("give the sparsity: --sparsity R", "--method", "magnitude");
        assertRefused("--pattern: N:M pattern '2-4' is not of the form N:M", "--method", "magnitude", "--pattern", "2-4");
        assertRefused("--pattern: N:M pattern '4:2' needs 0 < N < M", "--method", "magnitude", "--pattern", "4:2");
        assertRefused("--pattern: N:M pattern '1:99999999999' has M = 99999999999; M must be at most 256", "--method", "magnitude",
                "--pattern", "1:99999999999");
        assertRefused("model.layers.0.mlp.down_proj [64, 172]: cannot be pruned 4:8: in-features 172 not divisible by 8",
                "--method", "magnitude", "--pattern", "4:8");
        assertRefused("--scope does not apply to --pattern 2:4", "--method", "magnitude", "--pattern", "2:4", "--scope", "row");
        assertRefused("--scope global works with --method magnitude only", "--method", "wanda", "--sparsity", "0.5", "--scope", "global");
        assertRefused("--scope must be layer, row or global", "--method", "magnitude", "--sparsity", "0.5", "--scope", "block");
        assertRefused("--method must be magnitude, wanda or sparsegpt, got 'random'", "--method", "random", "--sparsity", "0.5");
        assertRefused("--scope does not apply to sparsegpt", "--method", "sparsegpt", "--sparsity", "0.5", "--scope", "row");
        assertRefused("model.layers.0.mlp.down_proj [64, 172]: cannot be pruned 4:8: in-features 172 not divisible by 8",
                "--method", "sparsegpt", "--pattern", "4:8");
        assertRefused("--w-bits goes with --method sparsegpt", "--method", "magnitude", "--sparsity", "0.5", "--w-bits", "4");
        assertRefused("--w-bits must be 2, 3, 4 or 8, got 5", "--method", "sparsegpt", "--sparsity", "0.5", "--w-bits", "5");
        assertRefused("--save-format must be dense, sparse-bitmask or sparse-24-bitmask, got 'zip'", "--method", "magnitude",
                "--sparsity", "0.5", "--save-format", "zip");
        assertRefused("with --w-bits the output is a GPTQ folder", "--method", "sparsegpt", "--pattern", "2:4", "--w-bits", "4",
                "--save-format", "sparse-24-bitmask");
        assertRefused("targets pattern 'model.embed_tokens' matches no decoder linear", "--method", "magnitude",
                "--sparsity", "0.5", "--targets", "model.embed_tokens");
        assertRefused("ignore pattern '*.lm_head' matches no decoder linear", "--method", "magnitude",
                "--sparsity", "0.5", "--ignore", "*.lm_head");
        assertRefused("--targets: an empty name pattern", "--method", "magnitude", "--sparsity", "0.5", "--targets", "a,,b");
        assertRefused("--batch must be positive", "--method", "wanda", "--sparsity", "0.5", "--batch", "0");
        assertRefused("--calib-samples and --calib-seqlen must be positive", "--method", "wanda", "--sparsity", "0.5",
                "--calib-samples", "0");
        assertRefused("Missing required option: '--method", "--sparsity", "0.5");
    }

    @Test
    void quantizedModelAndBusyWorkDirAreRefused() throws IOException {
        Path gptq = tmp.resolve("gptq");
        BadInputTest.Run q = BadInputTest.shrink("gptq", GptqCommandTest.stories().toString(), "--work-dir", gptq.toString(),
                "--method", "rtn", "--w-group-size", "32", "-q");
        assertEquals(0, q.code(), q.err());
        Path out = tmp.resolve("p");
        BadInputTest.Run r = BadInputTest.shrink("prune", gptq.toString(), "--work-dir", out.toString(),
                "--method", "magnitude", "--pattern", "2:4", "-q");
        assertEquals(2, r.code(), r.err());
        assertTrue(r.err().contains("config.json") && r.err().contains("pruning a quantized model is not supported"), r.err());
        assertFalse(Files.exists(out));

        Path busy = Files.createDirectories(tmp.resolve("busy"));
        Files.writeString(busy.resolve("keep.txt"), "mine");
        BadInputTest.Run b = BadInputTest.shrink("prune", GptqCommandTest.stories().toString(), "--work-dir", busy.toString(),
                "--method", "magnitude", "--pattern", "2:4", "-q");
        assertEquals(2, b.code());
        assertTrue(b.err().contains("--overwrite"), b.err());
        assertEquals("mine", Files.readString(busy.resolve("keep.txt")));
    }
}
