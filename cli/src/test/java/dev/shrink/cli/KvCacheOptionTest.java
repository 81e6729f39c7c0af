package dev.shrink.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.shrink.calib.SharedData;
import dev.shrink.cli.BadInputTest.Run;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;

/** {@code --kv-cache} and LMDeploy's {@code --quant-policy} on eval and generate (docs/KV_CACHE.md). */
class KvCacheOptionTest {

    private static String model() {
        Path p = SharedData.root().map(r -> r.resolve("models/stories260K-hf")).orElse(Path.of("missing"));
        assumeTrue(Files.isDirectory(p), "shared fixtures not found");
        return p.toString();
    }

    private static JsonNode eval(String... kv) throws Exception {
        String[] base = {"eval", "--model", model(), "--dataset", "tinystories", "--seqlen", "128", "--max-windows", "2", "--json"};
        String[] args = java.util.Arrays.copyOf(base, base.length + kv.length);
        System.arraycopy(kv, 0, args, base.length, kv.length);
        Run r = BadInputTest.shrink(args);
        assertEquals(0, r.code(), r.err());
        return new ObjectMapper().readTree(r.out());
    }

    @Test
    void evalThroughAQuantizedCacheAndTheLmdeployAlias() throws Exception {
        JsonNode fp16 = eval();
        JsonNode int4 = eval("--kv-cache", "int4");
        JsonNode policy4 = eval("--quant-policy", "4");
        assertEquals("fp16", fp16.get("kv_cache").asText());
        assertEquals("int4", int4.get("kv_cache").asText());
        assertEquals("int4", policy4.get("kv_cache").asText());
        double ppl16 = fp16.at("/results/0/ppl").asDouble(), ppl4 = int4.at("/results/0/ppl").asDouble();
        assertNotEquals(ppl16, ppl4, "the int4 cache changes the perplexity");
        assertEquals(ppl4, policy4.at("/results/0/ppl").asDouble(), 0.0, "--quant-policy 4 is --kv-cache int4");

        Run gen = BadInputTest.shrink("generate", "--model", model(), "--prompt", "Once upon a time", "--max-new-tokens", "4",
                "--kv-cache", "int8");
        assertEquals(0, gen.code(), gen.err());
        assertTrue(gen.out().startsWith("Once upon a time"), gen.out());
    }

    @Test
    void badValuesAreOneLine() {
        Run r = BadInputTest.shrink("eval", "--model", model(), "--quant-policy", "3");
        assertEquals(2, r.code(), r.err());
        assertEquals("shrink: error: --quant-policy: 3 is not a quant policy (0, 4 = int4, 8 = int8)", r.err().strip());
        r = BadInputTest.shrink("generate", "--model", model(), "--prompt", "x", "--kv-cache", "int8", "--quant-policy", "4");
        assertEquals(2, r.code(), r.err());
        assertTrue(r.err().strip().startsWith("shrink: error: --kv-cache int8 and --quant-policy 4 disagree"), r.err());
        r = BadInputTest.shrink("eval", "--model", model(), "--kv-cache", "fp8");
        assertEquals(2, r.code(), r.err());
        assertTrue(r.err().contains("--kv-cache: unknown KV cache type 'fp8' (fp16, int8, int4)"), r.err());
    }
}
