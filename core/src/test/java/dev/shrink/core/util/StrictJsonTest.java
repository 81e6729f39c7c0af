package dev.shrink.core.util;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shrink.core.ShrinkException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The shared JSON reader: one value, UTF-8 only, no duplicate keys; one line naming the file. */
class StrictJsonTest {
    @TempDir
    Path tmp;

    String refused(byte[] content) throws Exception {
        Path f = Files.write(tmp.resolve("x.json"), content);
        String m = assertThrows(ShrinkException.class, () -> StrictJson.read(f, "missing")).getMessage();
        assertTrue(m.startsWith(f + ": ") && !m.contains("\n"), m);
        return m;
    }

    String refused(String content) throws Exception {
        return refused(content.getBytes(StandardCharsets.UTF_8));
    }

    @Test
    void readsOneValue() throws Exception {
        Path f = Files.writeString(tmp.resolve("ok.json"), " {\"a\": [1, {\"b\": \"é\"}]}\n\n");
        assertEquals("é", StrictJson.readObject(f, "missing").path("a").path(1).path("b").asText());
    }

    @Test
    void refusesWhatLenientReadersAccept() throws Exception {
        assertTrue(refused("{\"a\": 1} {\"a\": 2}").contains("after the end of the JSON value"));
        assertTrue(refused("{\"a\": 1} x").contains("not valid JSON"));
        assertTrue(refused("{\"a\": 1, \"a\": 2}").contains("Duplicate field 'a'"));
        assertTrue(refused("{\"o\": {\"a\": 1, \"a\": 1}}").contains("Duplicate field 'a'"), "nested duplicates too");
        assertTrue(refused("\uFEFF{}").contains("byte-order mark"));
        assertTrue(refused("{\"a\": 1}".getBytes(StandardCharsets.UTF_16)).contains("UTF-16"));
        assertTrue(refused(new byte[]{'{', '"', (byte) 0xC3, '"', ':', '1', '}'}).contains("not valid UTF-8"));
        assertTrue(refused("").contains("empty"));
        assertTrue(refused("{\"a\": NaN}").contains("not valid JSON"));
        assertTrue(refused("[".repeat(5000)).contains("not valid JSON"), "deep nesting is an error, not a stack overflow");
        Path arr = Files.writeString(tmp.resolve("arr.json"), "[1]");
        assertTrue(assertThrows(ShrinkException.class, () -> StrictJson.readObject(arr, "m")).getMessage()
                .contains("not a JSON object (found an array)"));
        assertTrue(assertThrows(ShrinkException.class, () -> StrictJson.read(tmp.resolve("none.json"), "no such thing"))
                .getMessage().endsWith("no such thing"));
    }
}
