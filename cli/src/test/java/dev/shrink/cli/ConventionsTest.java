package dev.shrink.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeFalse;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.shrink.calib.SharedData;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.function.Supplier;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * One convention for every command (README, docs/JSON.md): the model as MODEL or --model, --json on
 * stdout with the documented snake_case keys, -q, LMDeploy's option names, unfit linears kept in float.
 */
class ConventionsTest {
    @TempDir
    Path tmp;

    static final ObjectMapper JSON = new ObjectMapper();

    static String stories() {
        return CommandsTest.model("stories260K-hf").toString();
    }

    /** A short story text (the start of the shared tinystories sample): tokenized in milliseconds, unlike the whole set. */
    String text() {
        Path t = tmp.resolve("stories.txt");
        if (!Files.exists(t)) {
            try {
                String all = Files.readString(SharedData.root().orElseThrow()
                        .resolve("datasets/tinystories-valid-sample/tinystories_val.txt"));
                Files.writeString(t, all.substring(0, Math.min(all.length(), 30_000)));
            } catch (IOException e) {
                throw new java.io.UncheckedIOException(e);
            }
        }
        return t.toString();
    }

    /** Cheap arguments that make each model-reading command run to the end on stories260K-hf. */
    private List<String[]> modelCommands() {
        return List.of(
                new String[] {"inspect"},
                new String[] {"estimate", "--batch", "2"},
                new String[] {"eval", "--dataset", text(), "--seqlen", "64", "--max-windows", "1", "-q"},
                new String[] {"generate", "--prompt", "Once upon a time", "--max-new-tokens", "4", "-q"},
                new String[] {"gptq", "--method", "rtn", "--w-group-size", "32", "--work-dir", "WORK", "-q"},
                new String[] {"awq", "--w-group-size", "32", "--calib-dataset", text(), "--calib-samples", "2",
                    "--calib-seqlen", "32", "--work-dir", "WORK", "-q"},
                new String[] {"prune", "--method", "magnitude", "--pattern", "2:4", "--work-dir", "WORK", "-q"});
    }

    private String[] args(String[] spec, String work, String... model) {
        List<String> a = new ArrayList<>();
        a.add(spec[0]);
        a.addAll(Arrays.asList(model));
        for (int i = 1; i < spec.length; i++) {
            a.add(spec[i].equals("WORK") ? work : spec[i]);
        }
        return a.toArray(String[]::new);
    }

    @Test
    void everyCommandTakesTheModelAsMODELOrAsDashDashModel() {
        for (String[] c : modelCommands()) {
            BadInputTest.Run positional = BadInputTest.shrink(args(c, tmp.resolve(c[0] + "-p").toString(), stories()));
            BadInputTest.Run option = BadInputTest.shrink(args(c, tmp.resolve(c[0] + "-o").toString(), "--model", stories()));
            BadInputTest.Run both = BadInputTest.shrink(args(c, tmp.resolve(c[0] + "-b").toString(), stories(), "--model",
                    stories()));
            assertEquals(0, positional.code(), c[0] + " MODEL: " + positional.err());
            assertEquals(0, option.code(), c[0] + " --model MODEL: " + option.err());
            assertEquals(0, both.code(), c[0] + " MODEL --model MODEL (the same): " + both.err());
            if (c[0].equals("inspect") || c[0].equals("estimate")) {
                assertEquals(positional.out(), option.out(), c[0] + ": the same result either way");
            }
            // the two forms naming different models, or no model: one line, exit 2, nothing written
            BadInputTest.Run twice = BadInputTest.shrink(args(c, tmp.resolve(c[0] + "-t").toString(), stories(), "--model",
                    tmp.resolve("other").toString()));
            assertOneLine(twice, "given twice");
            assertTrue(twice.err().contains(tmp.resolve("other").toString()), twice.err());
            if (!c[0].equals("estimate")) { // estimate also takes bare dimensions instead of a model
                BadInputTest.Run none = BadInputTest.shrink(args(c, tmp.resolve(c[0] + "-n").toString()));
                assertOneLine(none, "needs a model");
                assertTrue(none.err().contains("shrink " + c[0] + " MODEL"), none.err());
            }
            assertFalse(Files.exists(tmp.resolve(c[0] + "-t")) || Files.exists(tmp.resolve(c[0] + "-n")));
        }
        // help documents one form: the usage line shows MODEL, not --model (its description names the alias)
        for (String[] c : modelCommands()) {
            List<String> lines = BadInputTest.shrink(c[0], "--help").out().lines().toList();
            String usage = lines.get(0); // the synopsis, with its wrapped continuation lines
            for (int i = 1; i < lines.size() && lines.get(i).startsWith(" "); i++) {
                usage += lines.get(i);
            }
            assertTrue(usage.contains("[MODEL]") && !usage.contains("--model"), c[0] + " --help: " + usage);
        }
    }

