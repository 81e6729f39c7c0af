package dev.shrink.calib;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shrink.core.ShrinkException;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class CalibSourceTest {
    @TempDir
    Path dir;

    private static void assertMessage(ShrinkException e, String... parts) {
        for (String p : parts) {
            assertTrue(e.getMessage().contains(p), "message '" + e.getMessage() + "' lacks '" + p + "'");
        }
        assertTrue(!e.getMessage().contains("\n"), "one-line message: " + e.getMessage());
    }

    // ---- text and JSON lines ----

    @Test
    void txtIsOneDocument() throws IOException {
        Path f = dir.resolve("notes.txt");
        Files.writeString(f, "first line\n\nsecond paragraph — ünïcode\n");
        assertEquals(List.of("first line\n\nsecond paragraph — ünïcode\n"), CalibSource.load(f.toString(), null));
    }

    @Test
    void txtMustBeUtf8() throws IOException {
        Path f = dir.resolve("latin1.txt");
        Files.write(f, new byte[] {'c', 'a', 'f', (byte) 0xE9});
        ShrinkException e = assertThrows(ShrinkException.class, () -> CalibSource.load(f.toString(), null));
        assertMessage(e, f.toString(), "UTF-8");
    }

    @Test
    void jsonLinesTakeTheField() throws IOException {
        Path f = dir.resolve("docs.jsonl");
        Files.writeString(f, """
                {"text": "one", "meta": 1}

                {"text": "two\\nlines", "body": "b"}
                {"text": "", "body": "c"}
                """);
        assertEquals(List.of("one", "two\nlines", ""), CalibSource.load(f.toString(), "text"));
        assertEquals(List.of("one", "two\nlines", ""), CalibSource.load(f.toString(), null), "default field 'text'");
        Path g = dir.resolve("docs.json");
        Files.writeString(g, "{\"body\": \"x\"}\n{\"body\": \"y\"}");
        assertEquals(List.of("x", "y"), CalibSource.load(g.toString(), "body"), ".json read as JSON lines");
    }

    @Test
    void jsonLineThatIsNotJsonNamesFileAndLine() throws IOException {
        Path f = dir.resolve("bad.jsonl");
        Files.writeString(f, "{\"text\": \"a\"}\n{\"text\": \"b\"}\n{\"text\": oops}\n");
        ShrinkException e = assertThrows(ShrinkException.class, () -> CalibSource.load(f.toString(), "text"));
        assertMessage(e, f.toString(), "line 3", "not valid JSON");
    }

    @Test
    void jsonLineLackingTheFieldNamesFileAndLine() throws IOException {
        Path f = dir.resolve("missing.jsonl");
        Files.writeString(f, "{\"text\": \"a\"}\n\n{\"content\": \"b\"}\n");
        ShrinkException e = assertThrows(ShrinkException.class, () -> CalibSource.load(f.toString(), "text"));
        assertMessage(e, f.toString(), "line 3", "no field 'text'");
    }

    @Test
    void jsonLineWithANonStringFieldOrNonObjectIsAnError() throws IOException {
        Path f = dir.resolve("number.jsonl");
        Files.writeString(f, "{\"text\": 12}\n");
        assertMessage(assertThrows(ShrinkException.class, () -> CalibSource.load(f.toString(), "text")),
                f.toString(), "line 1", "'text' is number, not a string");
        Path g = dir.resolve("scalar.jsonl");
        Files.writeString(g, "{\"text\": \"ok\"}\n\"just a string\"\n");
        assertMessage(assertThrows(ShrinkException.class, () -> CalibSource.load(g.toString(), "text")),
                g.toString(), "line 2", "not a JSON object");
        Path h = dir.resolve("array.json");
        Files.writeString(h, "[{\"text\": \"a\"}, {\"text\": \"b\"}]\n");
        assertMessage(assertThrows(ShrinkException.class, () -> CalibSource.load(h.toString(), "text")),
                h.toString(), "line 1", "JSON array");
    }

    // ---- Arrow ----

    @Test
    void arrowStreamGivesTheStringColumnInOrderAcrossBatches() throws IOException {
        List<String> values = new ArrayList<>();
        for (int i = 0; i < 25; i++) {
            values.add("doc " + i + " ünï");
        }
        values.set(7, "");
        values.set(11, null);
        Path f = dir.resolve("data-00000-of-00001.arrow");
        TestData.writeArrow(f, "text", values, 10, false, false, true);
        List<String> expected = new ArrayList<>(values);
        expected.remove(11);                    // nulls dropped, empty strings kept
        assertEquals(expected, CalibSource.load(f.toString(), "text"));
    }

    @Test
    void arrowLargeStringsOtherFieldsAndFileFormat() throws IOException {
        Path large = dir.resolve("large.arrow");
        TestData.writeArrow(large, "content", List.of("a", "b", "c"), 2, true, false, false);
        assertEquals(List.of("a", "b", "c"), CalibSource.load(large.toString(), "content"));
        Path file = dir.resolve("fileformat.arrow");
        TestData.writeArrow(file, "text", List.of("x", "y"), 1, false, true, false);
        assertEquals(List.of("x", "y"), CalibSource.load(file.toString(), "text"));
    }

    @Test
    void arrowMissingOrNonStringColumnIsAnError() throws IOException {
        Path f = dir.resolve("cols.arrow");
        TestData.writeArrow(f, "text", List.of("a"), 10, false, false, true);
        assertMessage(assertThrows(ShrinkException.class, () -> CalibSource.load(f.toString(), "body")),
                f.toString(), "no column 'body'", "id, text");
        assertMessage(assertThrows(ShrinkException.class, () -> CalibSource.load(f.toString(), "id")),
                f.toString(), "column 'id'", "not a string column");
    }

    @Test
    void corruptArrowIsAnError() throws IOException {
        Path f = dir.resolve("junk.arrow");
        Files.writeString(f, "this is not arrow at all, just some text that goes on for a while");
        assertMessage(assertThrows(ShrinkException.class, () -> CalibSource.load(f.toString(), "text")),
                f.toString());
        Path t = dir.resolve("truncated.arrow");
        Path good = dir.resolve("good.arrow");
        TestData.writeArrow(good, "text", List.of("aaaaaaaaaa", "bbbbbbbbbb", "cccccccccc"), 1, false, false, false);
        byte[] bytes = Files.readAllBytes(good);
        Files.write(t, Arrays.copyOf(bytes, bytes.length - 40));
        assertMessage(assertThrows(ShrinkException.class, () -> CalibSource.load(t.toString(), "text")),
                t.toString());
    }

    // ---- Parquet ----

    @Test
    void parquetGivesTheStringColumn() throws IOException {
        List<String> values = new ArrayList<>();
        for (int i = 0; i < 2500; i++) {
            values.add(i % 100 == 3 ? null : "row " + i + " — ünïcode " + "x".repeat(i % 17));
        }
        Path f = TestData.writeParquet(dir, "train-00000-of-00001.parquet", "text", values, true);
        List<String> expected = values.stream().filter(v -> v != null).toList();
        assertEquals(expected, CalibSource.load(f.toString(), "text"));
    }

    @Test
    void parquetMissingColumnAndCorruptFileAreErrors() throws IOException {
        Path f = TestData.writeParquet(dir, "cols.parquet", "text", List.of("a", "b"), true);
        assertMessage(assertThrows(ShrinkException.class, () -> CalibSource.load(f.toString(), "body")),
                f.toString(), "no column 'body'", "id, text");
        assertMessage(assertThrows(ShrinkException.class, () -> CalibSource.load(f.toString(), "id")),
                f.toString(), "not a string column");
        Path junk = dir.resolve("junk.parquet");
        Files.writeString(junk, "PAR1 but not really a parquet file");
        assertMessage(assertThrows(ShrinkException.class, () -> CalibSource.load(junk.toString(), "text")),
                junk.toString());
    }

    @Test
    void parquetReaderProbeSaysWhatToInstallWhereArrowDatasetIsAbsent() throws IOException {
        // here (Maven's classpath) the reader is present; a loader that sees only the JDK lacks it,
        // as the tarball built without --with-parquet does
        assertEquals(null, CalibSource.parquetReaderMissing(CalibSource.class.getClassLoader()));
        try (var bare = new java.net.URLClassLoader(new java.net.URL[0], ClassLoader.getPlatformClassLoader())) {
            String why = CalibSource.parquetReaderMissing(bare);
            assertTrue(why != null && why.contains("scripts/dist.sh --with-parquet") && !why.contains("\n"), why);
        }
        // a missing file is reported as missing, before any question of the reader
        Path missing = dir.resolve("absent.parquet");
        ShrinkException e = assertThrows(ShrinkException.class, () -> CalibSource.load(missing.toString(), "text"));
        assertMessage(e, missing.toString(), "existing file");
        assertTrue(!e.getMessage().contains("with-parquet"), e.getMessage());
    }

    // ---- folders, paths, presets ----

    @Test
    void folderReadsArrowAndParquetFilesSorted() throws IOException {
        Path folder = Files.createDirectory(dir.resolve("cache"));
        TestData.writeArrow(folder.resolve("b-split.arrow"), "text", List.of("b1", "b2"), 10, false, false, false);
        TestData.writeParquet(folder, "a-split.parquet", "text", List.of("a1"), false);
        TestData.writeArrow(folder.resolve("c-split.arrow"), "text", List.of("c1"), 10, false, false, false);
        Files.writeString(folder.resolve("dataset_info.json"), "{\"text\": \"not a source\"}");
        Files.writeString(folder.resolve("notes.txt"), "ignored");
        assertEquals(List.of("a1", "b1", "b2", "c1"), CalibSource.load(folder.toString(), "text"));
    }

    @Test
    void emptyFolderUnknownExtensionAndMissingPathAreErrors() throws IOException {
        Path empty = Files.createDirectory(dir.resolve("empty"));
        Files.writeString(empty.resolve("readme.md"), "nothing here");
        assertMessage(assertThrows(ShrinkException.class, () -> CalibSource.load(empty.toString(), null)),
                empty.toString(), "no .arrow or .parquet");
        Path csv = dir.resolve("data.csv");
        Files.writeString(csv, "text\nhello\n");
        assertMessage(assertThrows(ShrinkException.class, () -> CalibSource.load(csv.toString(), null)),
                csv.toString(), "unsupported", ".txt", ".jsonl", ".json", ".arrow", ".parquet", "folder");
        String missing = dir.resolve("nope.jsonl").toString();
        assertMessage(assertThrows(ShrinkException.class, () -> CalibSource.load(missing, null)),
                missing, "neither a preset", "c4");
        assertThrows(ShrinkException.class, () -> CalibSource.load(" ", null));
    }

    @Test
    void presetsReadTheSharedDatasets() {
        TestData.shared();
        // Counts from shared/datasets/README.md and from python3 (see each line).
        List<String> wiki = CalibSource.load("wikitext2", null);
        assertEquals(4358 - 1467, wiki.size(), "non-blank rows of wiki.test.raw");
        assertEquals(" = Robert Boulter = \n", wiki.get(0), "rows keep their newline");
        assertTrue(wiki.stream().noneMatch(String::isBlank));

        // python3: len([l.strip() for l in open('ptb.valid.txt') if l.strip()]) == 3370
        List<String> ptb = CalibSource.load("PTB", null);
        assertEquals(3370, ptb.size());
        assertEquals("consumers may want to move their telephones a little closer to the tv set", ptb.get(0));

        // python3: sum(len(x['prefix'] + x['gold_completion']) for x in lines) == 1778673 code points
        List<String> c4 = CalibSource.load("c4", "ignored-for-presets");
        assertEquals(1480, c4.size());
        assertTrue(c4.get(0).startsWith("Total Grower Services recommend the use of a Petrik Soil Tec"), c4.get(0));
        assertEquals(1778673L, c4.stream().mapToLong(s -> s.codePointCount(0, s.length())).sum());

        // python3: [s.strip() for s in text.split('\n\n') if s.strip()] has 4300 stories
        List<String> stories = CalibSource.load("tinystories", null);
        assertEquals(4300, stories.size());
        assertTrue(stories.get(0).startsWith("Spot. Spot saw the shiny car and said, \"Wow, Kitty"));
        assertTrue(stories.get(4299).endsWith("always remember his special performance."));

        List<String> heldout = CalibSource.load("heldout", null);
        assertEquals(1, heldout.size());
        assertEquals(1921154, heldout.get(0).getBytes(StandardCharsets.UTF_8).length, "the whole file");
    }

    @Test
    void presetWithoutSharedFolderIsAClearError() {
        String saved = System.getProperty("shrink.shared");
        // Only checkable when nothing but the property finds the folder.
        org.junit.jupiter.api.Assumptions.assumeTrue(System.getenv("SHRINK_SHARED") == null
                && !Files.isDirectory(Path.of("..", "shared", "datasets")) && !Files.isDirectory(Path.of("shared", "datasets"))
                && System.getProperty("shrink.home") == null, "the shared folder is also found without the property");
        try {
            System.setProperty("shrink.shared", dir.resolve("no-such-folder").toString());
            ShrinkException e = assertThrows(ShrinkException.class, () -> CalibSource.load("c4", null));
            assertMessage(e, "c4", "shared datasets folder was not found");
        } finally {
            if (saved == null) {
                System.clearProperty("shrink.shared");
            } else {
                System.setProperty("shrink.shared", saved);
            }
        }
    }
}
