package dev.shrink.core.io;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.shrink.core.ShrinkException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The safe writer and folder installer: links, non-regular targets, kills between renames, debris. */
class SafeFilesTest {
    @TempDir
    Path tmp;

    static Set<String> names(Path dir) throws IOException {
        try (Stream<Path> s = Files.list(dir)) {
            return new TreeSet<>(s.map(p -> p.getFileName().toString()).toList());
        }
    }

    /** The id of a process that has exited (ids are not reused this quickly). */
    static long deadPid() throws Exception {
        Process p = new ProcessBuilder("true").start();
        p.waitFor();
        long pid = p.pid();
        assertFalse(ProcessHandle.of(pid).isPresent(), "the process has exited");
        return pid;
    }

    @Test
    void linkPlantedAtTheOldFixedTemporaryNameIsNotFollowed() throws IOException {
        Path victim = Files.writeString(tmp.resolve("victim"), "precious");
        Files.createSymbolicLink(tmp.resolve("out.json.tmp"), victim);
        Path out = tmp.resolve("out.json");
        SafeFiles.writeString(out, "{}\n");
        assertEquals("{}\n", Files.readString(out));
        assertEquals("precious", Files.readString(victim));
        assertTrue(Files.isSymbolicLink(tmp.resolve("out.json.tmp")), "the planted link is left alone");
        assertEquals(Set.of("out.json", "out.json.tmp", "victim"), names(tmp), "no temporary file left");
    }

    @Test
    void createNewNeverWritesThroughALink() throws IOException {
        Path victim = Files.writeString(tmp.resolve("victim"), "precious");
        Path link = Files.createSymbolicLink(tmp.resolve("config.json"), victim);
        assertThrows(IOException.class, () -> SafeFiles.createNew(link, new byte[] {1, 2, 3}));
        assertEquals("precious", Files.readString(victim));
    }

    @Test
    void replacesARegularFileAndLeavesNoTemporary() throws IOException {
        Path out = Files.writeString(tmp.resolve("r.json"), "old");
        SafeFiles.writeString(out, "new");
        assertEquals("new", Files.readString(out));
        assertEquals(Set.of("r.json"), names(tmp));
    }

    @Test
    void fifoTargetIsRefusedAndStaysAFifo() throws Exception {
        Path fifo = tmp.resolve("pipe");
        Process p = new ProcessBuilder("mkfifo", fifo.toString()).start();
        assumeTrue(p.waitFor() == 0, "mkfifo unavailable");
        ShrinkException e = assertThrows(ShrinkException.class, () -> SafeFiles.writeString(fifo, "x"));
        assertEquals(fifo + ": cannot write: exists and is not a regular file (a device, pipe or socket); not replaced",
                e.getMessage());
        assertTrue(Files.exists(fifo, LinkOption.NOFOLLOW_LINKS));
        assertFalse(Files.isRegularFile(fifo, LinkOption.NOFOLLOW_LINKS), "still a pipe");
        assertEquals(Set.of("pipe"), names(tmp), "no temporary file left");
    }

    @Test
    void devNullIsRefusedAndStaysACharacterDevice() throws IOException {
        Path devNull = Path.of("/dev/null");
        assumeTrue(Files.exists(devNull));
        Object before = Files.getAttribute(devNull, "unix:mode", LinkOption.NOFOLLOW_LINKS);
        ShrinkException e = assertThrows(ShrinkException.class, () -> SafeFiles.checkFileTarget(devNull));
        assertTrue(e.getMessage().startsWith("/dev/null: cannot write: exists and is not a regular file"), e.getMessage());
        assertFalse(Files.isRegularFile(devNull, LinkOption.NOFOLLOW_LINKS));
        assertTrue(Files.isSymbolicLink(devNull) || (((int) before) & 0170000) == 0020000, "a character device");
        assertEquals(before, Files.getAttribute(devNull, "unix:mode", LinkOption.NOFOLLOW_LINKS));
    }

    @Test
    void symbolicLinkTargetIsRefusedAndItsFileKept() throws IOException {
        Path victim = Files.writeString(tmp.resolve("victim"), "precious");
        Path link = Files.createSymbolicLink(tmp.resolve("out.json"), victim);
        assertThrows(ShrinkException.class, () -> SafeFiles.writeString(link, "x"));
        assertTrue(Files.isSymbolicLink(link));
        assertEquals("precious", Files.readString(victim));
    }

    @Test
    void outputHoldingAnInputThroughALinkIsRefused() throws IOException {
        Path a = Files.createDirectories(tmp.resolve("A/copy/model"));
        Path alias = Files.createSymbolicLink(tmp.resolve("alias"), tmp.resolve("A"));
        Path out = alias.resolve("copy");
        assertEquals(tmp.toRealPath().resolve("A/copy"), SafeFiles.realPath(out));
        ShrinkException e = assertThrows(ShrinkException.class, () -> SafeFiles.checkApart(out, List.of(a), "the model"));
        assertTrue(e.getMessage().startsWith(out + ": holds the input " + a), e.getMessage());
        // .. after a link is the link target's parent, not the lexical one
        Path sneaky = alias.resolve("copy/../copy/model");
        assertThrows(ShrinkException.class, () -> SafeFiles.checkApart(sneaky, List.of(a), "the model"));
        Path inside = alias.resolve("copy/model/q");
        ShrinkException in = assertThrows(ShrinkException.class, () -> SafeFiles.checkApart(inside, List.of(a), "x"));
        assertTrue(in.getMessage().contains("is inside the input"), in.getMessage());
        SafeFiles.checkApart(tmp.resolve("elsewhere"), List.of(a), "the model"); // apart: fine
    }

