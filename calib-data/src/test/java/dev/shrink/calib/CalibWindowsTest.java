package dev.shrink.calib;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.shrink.core.ShrinkException;
import dev.shrink.core.model.ModelConfig;
import dev.shrink.core.model.Tokenizer;
import dev.shrink.core.safetensors.TokenWindows;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class CalibWindowsTest {
    @TempDir
    Path dir;

    private static int[] range(int n) {
        int[] s = new int[n];
        for (int i = 0; i < n; i++) {
            s[i] = i;
        }
        return s;
    }

    @Test
    void randomWindowsStartAtPythonsDraws() {
        // stream[k] == k, so each window starts with its offset.
        // python3 -c "import random; random.seed(1234); print([random.randint(0, 1000-10-1) for _ in range(5)])"
        int[][] w = CalibWindows.randomWindows(range(1000), 5, 10, 1234);
        int[] starts = {989, 796, 451, 119, 7};
        assertEquals(5, w.length);
        for (int k = 0; k < 5; k++) {
            int[] expected = new int[10];
            for (int j = 0; j < 10; j++) {
                expected[j] = starts[k] + j;
            }
            assertArrayEquals(expected, w[k], "window " + k);
        }
    }

    @Test
    void tooFewTokensForOneWindow() {
        ShrinkException e = assertThrows(ShrinkException.class, () -> CalibWindows.randomWindows(range(512), 4, 512, 0));
        assertEquals("calibration text has 512 tokens, fewer than one window of 512 + 1", e.getMessage());
        // one token more is enough: the only offset is 0
        int[][] w = CalibWindows.randomWindows(range(513), 2, 512, 0);
        assertEquals(0, w[0][0]);
        assertEquals(0, w[1][0]);
        assertEquals(511, w[1][511]);
    }

    @Test
    void streamJoinsDocumentsAndPrependsBosOnce() {
        try (Tokenizer tok = TestData.fixtureTokenizer()) {
            List<String> docs = List.of("Once upon a time", "there was a fox.", "The end");
            int[] joined = tok.encode("Once upon a time\n\nthere was a fox.\n\nThe end");
            int[] withBos = CalibWindows.stream(docs, tok, 1);
            assertEquals(joined.length + 1, withBos.length);
            assertEquals(1, withBos[0]);
            assertArrayEquals(joined, java.util.Arrays.copyOfRange(withBos, 1, withBos.length));
            assertArrayEquals(joined, CalibWindows.stream(docs, tok, null));
            // the separator really is "\n\n": not the same ids as the documents joined with a space
            assertTrue(!java.util.Arrays.equals(joined, tok.encode(String.join(" ", docs))));
        }
    }

    @Test
    void blocksConcatenatePerDocumentTokens() throws IOException {
        try (Tokenizer tok = TestData.wordTokenizer(dir, "a", "b", "c", "d", "e")) {
            // ids: a=1 b=2 c=3 d=4 e=5; the empty document is skipped
            List<String> docs = List.of("a b", "", "c d e", "b", "   ", "e e");
            assertArrayEquals(new int[][] {{1, 2}, {3, 4}}, CalibWindows.blocks(docs, tok, 2, 2));
            assertArrayEquals(new int[][] {{1, 2, 3}, {4, 5, 2}, {5, 5, 0}},
                    CalibWindows.blocks(List.of("a b", "c d e", "b", "e e zzz"), tok, 3, 3));
            ShrinkException e = assertThrows(ShrinkException.class, () -> CalibWindows.blocks(docs, tok, 3, 3));
            assertTrue(e.getMessage().contains("only 2 blocks of 3 tokens (8 tokens); asked for 3"), e.getMessage());
        }
    }

    @Test
    void badCountsAreErrors() {
        assertThrows(ShrinkException.class, () -> CalibWindows.randomWindows(range(100), 0, 10, 0));
        assertThrows(ShrinkException.class, () -> CalibWindows.randomWindows(range(100), 1, 0, 0));
    }

    /**
     * The whole chain against shared/golden: the C4 sample, fixture-llama-14m's tokenizer with BOS 1,
     * 128 windows of 512 at seed 0 must equal the windows the Python references calibrated on.
     */
    @Test
    void goldenC4WindowsOfTheFixtureModel() {
        Path shared = TestData.shared();
        Path golden = shared.resolve("golden/fixture-llama-14m.calib-c4-128x512.safetensors");
        assumeTrue(Files.isRegularFile(golden), "missing " + golden);
        Path model = shared.resolve("models/fixture-llama-14m");
        Integer bos = ModelConfig.read(model.resolve("config.json")).bosTokenId();
        assertEquals(1, bos);
        int[][] expected = TokenWindows.read(golden);
        assertEquals(128, expected.length);
        assertEquals(512, expected[0].length);
        try (Tokenizer tok = Tokenizer.load(model.resolve("tokenizer.json"))) {
            int[] stream = CalibWindows.stream(CalibSource.load("c4", "text"), tok, bos);
            int[][] got = CalibWindows.randomWindows(stream, 128, 512, 0);
            for (int k = 0; k < 128; k++) {
                assertArrayEquals(expected[k], got[k], "window " + k);
            }
            assertEquals(TokenWindows.fingerprint(expected), TokenWindows.fingerprint(got));
        }
    }
}
