package dev.shrink.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.shrink.core.safetensors.TokenWindows;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * gptq, awq and prune on a mixture of experts through the CLI (the Qwen2-MoE fixture of
 * eval/src/test/resources/arch): exit 0, a folder, the per-block expert counts in the report; a bad
 * --expert-min-tokens is one line and exit 2.
 */
class MoeCommandTest {
    @TempDir
    Path tmp;

    private Path tokens() {
        Random rnd = new Random(5);
        int[][] w = new int[4][16];
        for (int[] row : w) {
            for (int t = 0; t < row.length; t++) {
                row[t] = 3 + rnd.nextInt(250);
            }
        }
        Path file = tmp.resolve("calib.safetensors");
        TokenWindows.write(file, w);
        return file;
    }

    private Path fixture;

    /**
     * The fixture with a word-level tokenizer of its 256 ids beside it (the stages open the model's
     * tokenizer even with --calib-tokens).
     */
    private Path fixture() throws java.io.IOException {
        if (fixture == null) {
            Path src = ConventionsTest.root().resolve("eval/src/test/resources/arch/qwen2_moe");
            fixture = tmp.resolve("qwen2_moe");
            Files.createDirectories(fixture);
            for (String f : new String[] {"config.json", "model.safetensors"}) {
                Files.copy(src.resolve(f), fixture.resolve(f));
            }
            StringBuilder vocab = new StringBuilder();
            for (int i = 0; i < 256; i++) {
                vocab.append(i == 0 ? "" : ",").append("\"t").append(i).append("\":").append(i);
            }
            Files.writeString(fixture.resolve("tokenizer.json"), "{\"version\":\"1.0\",\"model\":{\"type\":\"WordLevel\","
                    + "\"vocab\":{" + vocab + "},\"unk_token\":\"t0\"}}");
        }
        return fixture;
    }

    @Test
    void gptqAwqAndPruneWriteAFolder() throws Exception {
        Path calib = tokens();
        String[][] runs = {
            {"gptq", fixture().toString(), "--work-dir", tmp.resolve("gptq").toString(), "--w-group-size", "32",
                "--calib-tokens", calib.toString(), "--calib-samples", "4", "--calib-seqlen", "16", "--expert-min-tokens", "20", "-q"},
            {"awq", fixture().toString(), "--work-dir", tmp.resolve("awq").toString(), "--w-group-size", "32",
                "--calib-tokens", calib.toString(), "--calib-samples", "4", "--calib-seqlen", "16", "-q"},
            {"prune", fixture().toString(), "--work-dir", tmp.resolve("prune").toString(), "--method", "wanda",
                "--sparsity", "0.5", "--calib-tokens", calib.toString(), "--calib-samples", "4", "--calib-seqlen", "16", "--expert-min-tokens", "10%", "-q"},
        };
        for (String[] args : runs) {
            BadInputTest.Run r = BadInputTest.shrink(args);
            assertEquals(0, r.code(), args[0] + ": " + r.err());
            Path out = Path.of(args[3]);
            assertTrue(Files.isRegularFile(out.resolve("model.safetensors")), args[0]);
            JsonNode report = new ObjectMapper().readTree(out.resolve("shrink-report.json").toFile());
            assertEquals(3, report.at("/experts/blocks").size(), args[0] + " reports every sparse block's experts");
        }
        JsonNode g = new ObjectMapper().readTree(tmp.resolve("gptq/shrink-report.json").toFile());
        assertEquals("20", g.at("/experts/min_tokens").asText());
    }

    @Test
    void badThresholdIsOneLine() throws Exception {
        Path out = tmp.resolve("bad");
        BadInputTest.Run r = BadInputTest.shrink("gptq", fixture().toString(), "--work-dir", out.toString(),
                "--calib-tokens", tokens().toString(), "--calib-samples", "4", "--calib-seqlen", "16", "--expert-min-tokens", "many", "-q");
        assertEquals(2, r.code(), r.err());
        String err = r.err().strip();
        assertFalse(err.contains("\n"), err);
        assertTrue(err.contains("--expert-min-tokens") && err.contains("many"), err);
        assertFalse(Files.exists(out));
    }
}
