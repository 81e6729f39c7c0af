package dev.shrink.eval;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import dev.shrink.calib.EvalText;
import dev.shrink.core.forward.Taps;
import dev.shrink.core.ops.Backends;
import dev.shrink.core.ops.Ops;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * Reproduces shared/golden (PyTorch, float32) with the fast CPU backend: token ids, logits,
 * perplexity and greedy continuations, for both fixture models.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class GoldenModelTest {
    private static final Map<String, String> GOLDEN = Map.of(
            "fixture-llama-14m", "fixture-llama-14m", "stories260K-hf", "stories260K");
    private final Map<String, LoadedModel> models = new ConcurrentHashMap<>();
    private final Map<String, int[]> streams = new ConcurrentHashMap<>();
    private final Ops ops = Backends.select("cpu", 0);

    private LoadedModel model(String name) {
        return models.computeIfAbsent(name, n -> LoadedModel.open(Golden.model(n), ops));
    }

    private int[] stream(String model, String dataset) {
        return streams.computeIfAbsent(model + "/" + dataset,
                k -> model(model).tokenStream(EvalText.load(dataset).text()));
    }

    @AfterAll
    void close() {
        models.values().forEach(LoadedModel::close);
    }

    @ParameterizedTest(name = "{0} {1}: token count and first ids")
    @CsvSource({
        "fixture-llama-14m, wikitext2", "fixture-llama-14m, ptb", "fixture-llama-14m, tinystories", "fixture-llama-14m, heldout",
        "stories260K-hf, wikitext2", "stories260K-hf, ptb", "stories260K-hf, tinystories", "stories260K-hf, heldout"})
    void tokenIdsMatchGolden(String model, String dataset) {
        JsonNode g = Golden.numbers(GOLDEN.get(model));
        int[] ids = stream(model, dataset);
        assertEquals(g.at("/tokens/" + dataset).asLong(), ids.length, "token count with BOS");
        JsonNode first = g.at("/first_ids/" + dataset);
        int[] expected = new int[first.size()];
        for (int i = 0; i < expected.length; i++) {
            expected[i] = first.get(i).asInt();
        }
        assertArrayEquals(expected, Arrays.copyOf(ids, expected.length));
        assertEquals(g.at("/windows/" + dataset).asInt(), ids.length / g.get("seqlen").asInt(), "windows");
    }

    @ParameterizedTest(name = "{0}: logits of the first 64 wikitext2 tokens")
    @CsvSource({"fixture-llama-14m", "stories260K-hf"})
    void logitsMatchGolden(String model) {
        JsonNode g = Golden.numbers(GOLDEN.get(model)).get("logits_wikitext2_first64");
        LoadedModel m = model(model);
        int[] ids = Arrays.copyOf(stream(model, "wikitext2"), 64);
        float[] hidden = m.lm().hidden(ids, 1, 64, null, Taps.NONE);
        float[] logits = m.lm().logits(hidden, 0, 64); // [64, V]
        int V = m.lm().config().vocab();
        for (int i = 0; i < 8; i++) {
            assertEquals(g.get("pos0_first8").get(i).asDouble(), logits[i], 2e-3, "pos 0 logit " + i);
            assertEquals(g.get("pos63_first8").get(i).asDouble(), logits[63 * V + i], 2e-3, "pos 63 logit " + i);
        }
        assertEquals(g.get("pos63_argmax").asInt(), Generator.argmax(Arrays.copyOfRange(logits, 63 * V, 64 * V), V));
    }

    @ParameterizedTest(name = "{0} {1}: perplexity of the first 8 windows")
    @CsvSource({
        "fixture-llama-14m, wikitext2", "fixture-llama-14m, ptb", "fixture-llama-14m, tinystories", "fixture-llama-14m, heldout",
        "stories260K-hf, wikitext2", "stories260K-hf, ptb", "stories260K-hf, tinystories", "stories260K-hf, heldout"})
    void firstEightWindowsMatchGolden(String model, String dataset) {
        JsonNode g = Golden.numbers(GOLDEN.get(model));
        PplResult r = Perplexity.evaluate(model(model).lm(), dataset, stream(model, dataset), 512, 8, true);
        assertEquals(8, r.windows());
        assertEquals(8 * 511, r.predictions());
        double ref = g.at("/ppl_first8/" + dataset).asDouble();
        assertTrue(Golden.relErr(r.ppl(), ref) < 1e-4, () -> "ppl " + r.ppl() + " vs golden " + ref);
    }

    /** stories260K-hf is small enough to evaluate every window of all four sets in the suite. */
    @ParameterizedTest(name = "stories260K-hf {0}: full-set perplexity")
    @CsvSource({"wikitext2", "ptb", "tinystories", "heldout"})
    void storiesFullSetsMatchGolden(String dataset) {
        JsonNode g = Golden.numbers("stories260K");
        PplResult r = Perplexity.evaluate(model("stories260K-hf").lm(), dataset, stream("stories260K-hf", dataset), 512, 0, true);
        assertEquals(g.at("/windows/" + dataset).asInt(), r.windows());
        double ref = g.at("/ppl/fp/" + dataset).asDouble();
        assertTrue(Golden.relErr(r.ppl(), ref) < 1e-4, () -> "ppl " + r.ppl() + " vs golden " + ref);
    }

    @ParameterizedTest(name = "{0}: greedy continuation token for token")
    @CsvSource({"fixture-llama-14m", "stories260K-hf"})
    void greedyMatchesGolden(String model) {
        JsonNode g = Golden.numbers(GOLDEN.get(model)).get("greedy");
        LoadedModel m = model(model);
        int[] expected = new int[g.get("ids").size()];
        for (int i = 0; i < expected.length; i++) {
            expected[i] = g.get("ids").get(i).asInt();
        }
        int[] prompt = m.tokenStream(g.get("prompt").asText());
        assertArrayEquals(Arrays.copyOf(expected, prompt.length), prompt, "prompt ids");
        int[] out = Generator.generate(m.lm(), prompt, expected.length - prompt.length, 0, 0, List.of(), id -> { });
        assertArrayEquals(expected, out);
        assertEquals(g.get("text").asText(), m.tokenizer().decode(out, true));
    }

    /** The KV-cache decode path gives the same logits as one full forward over the same tokens. */
    @Test
    void cachedDecodeEqualsFullForward() {
        LoadedModel m = model("fixture-llama-14m");
        int[] ids = Arrays.copyOf(stream("fixture-llama-14m", "heldout"), 24);
        int V = m.lm().config().vocab();
        float[] full = m.lm().logits(m.lm().hidden(ids, 1, 24, null, Taps.NONE), 0, 24);
        var cache = m.lm().newCache(24);
        var caches = new dev.shrink.core.forward.KvCache[] {cache};
        float[] prefill = m.lm().logits(m.lm().hidden(Arrays.copyOf(ids, 16), 1, 16, caches, Taps.NONE), 0, 16);
        for (int i = 0; i < 16 * V; i++) {
            assertEquals(full[i], prefill[i], 1e-3);
        }
        for (int t = 16; t < 24; t++) {
            float[] step = m.lm().logits(m.lm().hidden(new int[] {ids[t]}, 1, 1, caches, Taps.NONE), 0, 1);
            for (int j = 0; j < V; j++) {
                assertEquals(full[t * V + j], step[j], 1e-3, "position " + t + " logit " + j);
            }
        }
        assertEquals(24, cache.length());
    }

    /** Batching sequences gives each sequence the logits it gets alone. */
    @Test
    void batchedSequencesAreIndependent() {
        LoadedModel m = model("stories260K-hf");
        int[] s = stream("stories260K-hf", "tinystories");
        int T = 32;
        int[] a = Arrays.copyOfRange(s, 0, T), b = Arrays.copyOfRange(s, 100, 100 + T);
        int[] both = new int[2 * T];
        System.arraycopy(a, 0, both, 0, T);
        System.arraycopy(b, 0, both, T, T);
        float[] hb = m.lm().hidden(both, 2, T, null, Taps.NONE);
        float[] ha = m.lm().hidden(a, 1, T, null, Taps.NONE);
        float[] hbb = m.lm().hidden(b, 1, T, null, Taps.NONE);
        int C = m.lm().config().hidden();
        for (int i = 0; i < T * C; i++) {
            assertEquals(ha[i], hb[i], 1e-4);
            assertEquals(hbb[i], hb[T * C + i], 1e-4);
        }
    }
}
