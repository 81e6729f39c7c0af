package dev.shrink.cli;

import static dev.shrink.cli.BadInputTest.assertOneLineError;
import static dev.shrink.cli.BadInputTest.shrink;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.shrink.calib.SharedData;
import dev.shrink.cli.BadInputTest.Run;
import dev.shrink.core.safetensors.TokenWindows;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Inputs and settings that used to crash (exit 1 with a stack trace): token ids outside the
 * vocabulary, integer overflow from large settings, an empty prompt without BOS, bad --threads,
 * unbounded files, running out of memory. Each now gets one line and exit 2, or exit 4 for out of
 * memory (README, "Errors").
 */
class CrashInputTest {
    private static final ObjectMapper JSON = new ObjectMapper();

    @TempDir
    Path tmp;

    Path model() throws IOException {
        return BadInputTest.modelCopy(tmp);
    }

    static void editJson(Path file, Consumer<ObjectNode> edit) throws IOException {
        ObjectNode root = (ObjectNode) JSON.readTree(file.toFile());
        edit.accept(root);
        Files.delete(file); // the copies of the shared files are read-only
        JSON.writeValue(file.toFile(), root);
    }

    /** The first 10,000 characters of tinystories: enough windows, and fast to tokenize. */
    Path shortText() throws IOException {
        Path file = tmp.resolve("short.txt");
        if (!Files.exists(file)) {
            Path shared = SharedData.root().orElseThrow();
            String text = Files.readString(shared.resolve("datasets/tinystories-valid-sample/tinystories_val.txt"));
            Files.writeString(file, text.substring(0, 10_000));
        }
        return file;
    }

    Run evalOn(Path model, String... more) throws IOException {
        List<String> args = new ArrayList<>(List.of("eval", "--model", model.toString(), "--dataset",
                shortText().toString(), "--max-windows", "1", "--seqlen", "64", "-q"));
        args.addAll(List.of(more));
        return shrink(args.toArray(String[]::new));
    }

    // --- token ids outside the vocabulary

    @Test
    void bosTokenIdOutsideTheVocabulary() throws IOException {
        Path m = model();
        for (int bos : new int[] {512, 99999}) {
            editJson(m.resolve("config.json"), c -> c.put("bos_token_id", bos));
            Run r = evalOn(m);
            assertOneLineError(r, "config.json", "bos_token_id " + bos);
            assertTrue(r.err().contains("vocab"), r.err());
        }
        // a negative id is no token id at all: refused as config.json is read
        editJson(m.resolve("config.json"), c -> c.put("bos_token_id", -1));
        Run r = evalOn(m);
        assertOneLineError(r, "config.json", "bos_token_id");
        assertTrue(r.err().contains("found -1"), r.err());
    }

    @Test
    void addedTokenPastTheVocabulary() throws IOException {
        Path m = model();
        editJson(m.resolve("tokenizer.json"), t -> ((ArrayNode) t.get("added_tokens")).addObject()
                .put("id", 5000).put("content", "<big>").put("single_word", false).put("lstrip", false)
                .put("rstrip", false).put("normalized", false).put("special", false));
        Run r = shrink("generate", "--model", m.toString(), "--prompt", "<big> Once", "--max-new-tokens", "2", "-q");
        assertOneLineError(r, "tokenizer.json", "token id 5000");
        assertTrue(r.err().contains("vocabulary of 512"), r.err());
    }

    @Test
    void tokenizerOfAnotherModel() throws IOException {
        Path m = model();
        // the same pieces under the ids of a larger vocabulary: every id moved up by 1000
        editJson(m.resolve("tokenizer.json"), t -> {
            ObjectNode vocab = (ObjectNode) t.get("model").get("vocab");
            vocab.properties().forEach(e -> e.setValue(JSON.getNodeFactory().numberNode(e.getValue().asInt() + 1000)));
            t.get("added_tokens").forEach(a -> ((ObjectNode) a).put("id", a.get("id").asInt() + 1000));
        });
        assertOneLineError(evalOn(m), "tokenizer.json", "outside the model's vocabulary");
    }

