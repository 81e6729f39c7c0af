package dev.shrink.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.shrink.calib.SharedData;
import dev.shrink.distill.TrainText;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * `shrink distill` as users run it, on stories260K-hf pruned 2:4 by `shrink prune` (fast): the
 * folder, the report, the plot, perplexity before and after, resuming from a kept checkpoint, and
 * every refusal: one line, exit 2, no folder.
 */
class DistillCommandTest {
    @TempDir
    Path tmp;

    static final ObjectMapper JSON = new ObjectMapper();

    Path pruned() {
        Path out = tmp.resolve("p24");
        if (!Files.isDirectory(out)) {
            BadInputTest.Run r = BadInputTest.shrink("prune", GptqCommandTest.stories().toString(), "--work-dir",
                    out.toString(), "--method", "magnitude", "--pattern", "2:4", "-q");
            assertEquals(0, r.code(), r.err());
        }
        return out;
    }

    /** A small training text: the first 30 C4 sample documents. */
    String text() throws IOException {
        Path f = tmp.resolve("train.txt");
        if (!Files.exists(f)) {
            Files.writeString(f, String.join("\n\n", TrainText.documents("c4", null, false).subList(0, 30)));
        }
        return f.toString();
    }

    @Test
    void distillsAPrunedStudentAndResumesFromItsCheckpoint() throws IOException {
        Path out = tmp.resolve("kd");
        String stories = GptqCommandTest.stories().toString();
        BadInputTest.Run r = BadInputTest.shrink("distill", "--teacher", stories, "--student", pruned().toString(),
                "--work-dir", out.toString(), "--steps", "4", "--batch", "2", "--micro-batch", "1", "--seqlen", "32",
                "--warmup", "1", "--lr", "1e-3", "--calib-dataset", text(), "--eval-windows", "1", "--eval-datasets",
                "tinystories", "--checkpoint-every", "2", "--keep-checkpoint", "-q");
        assertEquals(0, r.code(), r.err());
        assertTrue(r.out().contains("trained 4 steps (from the start)"), r.out());
        assertTrue(r.out().matches("(?s).*tinystories +ppl +teacher \\d+\\.\\d+ +student before \\d+\\.\\d+ +after \\d+\\.\\d+ +"
                        + "\\(seqlen 512, 1 windows\\).*"),
                r.out());
        assertTrue(r.out().contains("wrote " + out), r.out());
        JsonNode report = JSON.readTree(out.resolve("shrink-report.json").toFile());
        assertEquals("distill", report.get("stage").asText());
        assertEquals(4, report.get("curve").size());
        double before = report.at("/perplexity/before/0/ppl").asDouble(), after = report.at("/perplexity/after/0/ppl").asDouble();
        assertTrue(after < before, before + " → " + after);
        assertEquals("2:4", JSON.readTree(out.resolve("config.json").toFile()).at("/shrink/sparsity/pattern").asText());
        assertTrue(Files.readString(out.resolve("loss-curve.svg")).contains("<polyline"));
        Path ckpt = tmp.resolve("kd.checkpoint");
        assertTrue(Files.isRegularFile(ckpt.resolve("checkpoint.safetensors")), "--keep-checkpoint");
        BadInputTest.Run e = BadInputTest.shrink("eval", "--model", out.toString(), "--dataset", "tinystories",
                "--max-windows", "1", "--json", "-q");
        assertEquals(0, e.code(), e.err());
        assertEquals(after, JSON.readTree(e.out()).at("/results/0/ppl").asDouble(), 1e-9,
                "the report's 'after' is the perplexity of the folder as written");

        // the same run again, resumed from the kept checkpoint (step 4 of 4): nothing left to train, same weights
        Path again = tmp.resolve("kd2");
        BadInputTest.Run res = BadInputTest.shrink("distill", "--teacher", stories, "--student", pruned().toString(),
                "--work-dir", again.toString(), "--steps", "4", "--batch", "2", "--seqlen", "32", "--warmup", "1",
                "--lr", "1e-3", "--calib-dataset", text(), "--checkpoint-dir", ckpt.toString(), "--resume", "-q");
        assertEquals(0, res.code(), res.err());
        assertTrue(res.out().contains("trained 4 steps (resumed at step 4)"), res.out());
        assertTrue(res.err().contains("resuming from step 4"), res.err());
        assertEquals(-1, Files.mismatch(out.resolve("model.safetensors"), again.resolve("model.safetensors")));
        assertFalse(Files.exists(ckpt), "the checkpoint is removed after a successful run");
    }

