package dev.shrink.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.shrink.calib.SharedData;
import dev.shrink.core.safetensors.TokenWindows;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** `shrink gptq` as users run it, on stories260K-hf (fast), and its refusals. */
class GptqCommandTest {
    @TempDir
    Path tmp;

    static Path stories() {
        Path p = SharedData.root().map(s -> s.resolve("models/stories260K-hf")).orElse(Path.of("missing"));
        assumeTrue(Files.isDirectory(p), "shared fixtures not found");
        return p;
    }

    @Test
    void quantizesStoriesWithGroup32LeavingUnpackableLayers() throws IOException {
        Path out = tmp.resolve("q");
        Path tokens = tmp.resolve("calib.safetensors");
        BadInputTest.Run r = BadInputTest.shrink("gptq", stories().toString(), "--work-dir", out.toString(),
                "--w-group-size", "32", "--calib-dataset", "tinystories", "--calib-samples", "8", "--calib-seqlen", "128",
                "--save-calib-tokens", tokens.toString(), "-q");
        assertEquals(0, r.code(), r.err());
        assertTrue(r.out().contains("wrote " + out), r.out());
        JsonNode cfg = new ObjectMapper().readTree(out.resolve("config.json").toFile());
        JsonNode qc = cfg.get("quantization_config");
        assertEquals("gptq", qc.get("quant_method").asText());
        assertEquals(32, qc.get("group_size").asInt());
        assertTrue(qc.get("sym").asBoolean());
        assertTrue(Files.exists(out.resolve("quantize_config.json")));
        assertTrue(Files.exists(out.resolve("tokenizer.json")));
        JsonNode report = new ObjectMapper().readTree(out.resolve("shrink-report.json").toFile());
        int quantized = 0, skipped = 0;
        for (JsonNode l : report.get("layers")) {
            if (l.get("status").asText().equals("quantized")) {
                quantized++;
                assertTrue(l.get("name").asText().contains("self_attn"), "only attention fits g32 with 4-bit packing");
            } else {
                skipped++;
                assertTrue(l.get("name").asText().contains("mlp"));
                assertFalse(l.get("reason").asText().isBlank());
            }
        }
        assertEquals(5 * 4, quantized);
        assertEquals(5 * 3, skipped);
        assertEquals(TokenWindows.fingerprint(TokenWindows.read(tokens)),
                report.at("/calibration/fingerprint_sha256").asText(), "the report names the windows used");
        // the folder evaluates, and a skipped layer keeps its float weight
        BadInputTest.Run e = BadInputTest.shrink("eval", "--model", out.toString(), "--dataset", "tinystories",
                "--max-windows", "4", "--json", "-q");
        assertEquals(0, e.code(), e.err());
        double ppl = new ObjectMapper().readTree(e.out()).at("/results/0/ppl").asDouble();
        assertTrue(ppl > 3.0 && ppl < 6.0, "tinystories ppl of a 4-bit stories260K: " + ppl);
        try (Stream<Path> s = Files.list(tmp)) {
            assertEquals(0, s.filter(p -> p.getFileName().toString().contains(".tmp")).count(), "no temp folder left");
        }
    }

    @Test
    void awqScalesAndGptaqWriteAFolderThatEvaluates() throws IOException {
        Path out = tmp.resolve("awq-gptaq");
        BadInputTest.Run r = BadInputTest.shrink("gptq", stories().toString(), "--work-dir", out.toString(),
                "--w-group-size", "32", "--awq-scales", "--gptaq", "--calib-dataset", "tinystories", "--calib-samples", "8",
                "--calib-seqlen", "128", "-q");
        assertEquals(0, r.code(), r.err());
        JsonNode report = new ObjectMapper().readTree(out.resolve("shrink-report.json").toFile());
        assertTrue(report.at("/options/awq_scales").asBoolean() && report.at("/options/gptaq").asBoolean(), report.toString());
        // the scales folded into the input norms are written (the source's norms would give another function)
        try (var src = dev.shrink.core.model.ModelDir.open(stories()); var q = dev.shrink.core.model.ModelDir.open(out)) {
            String norm = "model.layers.0.input_layernorm.weight";
            assertFalse(java.util.Arrays.equals(src.weights().floats(norm), q.weights().floats(norm)), "norm not rewritten");
        }
        BadInputTest.Run e = BadInputTest.shrink("eval", "--model", out.toString(), "--dataset", "tinystories",
                "--seqlen", "128", "--max-windows", "4", "--json");
        assertEquals(0, e.code(), e.err());
        double ppl = new ObjectMapper().readTree(e.out()).at("/results/0/ppl").asDouble();
        assertTrue(ppl > 3.0 && ppl < 6.0, "tinystories ppl of a 4-bit stories260K with AWQ scales and GPTAQ: " + ppl);

        BadInputTest.Run rtn = BadInputTest.shrink("gptq", stories().toString(), "--work-dir", tmp.resolve("r").toString(),
                "--method", "rtn", "--awq-scales");
        assertEquals(2, rtn.code());
        assertTrue(rtn.err().contains("--awq-scales") && rtn.err().strip().lines().count() == 1, rtn.err());
        assertFalse(Files.exists(tmp.resolve("r")));
    }

    @Test
    void refusesANonEmptyWorkDirBeforeWorking() throws IOException {
        Path out = Files.createDirectories(tmp.resolve("busy"));
        Files.writeString(out.resolve("keep.txt"), "mine");
        BadInputTest.Run r = BadInputTest.shrink("gptq", stories().toString(), "--work-dir", out.toString(), "--method", "rtn", "-q");
        assertEquals(2, r.code());
        assertTrue(r.err().contains("--overwrite"), r.err());
        assertEquals("mine", Files.readString(out.resolve("keep.txt")));
    }

    @Test
    void refusesBitsAndGroupSizesThatDoNotFit() {
        BadInputTest.Run bits = BadInputTest.shrink("gptq", stories().toString(), "--work-dir", tmp.resolve("a").toString(), "--w-bits", "5");
        assertEquals(2, bits.code());
        assertTrue(bits.err().contains("--w-bits"), bits.err());
        BadInputTest.Run group = BadInputTest.shrink("gptq", stories().toString(), "--work-dir", tmp.resolve("b").toString(), "--w-group-size", "100");
        assertEquals(2, group.code());
        assertTrue(group.err().contains("--w-group-size"), group.err());
        // g128 fits no linear of stories260K (in-features 64 and 172): a clear error, no folder
        BadInputTest.Run none = BadInputTest.shrink("gptq", stories().toString(), "--work-dir", tmp.resolve("c").toString(),
                "--method", "rtn", "--w-group-size", "128", "-q");
        assertEquals(2, none.code());
        assertTrue(none.err().contains("no decoder linear can be packed"), none.err());
        assertFalse(Files.exists(tmp.resolve("c")));
    }

    @Test
    void refusesFewerCalibrationTokensThanAsked() throws IOException {
        Path tokens = tmp.resolve("few.safetensors");
        TokenWindows.write(tokens, new int[][] {{1, 2, 3, 4}, {1, 5, 6, 7}});
        BadInputTest.Run r = BadInputTest.shrink("gptq", stories().toString(), "--work-dir", tmp.resolve("q").toString(),
                "--calib-tokens", tokens.toString(), "--calib-samples", "8", "--calib-seqlen", "4", "-q");
        assertEquals(2, r.code());
        assertTrue(r.err().contains("few.safetensors"), r.err());
        assertFalse(Files.exists(tmp.resolve("q")));
    }
}
