package dev.shrink.core.sparse;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shrink.core.ShrinkException;
import org.junit.jupiter.api.Test;

/** SparsityPattern.parse is the one N:M validator (CLI --pattern, recipes, config.json's record). */
class SparsityPatternTest {
    static String refused(String text) {
        String m = assertThrows(ShrinkException.class, () -> SparsityPattern.parse(text)).getMessage();
        assertTrue(!m.contains("\n") && m.contains("'" + text + "'"), m);
        return m;
    }

    @Test
    void validPatternsParse() {
        assertEquals(new SparsityPattern.NofM(2, 4), SparsityPattern.parse("2:4"));
        assertEquals(new SparsityPattern.NofM(4, 8), SparsityPattern.parse(" 4 : 8 "));
        assertEquals(new SparsityPattern.NofM(2, 4), SparsityPattern.parse("002:04"), "leading zeros are decimal");
        assertEquals(new SparsityPattern.NofM(1, 4), SparsityPattern.parse("1:0000000000000000004"), "not an overflow");
        assertEquals(new SparsityPattern.NofM(255, SparsityPattern.MAX_M), SparsityPattern.parse("255:256"));
    }

    @Test
    void hugeNumbersAreOneLineNotAnOverflow() {
        // used to throw NumberFormatException in the recipe parser (an internal error)
        assertTrue(refused("1:99999999999").contains("at most 256"));
        assertTrue(refused("1:257").contains("at most 256"));
        assertTrue(refused("99999999999999999999:4").contains("0 < N < M"));
    }

    @Test
    void nonsenseIsRefused() {
        assertTrue(refused("4:2").contains("0 < N < M"));
        assertTrue(refused("0:4").contains("0 < N < M"));
        assertTrue(refused("4:4").contains("0 < N < M"));
        assertTrue(refused("-1:4").contains("N:M"));
        assertTrue(refused("2:4:8").contains("N:M"));
        assertTrue(refused("").contains("N:M"));
    }
}
