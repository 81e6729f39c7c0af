package dev.shrink.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.shrink.calib.SharedData;
import dev.shrink.cli.BadInputTest.Run;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;

/** {@code shrink estimate} from the command line: the table, --json, and one-line errors. */
class EstimateCommandTest {

    private static Path fixture() {
        Path p = SharedData.root().map(r -> r.resolve("models/fixture-llama-14m")).orElse(Path.of("missing"));
        assumeTrue(Files.isDirectory(p), "shared fixtures not found");
        return p;
    }

    @Test
    void seedsExampleTableAndJson() throws Exception {
        String[] args = {"estimate", "--layers", "48", "--hidden", "6144", "--params", "20e9", "--batch", "16",
            "--prompt-tokens", "512", "--new-tokens", "32", "--kv-dtype", "fp16", "--gpu", "a100-80g"};
        Run r = BadInputTest.shrink(args);
        assertEquals(0, r.code(), r.err());
        assertTrue(r.out().contains("KV cache         10,267,656,192     10.268      9.563"), r.out());
        assertTrue(r.out().contains("2 × layers 48 × hidden 6144 (multi-head: kv_heads × head_dim = hidden) × 2 B = 1,179,648 B/token"),
                r.out());
        assertTrue(r.out().contains("fits: total"), r.out());
        assertTrue(r.out().contains("decode floor"), r.out());

        String[] jsonArgs = java.util.Arrays.copyOf(args, args.length + 1);
        jsonArgs[args.length] = "--json";
        Run j = BadInputTest.shrink(jsonArgs);
        assertEquals(0, j.code(), j.err());
        JsonNode doc = new ObjectMapper().readTree(j.out());
        assertEquals(2L * 48 * 6144 * 2 * 16 * 544, doc.at("/kv_cache/bytes").asLong());
        assertEquals(40_000_000_000L, doc.at("/weights/bytes").asLong());
        assertEquals("a100-80g", doc.at("/gpu/id").asText());
        assertEquals(2.039e12, doc.at("/gpu/bandwidth").asDouble());
        assertTrue(doc.at("/fits").asBoolean());
        double step = (40e9 + 2.0 * 48 * 6144 * 2 * 16 * 544) / 2.039e12;
        assertEquals(16 / step, doc.at("/decode/tokens_per_second").asDouble(), 1e-6);
    }

    /** The seeds' command as the issue types it, with an int8 cache: half the fp16 bytes plus the scales. */
    @Test
    void seedsExampleWithAnInt8Cache() {
        Run r = BadInputTest.shrink("estimate", "--layers", "48", "--hidden", "6144", "--batch", "16", "--prompt-tokens", "512",
                "--new-tokens", "32", "--gpu", "h100", "--kv-dtype", "int8");
        assertEquals(0, r.code(), r.err());
        assertTrue(r.out().contains("KV cache          5,294,260,224"), r.out()); // 10,267,656,192 / 2 + 160,432,128
        assertTrue(r.out().contains("(18,432 B of it scales and zeros)"), r.out());
    }

    /** A folder at batch 1, as the lead compares it with eval --speed: prefill and decode tokens/s in the JSON. */
    @Test
    void folderJsonHasLatenciesAndLargestBatches() throws Exception {
        Run j = BadInputTest.shrink("estimate", fixture().toString(), "--batch", "1", "--prompt-tokens", "128",
                "--new-tokens", "32", "--gpu", "h100", "--json");
        assertEquals(0, j.code(), j.err());
        JsonNode doc = new ObjectMapper().readTree(j.out());
        JsonNode c = doc.get("compute");
        double step = c.get("decode_seconds_per_step").asDouble();
        assertTrue(step > 0, j.out());
        assertEquals(1 / step, c.get("decode_tokens_per_second_per_sequence").asDouble(), 1e-6 / step);
        assertEquals(128 / c.get("prefill_seconds").asDouble(), c.get("prefill_tokens_per_second").asDouble(), 1e-3);
        assertEquals(989.4e12, doc.at("/gpu/tensor_flops").asDouble());
        assertEquals(6, doc.get("max_batch").size());
        assertEquals("int4", doc.at("/max_batch/5/kv_dtype").asText());
        Run help = BadInputTest.shrink("estimate", "--help");
        assertTrue(help.out().contains("largest batch    floor((GPU memory - weights)"), help.out());
    }