    @Test
    void calibrationWindowsOfAnotherVocabulary() throws IOException {
        Path m = model();
        Path windows = tmp.resolve("other-vocab.safetensors");
        int[][] w = new int[2][16];
        for (int[] row : w) {
            Arrays.fill(row, 7);
        }
        w[1][3] = 600; // stories260K has 512 tokens
        TokenWindows.write(windows, w);
        Path out = tmp.resolve("q");
        Run r = shrink("gptq", m.toString(), "--work-dir", out.toString(), "--calib-tokens", windows.toString(),
                "--calib-samples", "2", "--calib-seqlen", "16", "-q");
        assertOneLineError(r, "other-vocab.safetensors", "token id 600 (window 1, position 3)");
        assertFalse(Files.exists(out), "no output written");
    }

    // --- integer overflow

    @Test
    void hugeMaxPositionEmbeddingsRunsAsTheModelDoes() throws IOException {
        Path m = model();
        editJson(m.resolve("config.json"), c -> c.put("max_position_embeddings", 536870912));
        Path original = m.getParent().resolve("original");
        Files.createDirectories(original);
        for (String f : new String[] {"config.json", "tokenizer.json", "model.safetensors"}) {
            Files.copy(SharedData.root().orElseThrow().resolve("models/stories260K-hf").resolve(f), original.resolve(f));
        }
        // the same numbers as with the real max_position_embeddings: the RoPE tables grow as used
        String[] eval = {"eval", "--dataset", shortText().toString(), "--max-windows", "2", "--seqlen", "128", "-q"};
        Run big = shrink(concat(eval, "--model", m.toString()));
        Run small = shrink(concat(eval, "--model", original.toString()));
        assertEquals(0, big.code(), big.err());
        assertEquals(ppl(small.out()), ppl(big.out()));
        String[] gen = {"generate", "--prompt", "Once upon a time", "--max-new-tokens", "40", "--ignore-eos", "-q"};
        Run genBig = shrink(concat(gen, "--model", m.toString()));
        Run genSmall = shrink(concat(gen, "--model", original.toString()));
        assertEquals(0, genBig.code(), genBig.err());
        assertEquals(genSmall.out(), genBig.out());
    }

    private static String ppl(String evalOut) {
        int i = evalOut.indexOf("ppl ");
        assertTrue(i >= 0, evalOut);
        return evalOut.substring(i, evalOut.indexOf(' ', i + 4));
    }