    void assertRefused(String expected, String... options) throws IOException {
        Path out = tmp.resolve("out");
        List<String> args = new ArrayList<>(List.of("distill", "--work-dir", out.toString(), "--steps", "2", "--batch", "2",
                "--seqlen", "32", "-q"));
        args.addAll(List.of(options));
        BadInputTest.Run r = BadInputTest.shrink(args.toArray(String[]::new));
        assertEquals(2, r.code(), () -> String.join(" ", options) + ": " + r.out() + r.err());
        String[] lines = r.err().strip().split("\n");
        assertTrue(lines[0].contains(expected), () -> "'" + expected + "' in: " + r.err());
        assertFalse(r.err().contains("\tat "), "no stack trace");
        assertFalse(Files.exists(out), "no output folder");
        assertFalse(Files.exists(tmp.resolve("out.checkpoint")), "no checkpoint folder");
        try (Stream<Path> s = Files.list(tmp)) {
            assertEquals(0, s.filter(p -> p.getFileName().toString().contains(".tmp-")).count(), "no temp folder");
        }
    }

    @Test
    void badInputIsRefusedWithOneClearLine() throws IOException {
        String stories = GptqCommandTest.stories().toString(), p24 = pruned().toString(), txt = text();
        Path fixture = SharedData.root().get().resolve("models/fixture-llama-14m");
        String[] ok = {"--teacher", stories, "--student", p24, "--calib-dataset", txt};
        assertRefused("has a vocabulary of 8192 tokens, student " + p24 + " one of 512", "--teacher", fixture.toString(),
                "--student", p24, "--calib-dataset", txt);
        assertRefused("--student and --drop-layers exclude each other", "--teacher", stories, "--student", p24,
                "--drop-layers", "1");
        assertRefused("give the student: --student DIR", "--teacher", stories);
        assertRefused("--drop-layers 7: the teacher has layers 0..4", "--teacher", stories, "--drop-layers", "7",
                "--calib-dataset", txt);
        assertRefused("--loss must be kl or reverse-kl, got 'mse'", concat(ok, "--loss", "mse"));
        assertRefused("--alpha must be in [0, 1], got 2.0", concat(ok, "--alpha", "2"));
        assertRefused("--temperature must be positive, got 0.0", concat(ok, "--temperature", "0"));
        assertRefused("--lr must be positive, got -1.0", concat(ok, "--lr", "-1"));
        assertRefused("--micro-batch must divide --batch 2, got 3", concat(ok, "--micro-batch", "3"));
        assertRefused("--warmup must not be negative, got -1", concat(ok, "--warmup", "-1"));
        assertRefused("--save-dtype must be source, bf16, f16 or f32, got 'int8'", concat(ok, "--save-dtype", "int8"));
        assertRefused("--layer-map goes with --hidden-weight", concat(ok, "--layer-map", "0:0"));
        assertRefused("--layer-map: '0-1' is not STUDENT:TEACHER", concat(ok, "--hidden-weight", "1", "--layer-map", "0-1"));
        assertRefused("--layer-map names teacher layer 9; the teacher has 5", concat(ok, "--hidden-weight", "1",
                "--layer-map", "0:9"));
        if (!dev.shrink.kernels.cuda.Cuda.availability().available()) { // with a GPU it trains there
            assertRefused("--device cuda: not available here", concat(ok, "--device", "cuda"));
        }
        assertRefused("--gpu-math bf16: unknown GEMM math 'bf16'", concat(ok, "--gpu-math", "bf16"));
        assertRefused("training text 'heldout' is evaluation text", "--teacher", stories, "--student", p24,
                "--calib-dataset", "heldout");
        assertRefused("training text 'wikitext2' is evaluation text", "--teacher", stories, "--student", p24,
                "--calib-dataset", "c4,wikitext2");
        assertRefused("checkpoint.safetensors: no checkpoint to resume from", concat(ok, "--resume"));
        assertRefused("calibration dataset nope.txt: neither a preset", "--teacher", stories, "--student", p24,
                "--calib-dataset", "nope.txt");
        assertRefused("Missing required option: '--teacher=DIR'", "--student", p24);

        // a quantized student is refused; a quantized teacher is read through eval's readers
        Path q = tmp.resolve("rtn");
        BadInputTest.Run g = BadInputTest.shrink("gptq", stories, "--work-dir", q.toString(), "--method", "rtn",
                "--w-group-size", "32", "-q");
        assertEquals(0, g.code(), g.err());
        assertRefused("the student must be an unquantized model (it has a quantization_config)", "--teacher", stories,
                "--student", q.toString(), "--calib-dataset", txt);
        Path kd = tmp.resolve("kd-from-rtn");
        BadInputTest.Run t = BadInputTest.shrink("distill", "--teacher", q.toString(), "--student", p24, "--work-dir",
                kd.toString(), "--steps", "1", "--batch", "1", "--seqlen", "32", "--calib-dataset", txt, "-q");
        assertEquals(0, t.code(), t.err());
        assertTrue(Files.isRegularFile(kd.resolve("model.safetensors")));
    }

    static String[] concat(String[] a, String... b) {
        List<String> l = new ArrayList<>(List.of(a));
        l.addAll(List.of(b));
        return l.toArray(String[]::new);
    }
}
