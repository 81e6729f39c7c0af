package dev.shrink.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.fasterxml.jackson.dataformat.yaml.YAMLMapper;
import dev.shrink.calib.SharedData;
import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.math.BigInteger;
import java.net.URISyntaxException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.TreeMap;
import java.util.function.Consumer;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Seeded fuzzing of every parser a user's files reach: config.json, the safetensors header, the
 * shard index, tokenizer.json and compare recipes. Valid inputs (the tiny stories260K model and a
 * recipe using every stage) are mutated — bit flips, truncation, byte insertion, JSON/YAML values
 * swapped for other types, huge numbers, deep nesting, duplicated keys — and fed to the CLI's
 * entry point ({@link Main#run}) through the cheapest command that parses each input: {@code
 * inspect} (config, safetensors, index), {@code generate} of one token (tokenizer) and {@code
 * compare --check} (recipes). Every run must end in exit 0, or exit 2 with one line "shrink:
 * error: ..." and no stack trace; none may write anything.
 *
 * <p>The seed is fixed (printed; {@code SHRINK_FUZZ_SEED=N} in the environment explores others). A failing input is
 * saved under {@code target/fuzz-failures/}; once fixed, add it to {@code
 * src/test/resources/fuzz-corpus/<target>/} (README there), where {@link #corpusInputsAreRefused}
 * replays it on every build.
 */
class ParserFuzzTest {
    static final long SEED = Long.getLong("shrink.fuzz.seed",
            System.getenv("SHRINK_FUZZ_SEED") != null ? Long.parseLong(System.getenv("SHRINK_FUZZ_SEED")) : 20_15L);

    /** The parsers under test: which file a mutated input replaces, and how many cases each gets. */
    enum Target {
        CONFIG("config.json", 80), SAFETENSORS("model.safetensors", 70), INDEX("model.safetensors.index.json", 40),
        TOKENIZER("tokenizer.json", 40), RECIPE("recipe.yaml", 90);

        final String file;
        final int cases;

        Target(String file, int cases) {
            this.file = file;
            this.cases = cases;
        }
    }

    static final String RECIPE = """
            model: model
            calibration: {dataset: c4, samples: 16, seqlen: 512, seed: 0}
            evaluation:
              datasets: [heldout, wikitext2]
              seqlen: 512
              max_windows: 20
              kl: {dataset: heldout, windows: 4}
              prompts: ["Once upon a time"]
              max_new_tokens: 24
              speed: {prefill_tokens: 128, decode_tokens: 32, repeats: 3}
              threads: 2
            baseline: true
            pipelines:
              - {name: rtn-w4, stages: [{gptq: {method: rtn, bits: 4, group_size: 128}}]}
              - {name: awq-w4, stages: [{awq: {group_size: 64, export: gemm, calibration: {seqlen: 256}}}]}
              - name: prune24-gptq-w4
                stages: [{prune: {method: wanda, pattern: "2:4", targets: ["re:.*mlp.*"]}}, {gptq: {bits: 4, damp: 0.01, act_order: true}}]
              - name: distilled
                stages: [{prune: {method: magnitude, sparsity: 0.5, scope: layer}}, {distill: {steps: 10, lr: 0.0003, alpha: 0.5}}]
            """;

    static final ObjectMapper JSON = new ObjectMapper();
    static final YAMLMapper YAML = new YAMLMapper();

    @TempDir
    Path tmp;

    Path source;
    int caseNo;

    @BeforeEach
    void fixture() {
        source = SharedData.root().map(p -> p.resolve("models/stories260K-hf")).orElse(Path.of("missing"));
        assumeTrue(Files.isDirectory(source), "shared fixtures not found");
    }

    record Outcome(int code, String err) {
    }

    // ---- running one input -------------------------------------------------------------------------

    /** A fresh model folder (config and tokenizer copied, weights linked) with {@code t}'s file replaced by {@code input}. */
    Path caseDir(Target t, byte[] input) throws IOException {
        Path dir = tmp.resolve("case-" + (caseNo++));
        Path model = dir.resolve("model");
        Files.createDirectories(model);
        for (String f : new String[] {"config.json", "tokenizer.json"}) {
            Files.copy(source.resolve(f), model.resolve(f));
        }
        if (t != Target.SAFETENSORS) {
            Files.createSymbolicLink(model.resolve("model.safetensors"), weights());
        }
        Files.write(t == Target.RECIPE ? dir.resolve(t.file) : model.resolve(t.file), input);
        return dir;
    }

    /** One copy of the weights inside the temp dir, linked from every case (JUnit warns about links leaving it). */
    Path weights() throws IOException {
        Path w = tmp.resolve("weights.safetensors");
        if (!Files.exists(w)) {
            Files.copy(source.resolve("model.safetensors"), w);
        }
        return w;
    }

    String[] args(Target t, Path dir) {
        Path model = dir.resolve("model");
        return switch (t) {
            case CONFIG, SAFETENSORS, INDEX -> new String[] {"inspect", "--model", model.toString()};
            case TOKENIZER -> new String[] {"generate", "--model", model.toString(), "--prompt", "Once upon a time",
                "--max-new-tokens", "1", "-q", "--threads", "1"};
            case RECIPE -> new String[] {"compare", dir.resolve(t.file).toString(), "--check"};
        };
    }

    /** Runs the CLI on one input; returns null when the outcome is acceptable, else why not. */
    String check(Target t, byte[] input, Consumer<Outcome> more) throws IOException {
        Path dir = caseDir(t, input);
        Map<String, Long> before = listing(dir);
        StringWriter out = new StringWriter(), err = new StringWriter();
        int code;
        try {
            code = Main.run(args(t, dir), new PrintWriter(out, true), new PrintWriter(err, true));
        } catch (Throwable e) {
            return "an exception escaped Main.run: " + e;
        }
        String e = err.toString().strip();
        if (code == 2) {
            if (e.contains("\n") || !e.startsWith("shrink: error: ") || e.contains("\tat ")) {
                return "exit 2 without exactly one 'shrink: error:' line: " + e;
            }
        } else if (code != 0) {
            return "exit " + code + ": " + firstLines(e);
        }
        if (!listing(dir).equals(before)) {
            return "exit " + code + " but the folder changed: " + before.keySet() + " -> " + listing(dir).keySet();
        }
        more.accept(new Outcome(code, e));
        return null;
    }

    static String firstLines(String s) {
        String[] l = s.split("\n");
        return String.join(" | ", Arrays.copyOf(l, Math.min(4, l.length)));
    }

    static Map<String, Long> listing(Path dir) throws IOException {
        Map<String, Long> m = new TreeMap<>();
        try (Stream<Path> s = Files.walk(dir)) {
            for (Path p : s.toList()) {
                m.put(dir.relativize(p).toString(), Files.isRegularFile(p) ? Files.size(p) : -1L);
            }
        }
        return m;
    }

    // ---- the fuzz run ------------------------------------------------------------------------------

    @Test
    void mutatedInputsEndInOneLineOrSuccess() throws IOException {
        System.out.println("ParserFuzzTest: seed " + SEED + " (SHRINK_FUZZ_SEED=N for another run)");
        Random rnd = new Random(SEED);
        List<String> failures = new ArrayList<>();
        Map<Target, int[]> codes = new TreeMap<>();
        for (Target t : Target.values()) {
            byte[] base = base(t);
            int[] tally = codes.computeIfAbsent(t, k -> new int[3]);
            assertEquals(null, check(t, base, o -> assertEquals(0, o.code())), "the unmutated " + t.file + " is accepted");
            for (int i = 0; i < t.cases; i++) {
                Mutation m = mutate(t, base, rnd);
                String why = check(t, m.bytes, o -> tally[o.code]++);
                if (why != null) {
                    Path saved = save(t, i, m.bytes);
                    failures.add(t.file + " case " + i + " (" + m.how + ", saved as " + saved + "): " + why);
                }
            }
        }
        codes.forEach((t, c) -> System.out.printf("ParserFuzzTest: %-28s %3d refused, %3d accepted%n", t.file, c[2], c[0]));
        assertTrue(failures.isEmpty(), () -> failures.size() + " fuzz failures (seed " + SEED + "):\n"
                + String.join("\n", failures));
        // the mutations must reach the parsers' checks, not just be accepted
        codes.forEach((t, c) -> assertTrue(c[2] >= t.cases / 3, t.file + ": only " + c[2] + " of " + t.cases + " refused"));
    }

    Path save(Target t, int i, byte[] bytes) throws IOException {
        Path dir = Path.of("target", "fuzz-failures", t.name().toLowerCase());
        Files.createDirectories(dir);
        return Files.write(dir.resolve("seed" + SEED + "-case" + i + "-" + t.file), bytes);
    }

    byte[] base(Target t) throws IOException {
        return switch (t) {
            case RECIPE -> RECIPE.getBytes(StandardCharsets.UTF_8);
            case INDEX -> index();
            default -> Files.readAllBytes(source.resolve(t.file));
        };
    }

    /** A valid shard index for the single file: every tensor in model.safetensors. */
    byte[] index() throws IOException {
        byte[] st = Files.readAllBytes(source.resolve("model.safetensors"));
        long len = ByteBuffer.wrap(st, 0, 8).order(ByteOrder.LITTLE_ENDIAN).getLong();
        JsonNode header = JSON.readTree(new String(st, 8, (int) len, StandardCharsets.UTF_8));
        ObjectNode root = JSON.createObjectNode();
        root.putObject("metadata").put("total_size", st.length - 8 - len);
        ObjectNode wm = root.putObject("weight_map");
        header.fieldNames().forEachRemaining(n -> {
            if (!n.equals("__metadata__")) {
                wm.put(n, "model.safetensors");
            }
        });
        return JSON.writerWithDefaultPrettyPrinter().writeValueAsBytes(root);
    }

    // ---- mutations ---------------------------------------------------------------------------------

    record Mutation(String how, byte[] bytes) {
    }

    static final String[] INTERESTING = {"{", "}", "[", "]", "\"", ",", ":", "0", "-", "\\", "\n", "&", "*", "---\n", "\u0000",
        "\uFEFF", "é", "1e999"};

    Mutation mutate(Target t, byte[] base, Random rnd) throws IOException {
        if (t == Target.SAFETENSORS) {
            return mutateSafetensors(base, rnd);
        }
        return mutateText(t == Target.RECIPE, base, rnd);
    }

    /** One of the mutations, on a JSON (or YAML) text. */
    Mutation mutateText(boolean yaml, byte[] base, Random rnd) throws IOException {
        String text = new String(base, StandardCharsets.UTF_8);
        return switch (rnd.nextInt(7)) {
            case 0 -> new Mutation("bit flips", bitFlips(base, 0, base.length, rnd));
            case 1 -> {
                int at = rnd.nextInt(base.length);
                yield new Mutation("truncated at " + at, Arrays.copyOf(base, at));
            }
            case 2 -> {
                int at = rnd.nextInt(base.length + 1);
                String ins = INTERESTING[rnd.nextInt(INTERESTING.length)];
                yield new Mutation("inserted " + JSON.writeValueAsString(ins) + " at " + at, splice(base, at,
                        ins.getBytes(StandardCharsets.UTF_8)));
            }
            case 3 -> hugeNumber(text, rnd);
            case 4 -> duplicateKey(yaml, text, rnd);
            default -> swapValue(yaml, text, rnd, rnd.nextInt(4) == 0);
        };
    }

    static byte[] bitFlips(byte[] base, int from, int to, Random rnd) {
        byte[] b = base.clone();
        for (int k = 1 + rnd.nextInt(3); k > 0; k--) {
            int at = from + rnd.nextInt(to - from);
            b[at] ^= (byte) (1 << rnd.nextInt(8));
        }
        return b;
    }

    static byte[] splice(byte[] base, int at, byte[] ins) {
        byte[] b = new byte[base.length + ins.length];
        System.arraycopy(base, 0, b, 0, at);
        System.arraycopy(ins, 0, b, at, ins.length);
        System.arraycopy(base, at, b, at + ins.length, base.length - at);
        return b;
    }

    static final String[] HUGE = {"4294967304", "2147483648", "99999999999999999999999", "-1", "0", "-0", "1e999", "1e-999",
        "9223372036854775808", "1.5", "-2147483649"};

    /** A number of the text replaced by a huge, negative, zero or fractional one. */
    static Mutation hugeNumber(String text, Random rnd) {
        Matcher m = Pattern.compile("(?<![\\w.])\\d+(\\.\\d+)?([eE][-+]?\\d+)?(?![\\w.])").matcher(text);
        List<int[]> spans = new ArrayList<>();
        while (m.find()) {
            spans.add(new int[] {m.start(), m.end()});
        }
        int[] s = spans.get(rnd.nextInt(spans.size()));
        String h = HUGE[rnd.nextInt(HUGE.length)];
        return new Mutation("number at " + s[0] + " -> " + h,
                (text.substring(0, s[0]) + h + text.substring(s[1])).getBytes(StandardCharsets.UTF_8));
    }

    /** A key of some object written a second time (text-level, so the parser sees both). */
    static Mutation duplicateKey(boolean yaml, String text, Random rnd) {
        if (yaml) {
            // a second top-level key of the same name
            String[] keys = {"model", "baseline", "pipelines", "evaluation"};
            String k = keys[rnd.nextInt(keys.length)];
            return new Mutation("duplicate top-level key " + k, (text + k + ": x\n").getBytes(StandardCharsets.UTF_8));
        }
        Matcher m = Pattern.compile("\"([^\"\\\\]{1,40})\"\\s*:").matcher(text);
        List<int[]> spans = new ArrayList<>();
        while (m.find()) {
            spans.add(new int[] {m.start(), m.end()});
        }
        int[] s = spans.get(rnd.nextInt(spans.size()));
        String key = text.substring(s[0], s[1]);
        String dup = key + " 0, ";
        return new Mutation("duplicate key " + key, (text.substring(0, s[0]) + dup + text.substring(s[0]))
                .getBytes(StandardCharsets.UTF_8));
    }

    /** Some value of the tree replaced by one of another type, a huge number or deep nesting. */
    static Mutation swapValue(boolean yaml, String text, Random rnd, boolean deep) throws IOException {
        JsonNode root = (yaml ? YAML : JSON).readTree(text);
        List<Object[]> slots = new ArrayList<>(); // {parent, key or index}
        collect(root, slots);
        Object[] slot = slots.get(rnd.nextInt(slots.size()));
        // deep nesting goes in as text: Jackson's writer refuses to write more than 1000 levels
        JsonNode value = deep ? JsonNodeFactory.instance.textNode(DEEP) : replacement(rnd);
        if (slot[0] instanceof ObjectNode o) {
            o.set((String) slot[1], value);
        } else {
            ((ArrayNode) slot[0]).set((Integer) slot[1], value);
        }
        int depth = rnd.nextBoolean() ? 40 : 1500;
        String how = (deep ? depth + " nested arrays" : "value " + value) + " at " + slot[1];
        String out = (yaml ? YAML : JSON).writeValueAsString(root);
        if (deep) {
            String nested = "[".repeat(depth) + "]".repeat(depth);
            out = out.replace("\"" + DEEP + "\"", nested).replace(DEEP, nested);
        }
        return new Mutation(how.length() > 100 ? how.substring(0, 100) : how, out.getBytes(StandardCharsets.UTF_8));
    }

    static void collect(JsonNode n, List<Object[]> slots) {
        if (n instanceof ObjectNode o) {
            o.fieldNames().forEachRemaining(k -> {
                slots.add(new Object[] {o, k});
                collect(o.get(k), slots);
            });
        } else if (n instanceof ArrayNode a) {
            // long arrays (the tokenizer's merges) would drown the rest: sample their first items only
            for (int i = 0; i < Math.min(a.size(), 8); i++) {
                slots.add(new Object[] {a, i});
                collect(a.get(i), slots);
            }
        }
    }

    static JsonNode replacement(Random rnd) {
        JsonNodeFactory f = JsonNodeFactory.instance;
        return switch (rnd.nextInt(12)) {
            case 0 -> f.textNode("abc");
            case 1 -> f.textNode("");
            case 2 -> f.numberNode(4294967304L);
            case 3 -> f.numberNode(new BigInteger("123456789012345678901234567890"));
            case 4 -> f.numberNode(-1);
            case 5 -> f.numberNode(0);
            case 6 -> f.numberNode(2.5);
            case 7 -> f.booleanNode(true);
            case 8 -> f.nullNode();
            case 9 -> f.arrayNode();
            case 10 -> f.objectNode();
            default -> f.numberNode(Double.MAX_VALUE);
        };
    }

    static final String DEEP = "__deeply_nested__";

    /** Header-level mutations of a safetensors file (JSON mutations keep the length right), or raw damage. */
    Mutation mutateSafetensors(byte[] base, Random rnd) throws IOException {
        int len = (int) ByteBuffer.wrap(base, 0, 8).order(ByteOrder.LITTLE_ENDIAN).getLong();
        byte[] header = Arrays.copyOfRange(base, 8, 8 + len);
        byte[] data = Arrays.copyOfRange(base, 8 + len, base.length);
        switch (rnd.nextInt(4)) {
            case 0 -> {
                return new Mutation("bit flips in the first 8 + header bytes", bitFlips(base, 0, 8 + len, rnd));
            }
            case 1 -> {
                int at = rnd.nextInt(base.length);
                return new Mutation("truncated at " + at, Arrays.copyOf(base, at));
            }
            default -> {
                Mutation m = mutateText(false, header, rnd);
                byte[] h = m.bytes;
                ByteBuffer b = ByteBuffer.allocate(8 + h.length + data.length).order(ByteOrder.LITTLE_ENDIAN);
                b.putLong(h.length).put(h).put(data);
                return new Mutation("header " + m.how, b.array());
            }
        }
    }

    // ---- the regression corpus ---------------------------------------------------------------------

    /** Every file of src/test/resources/fuzz-corpus/TARGET/ (TARGET: a {@link Target} name, lower case). */
    static Stream<Path> corpus() throws IOException, URISyntaxException {
        Path root = Path.of(ParserFuzzTest.class.getResource("/fuzz-corpus").toURI());
        List<Path> files = new ArrayList<>();
        for (Target t : Target.values()) {
            Path d = root.resolve(t.name().toLowerCase());
            if (Files.isDirectory(d)) {
                try (Stream<Path> s = Files.list(d)) {
                    files.addAll(s.sorted().toList());
                }
            }
        }
        return files.stream();
    }

    /** Inputs that once crashed or were silently misread: each is now refused with one line. */
    @ParameterizedTest(name = "{0}")
    @MethodSource("corpus")
    void corpusInputsAreRefused(Path input) throws IOException {
        Target t = Target.valueOf(input.getParent().getFileName().toString().toUpperCase());
        String why = check(t, Files.readAllBytes(input), o -> assertEquals(2, o.code(), input + " is refused"));
        assertEquals(null, why, input.toString());
    }
}
