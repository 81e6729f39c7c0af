package dev.shrink.core.sparse;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.shrink.core.ShrinkException;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** The sparsity patterns and the config.json record: parsing, JSON round trip, refusals. */
class SparsityRecordTest {
    private static final ObjectMapper JSON = new ObjectMapper();

    @Test
    void patternsParseAndDescribeThemselves() {
        SparsityPattern.NofM p = SparsityPattern.parse("2:4");
        assertEquals(new SparsityPattern.NofM(2, 4), p);
        assertEquals("2:4", p.label());
        assertEquals(0.5, p.ratio());
        assertEquals(2, p.prunedPerGroup());
        assertEquals(new SparsityPattern.NofM(4, 8), SparsityPattern.parse(" 4 : 8 "));
        assertEquals(0.25, SparsityPattern.parse("3:4").ratio());
        assertNull(p.unfitReason(384));
        assertEquals("in-features 172 not divisible by 8", new SparsityPattern.NofM(4, 8).unfitReason(172));
        assertNull(new SparsityPattern.NofM(4, 8).unfitReason(1152));

        SparsityPattern u = new SparsityPattern.Unstructured(0.3);
        assertEquals("unstructured", u.label());
        assertEquals(0.3, u.ratio());
        assertNull(u.unfitReason(172));
        assertEquals(0.0, new SparsityPattern.Unstructured(0).ratio());
    }

    @Test
    void badPatternsAreRefused() {
        for (String bad : new String[] {"", "2", "2:", "a:b", "2-4", "4:2", "2:2", "0:4", "-1:4", "2:4:8", "1.5:4"}) {
            ShrinkException e = assertThrows(ShrinkException.class, () -> SparsityPattern.parse(bad), bad);
            assertTrue(e.getMessage().contains("'" + bad + "'"), e.getMessage());
        }
        assertThrows(IllegalArgumentException.class, () -> new SparsityPattern.Unstructured(1.0));
        assertThrows(IllegalArgumentException.class, () -> new SparsityPattern.Unstructured(-0.1));
        assertThrows(IllegalArgumentException.class, () -> new SparsityPattern.Unstructured(Double.NaN));
        assertThrows(IllegalArgumentException.class, () -> new SparsityPattern.NofM(4, 4));
    }

    @Test
    void recordRoundTripsThroughConfigKeepingOtherKeys() throws Exception {
        Map<String, Double> layers = new LinkedHashMap<>();
        layers.put("model.layers.0.self_attn.q_proj", 0.5);
        layers.put("model.layers.0.mlp.down_proj", 0.5000217);
        SparsityRecord r = new SparsityRecord("wanda", new SparsityPattern.Unstructured(0.5), "row", layers);
        ObjectNode config = (ObjectNode) JSON.readTree("""
                {"architectures": ["LlamaForCausalLM"], "hidden_size": 64,
                 "shrink": {"distill": {"steps": 400}, "sparsity": {"method": "old"}}}""");
        ObjectNode written = r.writeInto(config);
        assertEquals(JSON.readTree("""
                {"method": "wanda", "pattern": "unstructured", "ratio": 0.5, "scope": "row",
                 "layers": {"model.layers.0.self_attn.q_proj": 0.5, "model.layers.0.mlp.down_proj": 0.5000217}}"""),
                written.at("/shrink/sparsity"));
        assertEquals(400, written.at("/shrink/distill/steps").asInt(), "other shrink keys kept");
        assertEquals(64, written.get("hidden_size").asInt());
        assertEquals("old", config.at("/shrink/sparsity/method").asText(), "the input is not modified");
        SparsityRecord back = SparsityRecord.fromConfig(JSON.readTree(JSON.writeValueAsString(written)));
        assertEquals(r, back);
        assertEquals(List.copyOf(layers.keySet()), List.copyOf(back.layers().keySet()), "order kept");

        SparsityRecord nm = new SparsityRecord("magnitude", new SparsityPattern.NofM(2, 4), null, Map.of("a", 0.5));
        ObjectNode plain = (ObjectNode) JSON.readTree("{\"hidden_size\": 64}");
        ObjectNode w2 = nm.writeInto(plain);
        assertTrue(w2.at("/shrink/sparsity/scope").isNull());
        assertEquals("2:4", w2.at("/shrink/sparsity/pattern").asText());
        SparsityRecord nmBack = SparsityRecord.fromConfig(w2);
        assertInstanceOf(SparsityPattern.NofM.class, nmBack.pattern());
        assertEquals(nm, nmBack);
        assertNull(SparsityRecord.fromConfig(plain), "no record: null");
        assertNull(SparsityRecord.fromConfig(JSON.readTree("{\"shrink\": {\"distill\": {}}}")));
    }

    @Test
    void malformedRecordsNameTheField() throws Exception {
        String[][] cases = {
            {"{\"shrink\": {\"sparsity\": 3}}", "not an object"},
            {"{\"shrink\": {\"sparsity\": {\"pattern\": \"2:4\", \"ratio\": 0.5, \"layers\": {}}}}", "method"},
            {"{\"shrink\": {\"sparsity\": {\"method\": \"m\", \"pattern\": \"2:4\", \"ratio\": 0.75, \"layers\": {}}}}", "ratio"},
            {"{\"shrink\": {\"sparsity\": {\"method\": \"m\", \"pattern\": \"unstructured\", \"ratio\": 1.5, \"layers\": {}}}}", "ratio"},
            {"{\"shrink\": {\"sparsity\": {\"method\": \"m\", \"pattern\": \"x:y\", \"ratio\": 0.5, \"layers\": {}}}}", "pattern"},
            {"{\"shrink\": {\"sparsity\": {\"method\": \"m\", \"pattern\": \"2:4\", \"ratio\": 0.5, \"scope\": \"block\", \"layers\": {}}}}", "scope"},
            {"{\"shrink\": {\"sparsity\": {\"method\": \"m\", \"pattern\": \"2:4\", \"ratio\": 0.5}}}", "layers"},
            {"{\"shrink\": {\"sparsity\": {\"method\": \"m\", \"pattern\": \"2:4\", \"ratio\": 0.5, \"layers\": {\"a\": \"x\"}}}}", "layer 'a'"},
        };
        for (String[] c : cases) {
            var node = JSON.readTree(c[0]);
            ShrinkException e = assertThrows(ShrinkException.class, () -> SparsityRecord.fromConfig(node), c[0]);
            assertTrue(e.getMessage().startsWith("shrink.sparsity: "), e.getMessage());
            assertTrue(e.getMessage().contains(c[1]), () -> c[1] + " in " + e.getMessage());
        }
    }
}