    /** A new folder's content, as a writer fills it. */
    static void fill(Path dir, String text) throws IOException {
        Files.createDirectories(dir);
        Files.writeString(dir.resolve("config.json"), text);
    }

    @Test
    void killBetweenTheRenamesIsFinishedByTheNextRun() throws Exception {
        Path out = tmp.resolve("out");
        fill(out, "old");
        String token = SafeFiles.token(deadPid());
        Path newDir = tmp.resolve("out.tmp-" + token);
        fill(newDir, "new");
        IOException killed = new IOException("killed");
        IOException e = assertThrows(IOException.class, () -> SafeFiles.install(out, true, newDir,
                tmp.resolve("out.install-" + token), tmp.resolve("out.old-" + token),
                step -> {
                    if (step.equals("old moved")) {
                        throw killed;
                    }
                }));
        assertEquals(killed, e);
        assertFalse(Files.exists(out), "neither folder at the target: the state a kill leaves");
        assertEquals(Set.of("out.install-" + token, "out.old-" + token, "out.tmp-" + token), names(tmp));

        SafeFiles.recover(out);
        assertEquals(Set.of("out"), names(tmp), "finished: the complete new folder is in place, the rest gone");
        assertEquals("new", Files.readString(out.resolve("config.json")));
    }

    @Test
    void killAfterTheJournalBeforeTheOldMovedIsRolledBack() throws Exception {
        Path out = tmp.resolve("out");
        fill(out, "old");
        String token = SafeFiles.token(deadPid());
        Path newDir = tmp.resolve("out.tmp-" + token);
        fill(newDir, "new");
        assertThrows(IOException.class, () -> SafeFiles.install(out, true, newDir, tmp.resolve("out.install-" + token),
                tmp.resolve("out.old-" + token), step -> {
                    if (step.equals("journal")) {
                        throw new IOException("killed");
                    }
                }));
        SafeFiles.recover(out);
        assertEquals(Set.of("out"), names(tmp));
        assertEquals("old", Files.readString(out.resolve("config.json")), "the old folder untouched");
    }

    @Test
    void killAfterTheSecondRenameIsCleanedUp() throws Exception {
        Path out = tmp.resolve("out");
        fill(out, "old");
        String token = SafeFiles.token(deadPid());
        Path newDir = tmp.resolve("out.tmp-" + token);
        fill(newDir, "new");
        assertThrows(IOException.class, () -> SafeFiles.install(out, true, newDir, tmp.resolve("out.install-" + token),
                tmp.resolve("out.old-" + token), step -> {
                    if (step.equals("new in place")) {
                        throw new IOException("killed");
                    }
                }));
        SafeFiles.recover(out);
        assertEquals(Set.of("out"), names(tmp));
        assertEquals("new", Files.readString(out.resolve("config.json")));
    }

    @Test
    void aLiveRunsInstallIsLeftAlone() throws Exception {
        Path out = tmp.resolve("out");
        fill(out, "old");
        String token = SafeFiles.newToken(); // this process: alive
        Path newDir = tmp.resolve("out.tmp-" + token);
        fill(newDir, "new");
        assertThrows(IOException.class, () -> SafeFiles.install(out, true, newDir, tmp.resolve("out.install-" + token),
                tmp.resolve("out.old-" + token), step -> {
                    if (step.equals("old moved")) {
                        throw new IOException("paused");
                    }
                }));
        Set<String> before = names(tmp);
        SafeFiles.recover(out);
        SafeFiles.recoverAll(tmp);
        assertEquals(before, names(tmp), "a live owner's folders are never touched");
    }

    @Test
    void staleDebrisIsDeletedLiveDebrisAndForeignNamesKept() throws Exception {
        long dead = deadPid();
        Path staleDir = tmp.resolve("k1.tmp-" + SafeFiles.token(dead));
        fill(staleDir, "partial");
        Path staleFile = Files.writeString(tmp.resolve("k1.json.tmp-" + SafeFiles.token(dead)), "partial");
        Path liveDir = tmp.resolve("k2.tmp-" + SafeFiles.newToken());
        fill(liveDir, "being written");
        Path otherHost = tmp.resolve("k3.tmp-p" + dead + "-h00000000-0123456789ab");
        fill(otherHost, "another host's");
        Path oldStyle = Files.createDirectory(tmp.resolve("k4.tmp-0123456789ab"));
        SafeFiles.recoverAll(tmp);
        assertFalse(Files.exists(staleDir));
        assertFalse(Files.exists(staleFile));
        assertTrue(Files.isDirectory(liveDir), "a live owner's");
        assertTrue(Files.isDirectory(otherHost), "cannot tell whether it is alive");
        assertTrue(Files.isDirectory(oldStyle), "no owner recorded");
    }

    @Test
    void installFolderReplacesAndCleansItsOwnTargetsDebris() throws Exception {
        Path out = tmp.resolve("out");
        fill(out, "old");
        Path stale = tmp.resolve("out.tmp-" + SafeFiles.token(deadPid()));
        fill(stale, "partial");
        SafeFiles.installFolder(out, true, dir -> Files.writeString(dir.resolve("config.json"), "new"));
        assertEquals(Set.of("out"), names(tmp));
        assertEquals("new", Files.readString(out.resolve("config.json")));
        ShrinkException e = assertThrows(ShrinkException.class,
                () -> SafeFiles.installFolder(out, false, dir -> Files.writeString(dir.resolve("x"), "y")));
        assertTrue(e.getMessage().contains("not empty"), e.getMessage());
        assertEquals(Set.of("out"), names(tmp));
    }
}