    static void assertOneLine(BadInputTest.Run r, String words) {
        assertEquals(2, r.code(), r.err());
        String[] lines = r.err().strip().split("\n");
        assertEquals(1, lines.length, r.err());
        assertTrue(lines[0].startsWith("shrink: error: ") && lines[0].contains(words), r.err());
    }

    @Test
    void everyResultsCommandPrintsItsDocumentedJsonOnStdout() throws IOException {
        Path work = tmp.resolve("w");
        checkJson("inspect", BadInputTest.shrink("inspect", stories(), "--json"));
        checkJson("estimate", BadInputTest.shrink("estimate", stories(), "--gpu", "l4", "--json", "-q"));
        JsonNode eval = checkJson("eval", BadInputTest.shrink("eval", stories(), "--dataset", text(), "--seqlen",
                "64", "--max-windows", "1", "--json"));
        assertEquals(1, eval.get("results").size());
        JsonNode gen = checkJson("generate", BadInputTest.shrink("generate", stories(), "--prompt", "Once upon a time",
                "--max-new-tokens", "4", "--json", "-q"));
        assertEquals(4, gen.get("new_ids").size());
        assertEquals(BadInputTest.shrink("generate", stories(), "--prompt", "Once upon a time", "--max-new-tokens", "4",
                "-q").out().strip(), gen.get("text").asText(), "the same text as without --json");
        for (String[] c : new String[][] {
            {"gptq", stories(), "--method", "rtn", "--w-group-size", "32"},
            {"awq", stories(), "--w-group-size", "32", "--calib-dataset", text(), "--calib-samples", "2",
                "--calib-seqlen", "32"},
            {"prune", stories(), "--method", "magnitude", "--pattern", "2:4"},
            {"distill", "--teacher", stories(), "--drop-layers", "4", "--steps", "2", "--batch", "1", "--seqlen", "32",
                "--warmup", "1", "--calib-dataset", text(), "--checkpoint-every", "0"}}) {
            Path out = work.resolve(c[0]);
            List<String> a = new ArrayList<>(Arrays.asList(c));
            a.addAll(List.of("--work-dir", out.toString(), "--json"));
            JsonNode doc = checkJson(c[0], BadInputTest.shrink(a.toArray(String[]::new)));
            assertEquals(c[0], doc.get("command").asText());
            assertEquals(out.toAbsolutePath().normalize().toString(), doc.get("output").asText());
            assertEquals(JSON.readTree(out.resolve("shrink-report.json").toFile()), doc.get("report"),
                    c[0] + ": the report the folder holds");
            assertEquals(GptqCommand.folderBytes(out), doc.get("bytes").asLong());
        }
        Path synth = work.resolve("synth");
        JsonNode s = checkJson("synth", BadInputTest.shrink("synth", synth.toString(), "--hidden", "64", "--intermediate",
                "96", "--layers", "1", "--heads", "4", "--vocab", "300", "--json"));
        assertEquals(synth.toAbsolutePath().normalize().toString(), s.get("output").asText());
        Path recipe = tmp.resolve("r.yaml");
        Files.writeString(recipe, """
                model: %s
                evaluation: {datasets: ["%s"], seqlen: 64, max_windows: 1, kl: {windows: 1},
                  prompts: ["Once"], max_new_tokens: 2, speed: {prefill_tokens: 8, decode_tokens: 2, repeats: 1}}
                pipelines:
                  - {name: rtn, stages: [{gptq: {method: rtn, bits: 4, group_size: 32}}]}
                """.formatted(stories(), text()));
        JsonNode cmp = checkJson("compare", BadInputTest.shrink("compare", recipe.toString(), "--work-dir",
                work.resolve("cmp").toString(), "--json", "-q"));
        assertEquals(JSON.readTree(work.resolve("cmp/report.json").toFile()), cmp);
    }

    /** The run succeeded, stdout is exactly one JSON object with snake_case keys and docs/JSON.md's top-level keys. */
    static JsonNode checkJson(String command, BadInputTest.Run r) throws IOException {
        assertEquals(0, r.code(), command + ": " + r.err());
        JsonNode doc = JSON.readTree(r.out());
        assertTrue(doc.isObject(), command + " --json: " + r.out());
        List<String> bad = new ArrayList<>();
        CommandsTest.snakeCaseKeys(doc, "", bad);
        // maps keyed by module names (shrink.sparsity's layers: model.layers.0.mlp.up_proj) and compare's glossary
        // (definitions, keyed by the terms its tables show) hold data, not schema
        bad.removeIf(p -> p.substring(p.lastIndexOf('/') + 1).matches("[a-z_0-9]+(\\.[a-z_0-9]+)+")
                || p.startsWith("/definitions/"));
        assertEquals(List.of(), bad, command + ": keys not in snake_case");
        List<String> keys = new ArrayList<>();
        doc.fieldNames().forEachRemaining(keys::add);
        assertEquals(documentedKeys(command), keys, command + " --json: docs/JSON.md's top-level keys");
        return doc;
    }

