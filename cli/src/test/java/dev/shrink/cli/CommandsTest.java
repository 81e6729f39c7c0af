package dev.shrink.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.shrink.calib.SharedData;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** inspect, eval --json and generate as a user runs them. */
class CommandsTest {
    @TempDir
    Path tmp;

    static Path model(String name) {
        Path p = SharedData.root().map(s -> s.resolve("models/" + name)).orElse(Path.of("missing"));
        assumeTrue(Files.isDirectory(p), "shared fixtures not found");
        return p;
    }

    @Test
    void inspectListsEveryTensorWithItsFile() throws Exception {
        BadInputTest.Run r = BadInputTest.shrink("inspect", "--model", model("fixture-llama-14m").toString());
        assertEquals(0, r.code(), r.err());
        assertTrue(r.out().contains("LlamaForCausalLM"), r.out());
        assertTrue(r.out().contains("kv heads 2 (GQA)"), r.out());
        assertTrue(r.out().contains("model-00003-of-00003.safetensors"), "names the shard of each tensor");
        BadInputTest.Run j = BadInputTest.shrink("inspect", "--model", model("fixture-llama-14m").toString(), "--json");
        JsonNode doc = new ObjectMapper().readTree(j.out());
        JsonNode index = new ObjectMapper().readTree(model("fixture-llama-14m").resolve("model.safetensors.index.json").toFile());
        assertEquals(index.get("weight_map").size(), doc.get("tensors").size());
        assertEquals(index.at("/metadata/total_size").asLong(), doc.get("bytes").asLong());
    }

    @Test
    void evalJsonCarriesTheProtocol() throws Exception {
        Path out = tmp.resolve("r.json");
        BadInputTest.Run r = BadInputTest.shrink("eval", "--model", model("stories260K-hf").toString(),
                "--dataset", "tinystories,heldout", "--max-windows", "2", "--json", "-o", out.toString(), "-q");
        assertEquals(0, r.code(), r.err());
        JsonNode doc = new ObjectMapper().readTree(r.out());
        assertEquals(2, doc.get("results").size());
        JsonNode t = doc.get("results").get(0);
        assertEquals("tinystories", t.get("dataset").asText());
        assertEquals(512, t.get("seqlen").asInt());
        assertEquals(2, t.get("windows").asInt());
        assertEquals(767, t.get("windows_available").asInt());
        assertEquals(2 * 511, t.get("predictions").asInt());
        assertEquals(393019, t.get("tokens").asInt());
        // its uncertainty: the two windows' mean NLLs, their standard error and the 95% interval around ppl
        assertEquals(2, t.get("window_nll").size());
        double w0 = t.at("/window_nll/0").asDouble(), w1 = t.at("/window_nll/1").asDouble();
        assertEquals(Math.abs(w0 - w1) / 2, t.get("nll_se").asDouble(), 1e-12, "se of two values: |a − b| / 2");
        assertTrue(t.get("ppl_low").asDouble() < t.get("ppl").asDouble() && t.get("ppl").asDouble() < t.get("ppl_high").asDouble());
        // one key convention: snake_case, as report.json
        java.util.List<String> bad = new java.util.ArrayList<>();
        snakeCaseKeys(doc, "", bad);
        assertEquals(java.util.List.of(), bad, r.out());
        assertEquals(doc, new ObjectMapper().readTree(out.toFile()), "-o writes the same document");
    }

    @Test
    void generateGreedyIsTheGoldenContinuation() throws Exception {
        JsonNode g = new ObjectMapper().readTree(SharedData.root().get().resolve("golden/goldens-stories260K.json").toFile()).get("greedy");
        BadInputTest.Run r = BadInputTest.shrink("generate", "--model", model("stories260K-hf").toString(),
                "--prompt", g.get("prompt").asText(), "--max-new-tokens", String.valueOf(g.get("ids").size() - 5), "-q");
        assertEquals(0, r.code(), r.err());
        assertEquals(g.get("text").asText(), r.out().strip());
    }

    @Test
    void helpTeaches() {
        BadInputTest.Run r = BadInputTest.shrink("eval", "--help");
        assertEquals(0, r.code());
        assertTrue(r.out().contains("--max-windows") && r.out().contains("Examples"), r.out());
    }

    static void snakeCaseKeys(JsonNode n, String path, java.util.List<String> bad) {
        if (n.isObject()) {
            n.fieldNames().forEachRemaining(k -> {
                if (!k.matches("[a-z][a-z0-9]*(_[a-z0-9]+)*")) {
                    bad.add(path + "/" + k);
                }
                snakeCaseKeys(n.get(k), path + "/" + k, bad);
            });
        } else if (n.isArray()) {
            for (int i = 0; i < n.size(); i++) {
                snakeCaseKeys(n.get(i), path + "/" + i, bad);
            }
        }
    }
}
