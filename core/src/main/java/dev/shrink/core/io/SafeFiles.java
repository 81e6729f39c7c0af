package dev.shrink.core.io;

import dev.shrink.core.ShrinkException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.AccessDeniedException;
import java.nio.file.DirectoryStream;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.FileSystemException;
import java.nio.file.FileVisitResult;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.SimpleFileVisitor;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.BasicFileAttributes;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.security.SecureRandom;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The one home for putting data on disk without losing any: writing a file, installing a folder,
 * and refusing outputs that would destroy an input. Every writer of the project goes through it
 * (safetensors files, JSON reports, model folders, compare's cache, the cubin cache).
 *
 * <p><b>A file</b> ({@link #write(Path, Body)}) is written to a sibling temporary file with a unique
 * name, created with {@code CREATE_NEW} and {@code NOFOLLOW_LINKS} (a symbolic link planted at a
 * temporary name is never followed), forced to disk, then renamed over the target. A target that
 * exists and is not a regular file (a folder, a symbolic link, a device such as {@code /dev/null},
 * a pipe) is refused with one error naming it, and never renamed over.
 *
 * <p><b>A folder</b> ({@link #installFolder}) is filled in a sibling temporary folder, then renamed into
 * place. Replacing an existing folder takes two renames (old one aside, new one in); before the first
 * one an empty <em>journal</em> file {@code OUT.install-TOKEN} is created, which says "{@code OUT.tmp-TOKEN}
 * is complete". A run killed anywhere leaves a state the next run that writes {@code OUT} repairs
 * ({@link #recover}): with the journal, the new folder is put in place if the target is missing (the
 * old one then deleted), or deleted if the old target was never moved; without it, an incomplete
 * {@code OUT.tmp-TOKEN} is deleted.
 *
 * <p><b>Temporary names</b> are {@code NAME.tmp-TOKEN} (also {@code NAME.old-TOKEN}, {@code NAME.install-TOKEN})
 * with {@code TOKEN = p<pid>-h<host>-<random>}: the owning process id and a hash of the host name and
 * PID namespace. Debris is deleted only when provably stale: same host and PID namespace, and no process
 * with that id alive. Anything else (another host's, a live process's, names of other forms) is kept.
 */
public final class SafeFiles {

    /** The body of a file write: writes the whole content to the channel. */
    @FunctionalInterface
    public interface Body {
        void writeTo(FileChannel ch) throws IOException;
    }

    /** Fills the (new, empty, temporary) folder it is given. */
    @FunctionalInterface
    public interface Content {
        void writeInto(Path dir) throws IOException;
    }

    private static final SecureRandom RANDOM = new SecureRandom();

    /** {@code NAME.KIND-p<pid>-h<host>-<random>}. */
    private static final Pattern DEBRIS = Pattern.compile("(.+)\\.(tmp|old|install)-(p(\\d{1,10})-h([0-9a-f]{8})-[0-9a-f]{12})");

    private static final String HOST = hostId();

    private SafeFiles() {
    }

    // ------------------------------------------------------------------------------------------ files

    /**
     * Writes {@code target} atomically and durably: body → unique sibling temporary file (created new,
     * links not followed), forced, renamed over the target, folder forced. The temporary file is
     * deleted on any failure; the target is then as it was.
     *
     * @throws ShrinkException naming the target: it exists and is not a regular file, or any I/O error
     */
    public static void write(Path target, Body body) {
        Path abs = target.toAbsolutePath();
        Path dir = abs.getParent();
        if (dir == null) {
            throw ShrinkException.at(target, "cannot write: not a file name");
        }
        checkFileTarget(target);
        cleanStale(dir, abs.getFileName().toString());
        Path tmp = dir.resolve(abs.getFileName() + ".tmp-" + newToken());
        boolean done = false;
        try {
            try (FileChannel ch = FileChannel.open(tmp, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE,
                    LinkOption.NOFOLLOW_LINKS)) {
                body.writeTo(ch);
                ch.force(true);
            }
            checkFileTarget(target); // again, just before the rename
            Files.move(tmp, abs, StandardCopyOption.ATOMIC_MOVE);
            done = true;
            syncDirectory(dir);
        } catch (IOException e) {
            throw writeError(target, e);
        } finally {
            if (!done) {
                try {
                    Files.deleteIfExists(tmp);
                } catch (IOException ignored) {
                    // the original error is what matters
                }
            }
        }
    }

    /** {@link #write(Path, Body)} of bytes. */
    public static void write(Path target, byte[] bytes) {
        write(target, ch -> writeFully(ch, ByteBuffer.wrap(bytes)));
    }

    /** {@link #write(Path, Body)} of UTF-8 text. */
    public static void writeString(Path target, String text) {
        write(target, text.getBytes(StandardCharsets.UTF_8));
    }

    /**
     * Creates a new file (never an existing one, never through a link) and forces it to disk: for the
     * files of a folder being built in a temporary folder ({@link #installFolder}).
     */
    public static void createNew(Path file, Body body) throws IOException {
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE,
                LinkOption.NOFOLLOW_LINKS)) {
            body.writeTo(ch);
            ch.force(true);
        }
    }

    /** {@link #createNew(Path, Body)} of bytes. */
    public static void createNew(Path file, byte[] bytes) throws IOException {
        createNew(file, ch -> writeFully(ch, ByteBuffer.wrap(bytes)));
    }

    /**
     * Refuses, before any work, a file output that exists and is not a regular file (a folder, a
     * symbolic link, a device, a pipe, a socket): it would be replaced by a regular file.
     */
    public static void checkFileTarget(Path target) {
        Path abs = target.toAbsolutePath();
        if (Files.exists(abs, LinkOption.NOFOLLOW_LINKS) && !Files.isRegularFile(abs, LinkOption.NOFOLLOW_LINKS)) {
            throw ShrinkException.at(target, "cannot write: exists and is not a regular file (" + kind(abs)
                    + "); not replaced");
        }
    }

    private static String kind(Path p) {
        if (Files.isSymbolicLink(p)) {
            return "a symbolic link";
        }
        if (Files.isDirectory(p, LinkOption.NOFOLLOW_LINKS)) {
            return "a folder";
        }
        return "a device, pipe or socket";
    }

    /** A one-line ShrinkException naming the file that could not be written. */
    public static ShrinkException writeError(Path target, IOException e) {
        String msg = e.getMessage() == null ? "" : e.getMessage();
        String reason = e instanceof FileSystemException fse && fse.getReason() != null ? fse.getReason() : msg;
        if (msg.contains("No space left on device") || reason.contains("No space left on device")) {
            return ShrinkException.at(target, "cannot write: no space left on device", e);
        }
        if (e instanceof NoSuchFileException) {
            Path parent = target.toAbsolutePath().getParent();
            return ShrinkException.at(target, "cannot write: folder " + parent + " does not exist", e);
        }
        if (e instanceof AccessDeniedException) {
            return ShrinkException.at(target, "cannot write: permission denied", e);
        }
        return ShrinkException.at(target, "cannot write: "
                + (e instanceof FileSystemException && !reason.isBlank() ? reason : oneLine(e)), e);
    }

    // ------------------------------------------------------------------------ outputs versus inputs

    /**
     * The path as the kernel sees it: the longest existing prefix resolved to its real path (every
     * symbolic link and {@code ..} followed), the rest appended and normalized.
     */
    public static Path realPath(Path p) {
        Path abs = p.toAbsolutePath();
        Path existing = abs;
        List<Path> rest = new ArrayList<>();
        while (existing != null) {
            try {
                Path real = existing.toRealPath();
                for (int i = rest.size() - 1; i >= 0; i--) {
                    real = real.resolve(rest.get(i));
                }
                return real.normalize();
            } catch (IOException e) {
                if (existing.getFileName() == null) {
                    break;
                }
                rest.add(existing.getFileName());
                existing = existing.getParent();
            }
        }
        return abs.normalize();
    }

    /**
     * Refuses an output (file or folder) that is an input, holds one, or lies inside one, comparing
     * real paths (so a symbolic link or {@code ..} cannot disguise the source).
     *
     * @param output the output as the user named it
     * @param inputs every input the command reads (nulls ignored)
     * @param what   what is written, for the message ("the GPTQ model")
     */
    public static void checkApart(Path output, Collection<Path> inputs, String what) {
        Objects.requireNonNull(output, "output");
        Path out = realPath(output);
        if (out.getParent() == null) {
            throw ShrinkException.at(output, "cannot be a file system root");
        }
        for (Path input : inputs) {
            if (input == null) {
                continue;
            }
            Path in = realPath(input);
            String problem = out.equals(in) ? "is the input " + input
                    : in.startsWith(out) ? "holds the input " + input
                    : out.startsWith(in) ? "is inside the input " + input : null;
            if (problem != null) {
                throw ShrinkException.at(output, problem + (in.equals(input.toAbsolutePath().normalize()) ? "" : " (" + in + ")")
                        + "; write " + what + " elsewhere");
            }
        }
    }

    // ------------------------------------------------------------------------------------------ folders

    /**
     * Installs a new folder at {@code target}: repairs what an earlier killed run left ({@link #recover}),
     * fills a unique temporary sibling with {@code content}, then renames it into place, replacing a
     * non-empty folder only with {@code overwrite} (see the class comment for the journal that makes the
     * replacement recoverable). The caller has checked the target ({@link #checkFolderTarget}).
     *
     * @throws IOException     of the content or the renames; the temporary folder is deleted then
     * @throws ShrinkException naming the target when it is not replaceable
     */
    public static void installFolder(Path target, boolean overwrite, Content content) throws IOException {
        Path abs = target.toAbsolutePath().normalize();
        Path parent = abs.getParent();
        String name = abs.getFileName().toString();
        Files.createDirectories(parent);
        recover(abs);
        String token = newToken();
        Path tmp = parent.resolve(name + ".tmp-" + token);
        Path journal = parent.resolve(name + ".install-" + token);
        Path old = parent.resolve(name + ".old-" + token);
        boolean installed = false;
        try {
            Files.createDirectory(tmp);
            content.writeInto(tmp);
            syncDirectory(tmp);
            installed = install(abs, overwrite, tmp, journal, old, null);
        } finally {
            if (!installed) {
                deleteTreeQuietly(tmp);
                deleteQuietly(journal);
            }
        }
        try {
            deleteTree(old);
            Files.deleteIfExists(journal);
            syncDirectory(parent);
        } catch (IOException e) {
            throw ShrinkException.at(old, "the new folder is in place at " + target
                    + ", but the replaced old copy could not be deleted: " + describe(e), e);
        }
    }

    /** Where a test stops an install, as a kill would. */
    interface Crash {
        void at(String step) throws IOException;
    }

    /** The renames, journaled. Returns true once the new folder is at the target. */
    static boolean install(Path target, boolean overwrite, Path tmp, Path journal, Path old, Crash crash)
            throws IOException {
        Path parent = target.getParent();
        checkFolderTarget(target, overwrite);
        createNew(journal, ch -> { }); // from here on, tmp is complete: a later run finishes the install
        syncDirectory(parent);
        step(crash, "journal");
        boolean replace = Files.exists(target, LinkOption.NOFOLLOW_LINKS);
        if (replace && isEmptyDir(target)) {
            Files.delete(target);
        } else if (replace) {
            Files.move(target, old, StandardCopyOption.ATOMIC_MOVE);
            step(crash, "old moved");
        }
        try {
            Files.move(tmp, target, StandardCopyOption.ATOMIC_MOVE);
        } catch (IOException | RuntimeException e) {
            if (Files.exists(old, LinkOption.NOFOLLOW_LINKS)) {
                try {
                    Files.move(old, target, StandardCopyOption.ATOMIC_MOVE);
                } catch (IOException restore) {
                    e.addSuppressed(restore);
                    throw ShrinkException.at(target, "could not put the new folder in place (" + oneLine(e)
                            + ") nor the old one back; the old folder is at " + old
                            + " (the next run that writes " + target.getFileName() + " puts one back)", e);
                }
            }
            if (e instanceof FileAlreadyExistsException || e instanceof FileSystemException fse
                    && "Directory not empty".equals(fse.getReason())) {
                throw ShrinkException.at(target, "appeared while the folder was being written; not replaced", e);
            }
            throw e;
        }
        syncDirectory(parent);
        step(crash, "new in place");
        return true;
    }

    private static void step(Crash crash, String step) throws IOException {
        if (crash != null) {
            crash.at(step);
        }
    }

    /**
     * Refuses a folder target that exists and is not a folder (a file, a symbolic link, a device), or a
     * non-empty folder without {@code overwrite}.
     */
    public static void checkFolderTarget(Path target, boolean overwrite) {
        Path abs = target.toAbsolutePath();
        if (!Files.exists(abs, LinkOption.NOFOLLOW_LINKS)) {
            return;
        }
        if (!Files.isDirectory(abs, LinkOption.NOFOLLOW_LINKS)) {
            throw ShrinkException.at(target, "exists and is not a folder" + (Files.isSymbolicLink(abs) ? " (a symbolic link)" : ""));
        }
        if (!overwrite && !isEmptyDir(abs)) {
            throw ShrinkException.at(target, "exists and is not empty; choose another folder or overwrite it");
        }
    }

    private static boolean isEmptyDir(Path dir) {
        try (DirectoryStream<Path> ds = Files.newDirectoryStream(dir)) {
            return !ds.iterator().hasNext();
        } catch (IOException e) {
            throw ShrinkException.at(dir, "cannot list the folder: " + describe(e), e);
        }
    }

    // ------------------------------------------------------------------------------- recovery, debris

    /**
     * Repairs what killed runs left beside {@code target} (a file or folder path): journaled folder
     * installs of dead owners are finished or rolled back, their stale temporary files and folders
     * deleted. What a live process (or another host) may own is kept.
     *
     * @throws ShrinkException naming the target if a repair fails
     */
    public static void recover(Path target) {
        Path abs = target.toAbsolutePath().normalize();
        if (abs.getParent() != null && abs.getFileName() != null) {
            recoverIn(abs.getParent(), abs.getFileName().toString());
        }
    }

    /**
     * {@link #recover} for every name in {@code dir} (for caches such as compare's {@code stages/}).
     */
    public static void recoverAll(Path dir) {
        recoverIn(dir.toAbsolutePath().normalize(), null);
    }

    /** Deletes the stale temporary files of {@code name} in {@code dir}, best effort. */
    private static void cleanStale(Path dir, String name) {
        try {
            recoverIn(dir, name);
        } catch (ShrinkException ignored) {
            // debris only; the write itself does not depend on it
        }
    }

    private static void recoverIn(Path dir, String only) {
        record Entry(String name, String kind, String token, Path path) {
        }
        List<Entry> entries = new ArrayList<>();
        String glob = only == null ? "*" : globEscape(only) + ".{tmp,old,install}-*";
        try (DirectoryStream<Path> ds = Files.newDirectoryStream(dir, glob)) {
            for (Path p : ds) {
                Matcher m = DEBRIS.matcher(p.getFileName().toString());
                if (m.matches() && (only == null || m.group(1).equals(only)) && ownerDead(m.group(4), m.group(5))) {
                    entries.add(new Entry(m.group(1), m.group(2), m.group(3), p));
                }
            }
        } catch (NoSuchFileException | java.nio.file.NotDirectoryException e) {
            return;
        } catch (IOException e) {
            throw ShrinkException.at(dir, "cannot list the folder: " + describe(e), e);
        }
        Map<String, Set<String>> journals = new LinkedHashMap<>();
        for (Entry e : entries) {
            if (e.kind().equals("install")) {
                journals.computeIfAbsent(e.name(), k -> new TreeSet<>()).add(e.token());
            }
        }
        try {
            for (Map.Entry<String, Set<String>> j : journals.entrySet()) {
                for (String token : j.getValue()) {
                    finish(dir.resolve(j.getKey()), token);
                }
            }
            for (Entry e : entries) {
                boolean journaled = journals.getOrDefault(e.name(), Set.of()).contains(e.token());
                if (e.kind().equals("tmp") && !journaled) {
                    deleteTree(e.path()); // never completed: the run died while writing it
                }
            }
        } catch (IOException e) {
            throw ShrinkException.at(dir.resolve(only == null ? "." : only), "cannot repair what an interrupted run left: "
                    + describe(e), e);
        }
    }

    /** Finishes (or rolls back) the journaled install {@code token} of {@code target}. */
    private static void finish(Path target, String token) throws IOException {
        Path parent = target.getParent();
        String name = target.getFileName().toString();
        Path tmp = parent.resolve(name + ".tmp-" + token);
        Path old = parent.resolve(name + ".old-" + token);
        Path journal = parent.resolve(name + ".install-" + token);
        boolean hasTarget = Files.exists(target, LinkOption.NOFOLLOW_LINKS);
        boolean hasNew = Files.isDirectory(tmp, LinkOption.NOFOLLOW_LINKS);
        boolean hasOld = Files.exists(old, LinkOption.NOFOLLOW_LINKS);
        if (hasNew && !hasTarget) {
            Files.move(tmp, target, StandardCopyOption.ATOMIC_MOVE); // killed between the renames: finish
            syncDirectory(parent);
        } else if (hasNew) {
            deleteTree(tmp); // killed before the old folder moved: roll back
        } else if (!hasTarget && hasOld) {
            Files.move(old, target, StandardCopyOption.ATOMIC_MOVE); // the new one is gone: put the old one back
            syncDirectory(parent);
        }
        if (Files.exists(target, LinkOption.NOFOLLOW_LINKS)) {
            deleteTree(old);
        }
        Files.deleteIfExists(journal);
        syncDirectory(parent);
    }

    private static String globEscape(String s) {
        return s.replaceAll("([\\\\*?\\[\\]{},])", "\\\\$1");
    }

    /** A new token: this process's id, this host's id and 48 random bits. */
    static String newToken() {
        return token(ProcessHandle.current().pid());
    }

    /** The token of temporary names owned by process {@code pid} of this host (tests plant debris with it). */
    public static String token(long pid) {
        byte[] b = new byte[6];
        RANDOM.nextBytes(b);
        return "p" + pid + "-h" + HOST + "-" + HexFormat.of().formatHex(b);
    }

    /** True only when the owner was on this host and PID namespace and no process with its id is alive. */
    static boolean ownerDead(String pid, String host) {
        if (!host.equals(HOST)) {
            return false;
        }
        long id;
        try {
            id = Long.parseLong(pid);
        } catch (NumberFormatException e) {
            return false;
        }
        if (id <= 0 || id == ProcessHandle.current().pid() || ProcessHandle.of(id).isPresent()) {
            return false;
        }
        Path proc = Path.of("/proc");
        return !Files.isDirectory(proc) || !Files.exists(proc.resolve(Long.toString(id)));
    }

    /** 8 hex digits of SHA-256(host name, PID namespace): processes that share it share process ids. */
    private static String hostId() {
        StringBuilder sb = new StringBuilder();
        try {
            sb.append(Files.readString(Path.of("/proc/sys/kernel/hostname")).strip());
        } catch (IOException | RuntimeException e) {
            try {
                sb.append(java.net.InetAddress.getLocalHost().getHostName());
            } catch (IOException | RuntimeException e2) {
                sb.append(Objects.requireNonNullElse(System.getenv("HOSTNAME"), "?"));
            }
        }
        try {
            sb.append('|').append(Files.readSymbolicLink(Path.of("/proc/self/ns/pid")));
        } catch (IOException | RuntimeException ignored) {
            // no PID namespaces here
        }
        try {
            byte[] h = MessageDigest.getInstance("SHA-256").digest(sb.toString().getBytes(StandardCharsets.UTF_8));
            return HexFormat.of().formatHex(h, 0, 4);
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    // ------------------------------------------------------------------------------------------ helpers

    /** Deletes a file or a folder tree (links themselves, never what they point to); absent is fine. */
    public static void deleteTree(Path root) throws IOException {
        if (!Files.exists(root, LinkOption.NOFOLLOW_LINKS)) {
            return;
        }
        Files.walkFileTree(root, new SimpleFileVisitor<>() {
            @Override
            public FileVisitResult visitFile(Path file, BasicFileAttributes attrs) throws IOException {
                Files.delete(file);
                return FileVisitResult.CONTINUE;
            }

            @Override
            public FileVisitResult postVisitDirectory(Path dir, IOException exc) throws IOException {
                if (exc != null) {
                    throw exc;
                }
                Files.delete(dir);
                return FileVisitResult.CONTINUE;
            }
        });
    }

    private static void deleteTreeQuietly(Path root) {
        try {
            deleteTree(root);
        } catch (IOException | RuntimeException ignored) {
            // the original error is what matters
        }
    }

    private static void deleteQuietly(Path file) {
        try {
            Files.deleteIfExists(file);
        } catch (IOException | RuntimeException ignored) {
            // the original error is what matters
        }
    }

    /** Forces a folder's entries (renames, creations) to disk; best effort. */
    public static void syncDirectory(Path dir) {
        try (FileChannel ch = FileChannel.open(dir, StandardOpenOption.READ)) {
            ch.force(true);
        } catch (IOException | RuntimeException ignored) {
            // not supported everywhere; the renames themselves are done
        }
    }

    private static void writeFully(FileChannel ch, ByteBuffer buf) throws IOException {
        while (buf.hasRemaining()) {
            ch.write(buf);
        }
    }

    /** An I/O error in one line: the file and the reason when the exception has them. */
    public static String describe(IOException e) {
        if (e instanceof FileSystemException fse) {
            String reason = fse.getReason();
            String what = fse.getFile() != null ? fse.getFile() : "";
            if (reason != null && !reason.isBlank()) {
                return (what.isEmpty() ? "" : what + ": ") + reason;
            }
            return e.getClass().getSimpleName() + (what.isEmpty() ? "" : " " + what);
        }
        return oneLine(e);
    }

    /** The first line of an exception's message, or its class name. */
    public static String oneLine(Throwable e) {
        String m = e.getMessage();
        if (m == null || m.isBlank()) {
            m = e.getClass().getSimpleName();
        }
        int nl = m.indexOf('\n');
        return (nl >= 0 ? m.substring(0, nl) : m).strip();
    }
}