    /** The "Top-level keys:" of the docs/JSON.md section whose heading names {@code command}. */
    static List<String> documentedKeys(String command) throws IOException {
        String md = Files.readString(root().resolve("docs/JSON.md"));
        Matcher m = Pattern.compile("(?m)^## (.+)\\n\\nTop-level keys: (.+)$").matcher(md);
        while (m.find()) {
            if (Arrays.asList(m.group(1).split(",\\s*")).contains(command)) {
                List<String> keys = new ArrayList<>();
                Matcher k = Pattern.compile("`([a-z_0-9]+)`").matcher(m.group(2));
                while (k.find()) {
                    keys.add(k.group(1));
                }
                return keys;
            }
        }
        throw new AssertionError("docs/JSON.md has no section for " + command);
    }

    @Test
    void exitCodesAreDocumentedInHelpAndReadme() throws IOException {
        String help = BadInputTest.shrink("--help").out().replaceAll("\\s+", " ");
        for (String code : List.of("0 done", "1 internal error", "2 bad input", "3 compare's gate failed",
                "4 out of memory")) {
            assertTrue(help.contains(code), "shrink --help names exit code " + code + ": " + help);
        }
        Path readme = root().resolve("README.md");
        String md = Files.readString(readme);
        String section = md.substring(md.indexOf("## Exit codes"), md.indexOf("\n## ", md.indexOf("## Exit codes") + 1));
        for (String row : List.of("| 0 | done", "| 1 | internal error", "| 2 | bad input", "| 3 | `compare --baseline`",
                "| 4 | out of memory")) {
            assertTrue(section.contains(row), "README's exit codes: " + row);
        }
        assertEquals(2, Main.EXIT_BAD_INPUT);
        assertEquals(4, Main.EXIT_OUT_OF_MEMORY);
    }

    /** The checkout's root: the folder above the working directory that holds docs/JSON.md. */
    static Path root() {
        Path dir = Path.of("").toAbsolutePath();
        while (dir != null && !Files.exists(dir.resolve("docs/JSON.md"))) {
            dir = dir.getParent();
        }
        assertTrue(dir != null, "docs/JSON.md not found above " + Path.of("").toAbsolutePath());
        return dir;
    }

    /** What the command writes on System.err (progress bars write there directly) and its run. */
    static String systemErr(Supplier<BadInputTest.Run> run, BadInputTest.Run[] result) {
        PrintStream old = System.err;
        ByteArrayOutputStream buf = new ByteArrayOutputStream();
        System.setErr(new PrintStream(buf, true, StandardCharsets.UTF_8));
        try {
            result[0] = run.get();
        } finally {
            System.setErr(old);
        }
        return buf.toString(StandardCharsets.UTF_8);
    }

    @Test
    void quietSilencesProgress() {
        BadInputTest.Run[] r = new BadInputTest.Run[1];
        // 8 bits, one group per row: every linear of stories260K packs, so no warning is due
        String loud = systemErr(() -> BadInputTest.shrink("gptq", stories(), "--method", "rtn", "--w-bits", "8",
                "--w-group-size", "-1", "--work-dir", tmp.resolve("a").toString()), r);
        assertEquals(0, r[0].code(), r[0].err());
        assertTrue(loud.contains("gptq ["), "progress without -q: " + loud);
        String quiet = systemErr(() -> BadInputTest.shrink("gptq", stories(), "--method", "rtn", "--w-bits", "8",
                "--w-group-size", "-1", "--work-dir", tmp.resolve("b").toString(), "-q"), r);
        assertEquals(0, r[0].code(), r[0].err());
        assertEquals("", quiet + r[0].err(), "nothing on stderr with -q");
        // every command takes -q
        for (String c : List.of("gptq", "awq", "prune", "distill", "eval", "inspect", "generate", "estimate", "compare",
                "synth")) {
            assertTrue(BadInputTest.shrink(c, "--help").out().contains("-q, --quiet"), c);
        }
    }