    private static String[] concat(String[] a, String... b) {
        String[] out = Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, out, a.length, b.length);
        return out;
    }

    @Test
    void maxNewTokensNearIntMax() throws IOException {
        Path m = model();
        editJson(m.resolve("config.json"), c -> c.put("max_position_embeddings", 536870912));
        Run r = shrink("generate", "--model", m.toString(), "--prompt", "Once", "--max-new-tokens", "2147483647", "-q");
        assertEquals(2, r.code(), r.err());
        assertTrue(r.err().startsWith("shrink: error: ") && r.err().contains("max_position_embeddings 536870912"), r.err());
        assertFalse(r.err().contains("\tat "), r.err());
    }

    @Test
    void calibrationSamplesOverflow() throws IOException {
        Path m = model();
        Path out = tmp.resolve("q");
        Run r = shrink("gptq", m.toString(), "--work-dir", out.toString(), "--calib-dataset", "tinystories",
                "--calib-samples", "2000000000", "-q");
        assertEquals(2, r.code(), r.err());
        assertTrue(r.err().startsWith("shrink: error: 2,000,000,000 calibration samples of 512 tokens"), r.err());
        assertEquals(1, r.err().strip().lines().count(), r.err());
        assertFalse(Files.exists(out));
    }

    // --- empty prompt, threads

    @Test
    void emptyPromptWithoutBos() throws IOException {
        Path m = model();
        editJson(m.resolve("config.json"), c -> c.remove("bos_token_id"));
        Run r = shrink("generate", "--model", m.toString(), "--prompt", "", "-q");
        assertOneLineError(r, "config.json", "no bos_token_id");
    }

    @Test
    void threadsOutOfRange() throws IOException {
        Path m = model();
        for (String t : new String[] {"40000", "-3", "1025"}) {
            Run r = evalOn(m, "--threads", t);
            assertEquals(2, r.code(), r.err());
            assertEquals("shrink: error: --threads " + t + ": must be 0 (all " + Runtime.getRuntime().availableProcessors()
                    + " cores) or 1 to 1024", r.err().strip());
        }
        assertEquals(0, evalOn(m, "--threads", "1").code());
    }

    // --- unbounded files

    @Test
    void datasetThatNeverEnds() throws IOException {
        assumeTrue(Files.exists(Path.of("/dev/zero")), "no /dev/zero here");
        Run r = shrink("eval", "--model", model().toString(), "--dataset", "/dev/zero", "-q");
        assertOneLineError(r, "/dev/zero", "not a regular file");
    }

    @Test
    void configLinkedToDevZero() throws IOException {
        assumeTrue(Files.exists(Path.of("/dev/zero")), "no /dev/zero here");
        Path m = model();
        Files.delete(m.resolve("config.json"));
        Files.createSymbolicLink(m.resolve("config.json"), Path.of("/dev/zero"));
        assertOneLineError(evalOn(m), "config.json", "not a regular file");
    }

    @Test
    void configTooLarge() throws IOException {
        Path m = model();
        Path config = m.resolve("config.json");
        String json = Files.readString(config);
        Files.delete(config);
        try (var out = Files.newBufferedWriter(config)) {
            out.write(json.substring(0, json.lastIndexOf('}')));
            out.write(",\"padding\":\"");
            char[] chunk = new char[1 << 20];
            Arrays.fill(chunk, 'x');
            for (int i = 0; i < 65; i++) {
                out.write(chunk);
            }
            out.write("\"}");
        }
        assertOneLineError(evalOn(m), "config.json", "at most 64.0 MiB");
    }

    // --- out of memory: its own exit code, in a JVM with a small heap

    @Test
    void outOfMemoryTokenizing() throws Exception {
        Run r = forkedShrink("32m", "eval", "--model", model().toString(), "--dataset", "tinystories", "-q");
        assertOutOfMemory(r, "--seqlen");
    }

    @Test
    void outOfMemoryInTheKvCache() throws Exception {
        Path m = model();
        editJson(m.resolve("config.json"), c -> c.put("max_position_embeddings", 536870912));
        // 20M positions × 32 floats × 5 layers: gigabytes of cache in a 64 MiB heap
        Run r = forkedShrink("64m", "generate", "--model", m.toString(), "--prompt", "Once",
                "--max-new-tokens", "20000000", "-q");
        assertOutOfMemory(r, "--max-new-tokens");
    }

    static void assertOutOfMemory(Run r, String option) {
        assertEquals(Main.EXIT_OUT_OF_MEMORY, r.code(), () -> "exit code; stderr: " + r.err());
        List<String> lines = r.err().strip().lines().toList();
        assertEquals(1, lines.size(), () -> "one line expected, got:\n" + r.err());
        String line = lines.get(0);
        assertTrue(line.startsWith("shrink: error: out of memory"), line);
        assertTrue(line.contains("SHRINK_HEAP"), line);
        assertTrue(line.contains(option), line);
    }

    /** Runs the CLI in a new JVM with {@code -Xmx heap} (the heap of this one cannot change). */
    Run forkedShrink(String heap, String... args) throws Exception {
        Path shared = SharedData.root().orElse(null);
        assumeTrue(shared != null, "shared fixtures not found");
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "-Xmx" + heap, "--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED",
                "--sun-misc-unsafe-memory-access=allow", "-Dshrink.shared=" + shared,
                "-cp", System.getProperty("java.class.path"), Main.class.getName()));
        cmd.addAll(List.of(args));
        Path out = tmp.resolve("forked.out"), err = tmp.resolve("forked.err");
        Process p = new ProcessBuilder(cmd).redirectOutput(out.toFile()).redirectError(err.toFile()).start();
        if (!p.waitFor(120, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            throw new AssertionError("the forked shrink did not finish in 120 s");
        }
        String stderr = String.join("\n", Files.readAllLines(err).stream()
                .filter(l -> !l.startsWith("WARNING: Using incubator modules")).toList());
        return new Run(p.exitValue(), Files.readString(out), stderr);
    }
}
