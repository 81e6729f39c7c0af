package dev.shrink.calib;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shrink.core.ShrinkException;
import dev.shrink.core.model.Tokenizer;
import dev.shrink.core.safetensors.TokenWindows;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class CalibDataTest {
    @TempDir
    Path dir;

    private static int[][] windows(int n, int seqlen) {
        int[][] w = new int[n][seqlen];
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < seqlen; j++) {
                w[i][j] = i * 1000 + j;
            }
        }
        return w;
    }

    private static CalibSpec fileSpec(Path file, int samples, int seqlen) {
        return new CalibSpec(null, null, samples, seqlen, 0, file, null);
    }

    @Test
    void tokensFileWinsAndIsCutToTheSpec() {
        Path f = dir.resolve("calib.safetensors");
        int[][] all = windows(6, 16);
        TokenWindows.write(f, all);
        // a dataset is given too: the file wins (the dataset does not even exist)
        CalibSpec spec = new CalibSpec(dir.resolve("missing.jsonl").toString(), null, 6, 16, 0, f, "random");
        assertArrayEquals(all, CalibData.windows(spec, null, 1));
        int[][] cut = CalibData.windows(fileSpec(f, 4, 10), null, 1);
        assertEquals(4, cut.length);
        for (int i = 0; i < 4; i++) {
            assertArrayEquals(Arrays.copyOf(all[i], 10), cut[i], "window " + i);
        }
    }

    @Test
    void tokensFileWithTooFewOrTooShortWindowsIsAnError() {
        Path f = dir.resolve("calib-64x512.safetensors");
        TokenWindows.write(f, windows(64, 512));
        ShrinkException e = assertThrows(ShrinkException.class, () -> CalibData.windows(fileSpec(f, 128, 512), null, 1));
        assertEquals(f + ": holds 64 windows of 512 tokens; asked for 128 windows of 512", e.getMessage());
        ShrinkException s = assertThrows(ShrinkException.class, () -> CalibData.windows(fileSpec(f, 8, 1024), null, 1));
        assertEquals(f + ": holds 64 windows of 512 tokens; asked for 8 windows of 1024", s.getMessage());
    }

    @Test
    void datasetIsLoadedAndSampled() throws IOException {
        Path docs = dir.resolve("docs.jsonl");
        Files.writeString(docs, """
                {"body": "a b c d"}
                {"body": ""}
                {"body": "e a b"}
                {"body": "c c"}
                """);
        try (Tokenizer tok = TestData.wordTokenizer(dir, "a", "b", "c", "d", "e")) {
            // random: stream = BOS 9 + "a b c d\n\n\n\ne a b\n\nc c" -> [9, 1 2 3 4, 5 1 2, 3 3]
            int[] stream = {9, 1, 2, 3, 4, 5, 1, 2, 3, 3};
            assertArrayEquals(stream, CalibWindows.stream(CalibSource.load(docs.toString(), "body"), tok, 9));
            CalibSpec random = new CalibSpec(docs.toString(), "body", 3, 4, 5, null, "random");
            assertArrayEquals(CalibWindows.randomWindows(stream, 3, 4, 5), CalibData.windows(random, tok, 9));
            // blocks: no BOS, empty document skipped
            CalibSpec blocks = new CalibSpec(docs.toString(), "body", 2, 4, 0, null, "BLOCKS");
            assertArrayEquals(new int[][] {{1, 2, 3, 4}, {5, 1, 2, 3}}, CalibData.windows(blocks, tok, 9));
        }
    }

    @Test
    void specDefaultsAndChecks() {
        CalibSpec s = new CalibSpec("c4", null, 128, 512, 0, null, null);
        assertEquals("text", s.field());
        assertEquals("random", s.sampling());
        ShrinkException unknown = assertThrows(ShrinkException.class,
                () -> new CalibSpec("c4", null, 1, 1, 0, null, "stratified"));
        assertTrue(unknown.getMessage().contains("'stratified'") && unknown.getMessage().contains("random, blocks"));
        assertThrows(ShrinkException.class, () -> new CalibSpec("c4", null, 0, 512, 0, null, null));
        assertThrows(ShrinkException.class, () -> new CalibSpec("c4", null, 1, 0, 0, null, null));
        ShrinkException none = assertThrows(ShrinkException.class, () -> new CalibSpec(null, null, 1, 1, 0, null, null));
        assertTrue(none.getMessage().contains("no calibration data"), none.getMessage());
    }

    @Test
    void missingDatasetIsAnError() throws IOException {
        try (Tokenizer tok = TestData.wordTokenizer(dir, "a")) {
            CalibSpec spec = CalibSpec.random(dir.resolve("nope.arrow").toString(), 1, 4, 0);
            ShrinkException e = assertThrows(ShrinkException.class, () -> CalibData.windows(spec, tok, null));
            assertTrue(e.getMessage().contains("nope.arrow"), e.getMessage());
        }
        assertEquals(List.of("random", "blocks"), CalibSpec.SAMPLINGS);
    }
}