    @Test
    void lmdeployLiteAutoAwqOptionsAreAccepted() throws IOException {
        Path out = tmp.resolve("awq");
        // as LMDeploy's docs type them; --calib-seqlen beyond max_position_embeddings (512) warns as eval does
        BadInputTest.Run r = BadInputTest.shrink("awq", stories(), "--calib-dataset", text(), "--calib-samples", "2",
                "--calib-seqlen", "600", "--w-bits", "4", "--w-group-size", "32", "--batch-size", "2", "--search-scale",
                "False", "--dtype", "float16", "--work-dir", out.toString(), "-q");
        assertEquals(0, r.code(), r.err());
        assertTrue(r.err().contains("shrink: warning: --calib-seqlen 600 exceeds max_position_embeddings 512"), r.err());
        JsonNode report = JSON.readTree(out.resolve("shrink-report.json").toFile());
        assertEquals(2, report.at("/options/batch").asInt(), "--batch-size is --batch: " + report.get("options"));
        assertEquals(600, report.at("/calibration/seqlen").asInt());
        BadInputTest.Run e = BadInputTest.shrink("eval", stories(), "--dataset", text(), "--seqlen", "600",
                "--max-windows", "1", "-q");
        assertTrue(e.err().contains("shrink: warning: --seqlen 600 exceeds max_position_embeddings 512"), e.err());
        // --search-scale without a value, then another option
        BadInputTest.Run flag = BadInputTest.shrink("awq", stories(), "--search-scale", "--dtype", "auto", "--w-group-size",
                "32", "--calib-dataset", text(), "--calib-samples", "2", "--calib-seqlen", "32", "--work-dir",
                tmp.resolve("awq2").toString(), "-q");
        assertEquals(0, flag.code(), flag.err());
        BadInputTest.Run bf16 = BadInputTest.shrink("awq", stories(), "--dtype", "bfloat16", "--work-dir",
                tmp.resolve("awq3").toString());
        assertOneLine(bf16, "--dtype bfloat16");
        assertTrue(bf16.err().contains("float16"), bf16.err());
        BadInputTest.Run gptq = BadInputTest.shrink("gptq", stories(), "--method", "rtn", "--w-group-size", "32", "--batch-size", "3", "--work-dir",
                tmp.resolve("g").toString(), "-q");
        assertEquals(0, gptq.code(), gptq.err());
        assertFalse(Files.exists(tmp.resolve("awq3")));
    }

    @Test
    void pilevalNamesTheFileToProvide() {
        Path file = SharedData.root().orElseThrow().resolve("datasets/pile-val-backup/val.jsonl");
        assumeFalse(Files.exists(file), "pileval's data is present here");
        BadInputTest.Run r = BadInputTest.shrink("awq", stories(), "--calib-dataset", "pileval", "--work-dir",
                tmp.resolve("p").toString(), "-q");
        assertOneLine(r, file.toString());
        assertTrue(r.err().contains("--calib-dataset FILE") && r.err().contains("val.jsonl.zst"), r.err());
        assertFalse(Files.exists(tmp.resolve("p")));
    }

    @Test
    void gptqAndAwqKeepUnfitLinearsInFloatWithAWarning() throws IOException {
        for (String[] c : new String[][] {
            {"gptq", "--calib-samples", "4", "--calib-seqlen", "64"},
            {"awq", "--calib-samples", "4", "--calib-seqlen", "64"}}) {
            Path out = tmp.resolve(c[0]);
            List<String> a = new ArrayList<>(List.of(c[0], stories(), "--w-group-size", "32", "--calib-dataset",
                    text(), "--work-dir", out.toString(), "-q"));
            a.addAll(Arrays.asList(c).subList(1, c.length));
            BadInputTest.Run r = BadInputTest.shrink(a.toArray(String[]::new));
            assertEquals(0, r.code(), c[0] + ": " + r.err());
            List<String> warnings = r.err().lines().filter(l -> l.startsWith("shrink: warning: ")).toList();
            assertEquals(1, warnings.size(), c[0] + ": one warning line: " + r.err());
            String w = warnings.get(0);
            JsonNode report = JSON.readTree(out.resolve("shrink-report.json").toFile());
            List<String> skipped = new ArrayList<>();
            for (JsonNode l : report.get("layers")) {
                if (l.get("status").asText().equals("skipped")) {
                    skipped.add(l.get("name").asText());
                }
            }
            // stories260K: intermediate 172 is not a multiple of 32, so down_proj cannot be grouped
            for (int layer = 0; layer < 5; layer++) {
                String down = "model.layers." + layer + ".mlp.down_proj";
                assertTrue(skipped.contains(down), c[0] + ": report lists " + down + ": " + skipped);
            }
            for (String name : skipped) {
                assertTrue(name.contains(".mlp."), c[0] + ": only mlp linears are unfit: " + name);
                assertTrue(w.contains(name + ",") || w.contains(name + " ("), c[0] + ": the warning names " + name + ": " + w);
            }
            assertTrue(w.contains(skipped.size() + " linears kept in float"), w);
            String config = Files.readString(out.resolve("config.json"));
            assertTrue(config.contains("model.layers.0.mlp.down_proj"), c[0] + ": config.json excludes it: " + config);
        }
    }
}
