package dev.shrink.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.shrink.calib.SharedData;
import dev.shrink.core.safetensors.TokenWindows;
import dev.shrink.core.model.Tokenizer;
import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** `shrink awq` as users run it, on stories260K-hf (fast), and its refusals. */
class AwqCommandTest {
    @TempDir
    Path tmp;

    static Path model(String name) {
        Path p = SharedData.root().map(s -> s.resolve("models/" + name)).orElse(Path.of("missing"));
        assumeTrue(Files.isDirectory(p), "shared fixtures not found");
        return p;
    }

    /**
     * stories260K (dims 64 and 172) with groups of 32: q, k, v, o fit; gate and up (172 outputs, not a
     * multiple of 8) and down (172 inputs) do not, and --skip-unfit keeps them as floats.
     */
    @Test
    void quantizesStoriesSkippingUnfitLayers() throws IOException {
        Path out = tmp.resolve("q");
        Path tokens = tmp.resolve("calib.safetensors");
        BadInputTest.Run r = BadInputTest.shrink("awq", model("stories260K-hf").toString(), "--work-dir", out.toString(),
                "--w-group-size", "32", "--skip-unfit", "--calib-dataset", "tinystories", "--calib-samples", "8",
                "--calib-seqlen", "64", "--save-calib-tokens", tokens.toString(), "-q");
        assertEquals(0, r.code(), r.err());
        assertTrue(r.out().contains("wrote " + out), r.out());
        assertTrue(r.out().contains("scale mapping") && r.out().contains("err awq"), "a summary table: " + r.out());
        JsonNode cfg = new ObjectMapper().readTree(out.resolve("config.json").toFile());
        JsonNode qc = cfg.get("quantization_config");
        assertEquals("awq", qc.get("quant_method").asText());
        assertEquals("gemm", qc.get("version").asText());
        assertEquals(32, qc.get("group_size").asInt());
        assertTrue(qc.get("zero_point").asBoolean());
        // each layer's gate, up and down, and the fused gate|up that vLLM looks up
        assertEquals(5 * (3 + 1), qc.get("modules_to_not_convert").size(), "the unquantized linears are named for loaders");
        assertEquals("float16", cfg.get("torch_dtype").asText());
        assertTrue(Files.exists(out.resolve("tokenizer.json")));

        JsonNode report = new ObjectMapper().readTree(out.resolve("shrink-report.json").toFile());
        assertEquals("awq", report.get("stage").asText());
        assertEquals("blocks", report.at("/calibration/sampling").asText());
        assertEquals(TokenWindows.fingerprint(TokenWindows.read(tokens)), report.at("/calibration/fingerprint_sha256").asText());
        java.util.List<String> camel = new java.util.ArrayList<>();
        CommandsTest.snakeCaseKeys(report, "", camel);
        assertEquals(java.util.List.of(), camel, "shrink-report.json keys are snake_case");
        int quantized = 0;
        for (JsonNode l : report.get("layers")) {
            if (l.get("status").asText().equals("quantized")) {
                quantized++;
                assertTrue(l.get("name").asText().contains("self_attn"), l.toString());
                assertTrue(l.get("error_awq").asDouble() >= 0, l.toString());
            } else {
                String reason = l.get("reason").asText();
                assertTrue(reason.contains("out-features 172 not divisible by 8")
                        || reason.contains("in-features 172 not divisible by the group size 32"), reason);
            }
        }
        assertEquals(5 * 4, quantized);
        int searched = 0;
        for (JsonNode m : report.get("mappings")) {
            if (m.get("status").asText().equals("searched")) {
                searched++;
                assertTrue(m.get("loss").asDouble() <= m.get("loss_at_zero").asDouble(), m.toString());
                assertEquals(20, m.get("losses").size());
            }
        }
        assertEquals(5, searched, "only input_layernorm -> q,k,v has every consumer quantized (v -> o: GQA)");
        assertEquals(5 * 2, report.get("clips").size(), "v and o of each block are clipped, q and k never");

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
    void refusesBitsOtherThanFour() {
        BadInputTest.Run r = BadInputTest.shrink("awq", model("stories260K-hf").toString(), "--work-dir",
                tmp.resolve("a").toString(), "--w-bits", "3");
        assertEquals(2, r.code());
        assertTrue(r.err().contains("--w-bits must be 4"), r.err());
        assertFalse(Files.exists(tmp.resolve("a")));
    }

    /**
     * Linears AWQ cannot pack stay in float with a warning naming them (--skip-unfit is the default, as
     * GPTQ does); a folder where none can be packed, or a bad option, is refused before anything is written.
     */
    @Test
    void keepsUnfitLayersInFloatNamingThemAndRefusesBadOptions() {
        BadInputTest.Run in = BadInputTest.shrink("awq", model("stories260K-hf").toString(), "--work-dir",
                tmp.resolve("b").toString(), "--calib-dataset", "tinystories", "--calib-samples", "2", "--calib-seqlen", "16", "-q");
        assertEquals(2, in.code());
        assertTrue(in.err().contains("in-features 64 not divisible by the group size 128"), in.err());
        BadInputTest.Run outF = BadInputTest.shrink("awq", model("stories260K-hf").toString(), "--work-dir",
                tmp.resolve("c").toString(), "--w-group-size", "64", "--calib-dataset", "tinystories", "--calib-samples", "2",
                "--calib-seqlen", "16", "-q");
        assertEquals(0, outF.code(), outF.err());
        assertTrue(outF.err().contains("shrink: warning: ") && outF.err().contains("model.layers.0.mlp.gate_proj")
                && outF.err().contains("out-features 172 not divisible by 8"), outF.err());
        BadInputTest.Run export = BadInputTest.shrink("awq", model("stories260K-hf").toString(), "--work-dir",
                tmp.resolve("d").toString(), "--export", "marlin");
        assertEquals(2, export.code());
        assertTrue(export.err().contains("--export"), export.err());
        assertFalse(Files.exists(tmp.resolve("b")) || Files.exists(tmp.resolve("d")));
    }

    /**
     * LMDeploy's line (`--calib-dataset ptb --calib-samples 128 --calib-seqlen 1024`) is accepted as typed,
     * and its calibration works for the fixture's tokenizer: 128 windows of 1024 tokens, blocks when
     * PTB holds enough text, random windows of the joined text otherwise.
     */
    @Test
    void lmdeployCalibrationLineWorks() throws java.io.IOException {
        Path fixture = model("fixture-llama-14m");
        StringWriter notes = new StringWriter();
        try (Tokenizer tok = Tokenizer.load(fixture.resolve("tokenizer.json"))) {
            CalibOptions o = new CalibOptions();
            o.dataset = "ptb";
            o.samples = 128;
            o.seqlen = 1024;
            AwqCommand.Calibration c = AwqCommand.calibration(o, "blocks", tok, 1, new PrintWriter(notes, true));
            assertEquals(128, c.windows().length);
            for (int[] w : c.windows()) {
                assertEquals(1024, w.length);
            }
            assertTrue(c.sampling().equals("blocks") || notes.toString().contains("random windows"), c.sampling());
        }
        // the options parse as typed (the run stops at a bad --work-dir, before any work)
        Path file = Files.writeString(tmp.resolve("a-file"), "x");
        BadInputTest.Run r = BadInputTest.shrink("awq", fixture.toString(), "--calib-dataset", "ptb", "--calib-samples", "128",
                "--calib-seqlen", "1024", "--w-bits", "4", "--w-group-size", "128", "--work-dir", file.toString());
        assertEquals(2, r.code());
        assertTrue(r.err().contains("--work-dir is a file"), r.err());
    }
}