    /** The seeds' command as typed, without a way to size the weights: the KV cache still, the rest marked unknown. */
    @Test
    void withoutWeightDimsTheKvCacheIsStillEstimated() throws Exception {
        Run r = BadInputTest.shrink("estimate", "--layers", "48", "--hidden", "6144", "--batch", "16",
                "--prompt-tokens", "512", "--new-tokens", "32", "--gpu", "h100");
        assertEquals(0, r.code(), r.err());
        assertTrue(r.out().contains("KV cache         10,267,656,192     10.268      9.563"), r.out());
        assertTrue(r.out().contains("weights                 unknown"), r.out());
        assertTrue(r.out().contains("fit and decode floor: unknown without the weights"), r.out());
        Run j = BadInputTest.shrink("estimate", "--layers", "48", "--hidden", "6144", "--json");
        JsonNode doc = new ObjectMapper().readTree(j.out());
        assertTrue(doc.get("weights").isNull() && doc.get("total_bytes").isNull(), j.out());
    }

    @Test
    void folderAndItsConfigJson() throws Exception {
        Path fx = fixture();
        Run folder = BadInputTest.shrink("estimate", fx.toString(), "--gpu", "l4", "--json");
        assertEquals(0, folder.code(), folder.err());
        JsonNode f = new ObjectMapper().readTree(folder.out());
        assertEquals(26_945_280L, f.at("/weights/bytes").asLong()); // 13,472,640 bf16 parameters
        assertEquals(2, f.at("/dims/kv_heads").asInt());
        // the config alone at bf16 (its torch_dtype) gives the same bytes: the fixture has no biases and tied embeddings
        Run cfg = BadInputTest.shrink("estimate", fx.resolve("config.json").toString(), "--json");
        assertEquals(0, cfg.code(), cfg.err());
        assertEquals(26_945_280L, new ObjectMapper().readTree(cfg.out()).at("/weights/bytes").asLong());
        Run text = BadInputTest.shrink("estimate", fx.toString());
        assertTrue(text.out().contains("heads 6, kv heads 2 (GQA), head dim 64"), text.out());
        assertTrue(text.out().contains("give --gpu NAME"), text.out());
    }

    private static void assertOneLine(Run r, String... parts) {
        assertEquals(2, r.code(), () -> "exit code; stderr: " + r.err());
        String[] lines = r.err().strip().split("\n");
        assertEquals(1, lines.length, r.err());
        for (String p : parts) {
            assertTrue(lines[0].contains(p), () -> "'" + p + "' in: " + lines[0]);
        }
    }

    @Test
    void badInputsAreOneLine() {
        assertOneLine(BadInputTest.shrink("estimate", "--layers", "48", "--hidden", "6144", "--params", "20e9", "--gpu", "b300"),
                "shrink: error: --gpu: unknown GPU 'b300' (known: h100,", "rtx4090", "a100-40g");
        assertOneLine(BadInputTest.shrink("estimate", "--layers", "48"), "at least --layers and --hidden (missing --hidden)");
        assertOneLine(BadInputTest.shrink("estimate", "--layers", "48", "--hidden", "6144", "--w-bits", "4"),
                "cannot be sized without the intermediate size; give --params N, or --intermediate and --vocab");
        assertOneLine(BadInputTest.shrink("estimate", "--layers", "4", "--hidden", "64", "--kv-heads", "2", "--params", "1e6"),
                "--kv-heads needs --heads");
        assertOneLine(BadInputTest.shrink("estimate", "--layers", "4", "--hidden", "64", "--params", "1e6", "--kv-dtype", "fp4"),
                "--kv-dtype: unknown type 'fp4'");
        assertOneLine(BadInputTest.shrink("estimate", "/no/such/model"), "/no/such/model: no such model folder or config.json");
        Path fx = fixture();
        assertOneLine(BadInputTest.shrink("estimate", fx.toString(), "--layers", "4"), "not both");
        assertOneLine(BadInputTest.shrink("estimate", fx.toString(), "--w-bits", "4"), "a model folder is estimated at the size of its weights");
    }
}
