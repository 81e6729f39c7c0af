package dev.shrink.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.shrink.calib.SharedData;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Outputs never destroy inputs or what they do not own: a work dir reached through a link alias, a
 * device or pipe named as an output file, a link planted at a temporary name, a checkpoint folder or a
 * compare work dir that holds an input. Each is refused with one error line and exit code 2, and the
 * input is left as it was.
 */
class DataLossTest {
    @TempDir
    Path tmp;

    static final List<String> FILES = List.of("config.json", "tokenizer.json", "model.safetensors");

    static Path stories() {
        Path src = SharedData.root().map(p -> p.resolve("models/stories260K-hf")).orElse(Path.of("missing"));
        assumeTrue(Files.isDirectory(src), "shared fixtures not found");
        return src;
    }

    static Path copyModel(Path dst) throws IOException {
        Files.createDirectories(dst);
        for (String f : FILES) {
            Files.copy(stories().resolve(f), dst.resolve(f));
        }
        return dst;
    }

    static void assertIntact(Path model) throws IOException {
        for (String f : FILES) {
            assertTrue(Files.isRegularFile(model.resolve(f)), () -> model + "/" + f + " survives");
            assertEquals(-1, Files.mismatch(stories().resolve(f), model.resolve(f)), () -> f + " unchanged");
        }
    }

    static void assertRefused(BadInputTest.Run r, String file, String problem) {
        assertEquals(2, r.code(), () -> "exit code; out: " + r.out() + " err: " + r.err());
        String[] lines = r.err().strip().split("\n");
        assertEquals(1, lines.length, () -> "one line: " + r.err());
        assertTrue(lines[0].startsWith("shrink: error: " + file), lines[0]);
        assertTrue(lines[0].contains(problem), () -> "'" + problem + "' in " + lines[0]);
        assertFalse(r.err().contains("\tat "), "no stack trace");
    }

    Path fifo(String name) throws Exception {
        Path f = tmp.resolve(name);
        Process p = new ProcessBuilder("mkfifo", f.toString()).start();
        assumeTrue(p.waitFor() == 0, "mkfifo unavailable");
        return f;
    }

    @Test
    void gptqOverwriteThroughALinkAliasKeepsTheSource() throws IOException {
        Path model = copyModel(tmp.resolve("A/copy/model"));
        Path alias = Files.createSymbolicLink(tmp.resolve("alias"), tmp.resolve("A"));
        Path out = alias.resolve("copy");
        BadInputTest.Run r = BadInputTest.shrink("gptq", model.toString(), "--work-dir", out.toString(), "--overwrite",
                "--method", "rtn", "-q");
        assertRefused(r, out.toString(), "holds the input " + model);
        assertIntact(model);

        Path inside = alias.resolve("copy/model/q");
        assertRefused(BadInputTest.shrink("gptq", model.toString(), "--work-dir", inside.toString(), "--method", "rtn", "-q"),
                inside.toString(), "is inside the input");
        assertFalse(Files.exists(inside));
        assertIntact(model);
    }

    @Test
    void gptqSaveCalibTokensToAPipeOrIntoTheModelIsRefusedBeforeWork() throws Exception {
        Path model = copyModel(tmp.resolve("m"));
        Path pipe = fifo("tokens.pipe");
        Path out = tmp.resolve("q");
        assertRefused(BadInputTest.shrink("gptq", model.toString(), "--work-dir", out.toString(), "--method", "rtn",
                "--save-calib-tokens", pipe.toString(), "-q"), pipe.toString(), "not a regular file");
        assertFalse(Files.isRegularFile(pipe, LinkOption.NOFOLLOW_LINKS), "still a pipe");
        Path weights = model.resolve("model.safetensors");
        assertRefused(BadInputTest.shrink("gptq", model.toString(), "--work-dir", out.toString(), "--method", "rtn",
                "--save-calib-tokens", weights.toString(), "-q"), weights.toString(), "is inside the input");
        assertFalse(Files.exists(out), "nothing written");
        assertIntact(model);
    }

    @Test
    void evalOutputToAPipeIsRefusedAndAPlantedTemporaryLinkIsNotFollowed() throws Exception {
        Path model = copyModel(tmp.resolve("m"));
        String text = Files.writeString(tmp.resolve("t.txt"), "Once upon a time there was a cat.\n".repeat(40)).toString();
        Path pipe = fifo("results.pipe");
        assertRefused(BadInputTest.shrink("eval", "--model", model.toString(), "--dataset", text,
                "--max-windows", "1", "-q", "-o", pipe.toString()), pipe.toString(), "not a regular file");
        assertFalse(Files.isRegularFile(pipe, LinkOption.NOFOLLOW_LINKS), "still a pipe");

        Path victim = Files.writeString(tmp.resolve("victim"), "precious");
        Files.createSymbolicLink(tmp.resolve("out.json.tmp"), victim);
        Path out = tmp.resolve("out.json");
        BadInputTest.Run r = BadInputTest.shrink("eval", "--model", model.toString(), "--dataset", text,
                "--max-windows", "1", "-q", "-o", out.toString());
        assertEquals(0, r.code(), r.err());
        assertEquals("precious", Files.readString(victim));
        assertTrue(Files.readString(out).contains("\"results\""));

        Path config = model.resolve("config.json");
        assertRefused(BadInputTest.shrink("eval", "--model", model.toString(), "--dataset", text,
                "--max-windows", "1", "-q", "-o", config.toString()), config.toString(), "is inside the input");
        assertIntact(model);
    }

    @Test
    void distillCheckpointFolderHoldingTheTeacherIsRefused() throws IOException {
        Path teacher = copyModel(tmp.resolve("models/teacher"));
        Path text = Files.writeString(tmp.resolve("train.txt"), "Once upon a time there was a cat.\n".repeat(50));
        BadInputTest.Run r = BadInputTest.shrink("distill", "--teacher", teacher.toString(), "--drop-layers", "1",
                "--work-dir", tmp.resolve("kd").toString(), "--checkpoint-dir", tmp.resolve("models").toString(),
                "--steps", "1", "--batch", "1", "--seqlen", "16", "--calib-dataset", text.toString(), "-q");
        assertRefused(r, tmp.resolve("models").toString(), "holds the input " + teacher);
        assertIntact(teacher);
        assertFalse(Files.exists(tmp.resolve("kd")));
    }

    @Test
    void compareWorkDirHoldingTheModelIsRefused() throws IOException {
        Path model = copyModel(tmp.resolve("m"));
        Path recipe = Files.writeString(tmp.resolve("r.yaml"), """
                model: %s
                evaluation: {datasets: [tinystories], max_windows: 1}
                pipelines:
                  - {name: rtn, stages: [{gptq: {method: rtn}}]}
                """.formatted(model));
        BadInputTest.Run r = BadInputTest.shrink("compare", recipe.toString(), "--work-dir", tmp.toString(), "-q");
        assertRefused(r, tmp.toString(), "holds the input");
        assertFalse(Files.exists(tmp.resolve("stages")), "nothing written");
        assertIntact(model);
    }
}
