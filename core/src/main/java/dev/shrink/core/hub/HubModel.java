package dev.shrink.core.hub;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.shrink.core.ShrinkException;
import dev.shrink.core.Version;
import dev.shrink.core.safetensors.WeightStore;
import dev.shrink.core.util.Progress;
import java.io.IOException;
import java.io.InputStream;
import java.io.PrintStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpHeaders;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.FileSystemException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Objects;
import java.util.Optional;
import java.util.Set;
import java.util.regex.Pattern;

/**
 * Models named by a Hugging Face id ({@code org/name} at a revision): found in the local Hub cache,
 * else downloaded into it, laid out exactly as huggingface_hub's {@code file_download.py} lays it out,
 * so that a model fetched by any Hugging Face tool is used as is and one fetched here serves them too:
 * <pre>
 *   CACHE/models--org--name/blobs/ETAG                      file contents, named by the Hub's ETag
 *                                                           (sha256 for LFS files, git blob sha1 for others)
 *   CACHE/models--org--name/snapshots/COMMIT/FILE           symlink to ../../blobs/ETAG
 *   CACHE/models--org--name/refs/REVISION                   the commit the branch or tag pointed to
 * </pre>
 * A revision that is cached (its ref names a commit whose snapshot holds config.json and every
 * weight file) is used without the network; a commit hash needs no ref. Otherwise the Hub API lists
 * the revision's files ({@code GET ENDPOINT/api/models/REPO/revision/REV}: {@code sha}, {@code siblings}),
 * and only the files Shrink reads are fetched ({@link #FILES}, and the safetensors weights: the shards
 * that {@code model.safetensors.index.json} names, else every top-level {@code *.safetensors}):
 * a HEAD on {@code ENDPOINT/REPO/resolve/COMMIT/FILE} gives the ETag ({@code X-Linked-Etag} for LFS
 * files, else {@code ETag}) and size, the GET streams into {@code blobs/ETAG.incomplete}, continued
 * with an HTTP Range request after an interruption (in this run or the next), and the bytes are
 * checked against the ETag before the blob takes its name. Redirects are followed (the Hub sends LFS
 * files to a CDN; renamed repos redirect relatively), the token only ever to the endpoint's host.
 */
public final class HubModel {
    public static final String DEFAULT_REVISION = "main";

    /** The files Shrink reads besides the weights, fetched when the repository has them. */
    public static final List<String> FILES = List.of("config.json", "generation_config.json", "tokenizer.json",
            "tokenizer_config.json", "special_tokens_map.json", "quantize_config.json", "quant_config.json");

    private static final Pattern SEGMENT = Pattern.compile("\\w(?:[\\w.-]{0,94}\\w)?");
    private static final Pattern COMMIT = Pattern.compile("[0-9a-f]{40}");
    private static final Pattern SHA256 = Pattern.compile("[0-9a-f]{64}");
    private static final Pattern SAFE_ETAG = Pattern.compile("[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}");
    private static final Pattern REVISION = Pattern.compile("[\\w.-]+(?:/[\\w.-]+)*");
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final Duration METADATA_TIMEOUT = Duration.ofSeconds(30);
    private static final int MAX_REDIRECTS = 10;

    private final HubSettings settings;
    private final boolean quiet;
    private final PrintStream log;
    private final HttpClient http;

    public HubModel(HubSettings settings, boolean quiet) {
        this(settings, quiet, System.err);
    }

    public HubModel(HubSettings settings, boolean quiet, PrintStream log) {
        this.settings = settings;
        this.quiet = quiet;
        this.log = log;
        this.http = HttpClient.newBuilder().followRedirects(HttpClient.Redirect.NEVER)
                .connectTimeout(Duration.ofSeconds(20)).build();
    }

    /**
     * The one place a model argument becomes a folder: {@code local} when it exists (a folder, or a
     * file for commands that take one), else, when {@code arg} looks like a Hugging Face id
     * ({@code org/name}), its snapshot at {@code revision} (null: main) from the cache or the Hub,
     * with the settings of the environment; else {@code local} unchanged, for the caller to report.
     */
    public static Path resolveArgument(Path local, String arg, String revision, boolean quiet) {
        if (Files.exists(local) || !isRepoId(arg)) {
            return local;
        }
        try {
            return new HubModel(HubSettings.fromEnvironment(), quiet).resolve(arg,
                    revision != null ? revision : DEFAULT_REVISION);
        } catch (NotHere e) { // perhaps a mistyped path rather than an id: say that too
            throw new ShrinkException(e.getMessage() + " (and there is no local folder " + arg + ")", e);
        }
    }

    /** Whether {@code s} is a Hugging Face model id of the form {@code org/name} (huggingface_hub's rules). */
    public static boolean isRepoId(String s) {
        if (s == null || s.length() > 96 * 2 + 1 || s.contains("--") || s.contains("..") || s.endsWith(".git")) {
            return false;
        }
        int slash = s.indexOf('/');
        return slash > 0 && slash == s.lastIndexOf('/') && SEGMENT.matcher(s.substring(0, slash)).matches()
                && SEGMENT.matcher(s.substring(slash + 1)).matches();
    }

    /** {@code models--org--name}: the repository's folder in the cache. */
    public static String folderName(String repo) {
        return "models--" + repo.replace("/", "--");
    }

    /** The snapshot folder of {@code repo} at {@code revision}: from the cache, else downloaded into it. */
    public Path resolve(String repo, String revision) {
        if (!isRepoId(repo)) {
            throw new ShrinkException(repo + ": not a Hugging Face model id (org/name)");
        }
        if (revision.isEmpty() || !REVISION.matcher(revision).matches() || revision.contains("..")) {
            throw new ShrinkException("--revision " + revision + ": not a branch, tag or commit name");
        }
        Path repoDir = settings.cacheDir().resolve(folderName(repo));
        String commit = cachedCommit(repoDir, revision);
        if (commit != null) {
            Path snap = repoDir.resolve("snapshots").resolve(commit);
            List<String> missing = missing(snap);
            if (missing.isEmpty()) {
                return snap;
            }
            if (settings.offline()) {
                throw new NotHere("HF_HUB_OFFLINE=1 and " + repo + "@" + revision + " is not in the cache at "
                        + repoDir + " (its snapshot " + commit + " lacks " + String.join(", ", missing) + ")");
            }
        } else if (settings.offline()) {
            throw new NotHere("HF_HUB_OFFLINE=1 and " + repo + "@" + revision + " is not in the cache at " + repoDir);
        }
        return download(repo, revision, repoDir);
    }

    /** The commit a revision names in the cache: itself when it is a commit hash, else its ref; null if none. */
    private static String cachedCommit(Path repoDir, String revision) {
        if (COMMIT.matcher(revision).matches()) {
            return revision;
        }
        Path ref = repoDir.resolve("refs").resolve(revision);
        try {
            String c = Files.isRegularFile(ref) ? Files.readString(ref).trim() : null;
            return c != null && COMMIT.matcher(c).matches() ? c : null;
        } catch (IOException e) {
            return null;
        }
    }

    /** What a snapshot lacks for Shrink to read it (empty when complete). */
    private static List<String> missing(Path snap) {
        if (!Files.isDirectory(snap)) {
            return List.of("the snapshot folder");
        }
        List<String> out = new ArrayList<>();
        if (!Files.isRegularFile(snap.resolve("config.json"))) {
            out.add("config.json");
        }
        Path index = snap.resolve(WeightStore.INDEX_FILE);
        if (Files.isRegularFile(index)) {
            for (String shard : WeightStore.shardNames(index)) {
                if (!Files.isRegularFile(snap.resolve(shard))) {
                    out.add(shard);
                }
            }
        } else {
            boolean any = false;
            try (DirectoryStream<Path> ds = Files.newDirectoryStream(snap, "*.safetensors")) {
                for (Path p : ds) {
                    any |= Files.isRegularFile(p);
                }
            } catch (IOException e) {
                throw ShrinkException.at(snap, "cannot list the folder: " + e.getMessage(), e);
            }
            if (!any) {
                out.add("*.safetensors");
            }
        }
        return out;
    }

    // ---- download ---------------------------------------------------------------------------------------------

    private record RepoInfo(String commit, Set<String> files) {
    }

    /** One file to fetch: its ETag (the blob's name), size (-1 when unknown) and where the bytes are. */
    private record Remote(String file, String etag, long size, URI location) {
    }

    private Path download(String repo, String revision, Path repoDir) {
        RepoInfo info = repoInfo(repo, revision);
        Path snap = repoDir.resolve("snapshots").resolve(info.commit());
        if (!info.files().contains("config.json")) {
            throw new ShrinkException(repo + "@" + revision + " on " + settings.endpoint()
                    + " has no config.json: not a transformers model");
        }
        List<String> wanted = new ArrayList<>(FILES.stream().filter(info.files()::contains).toList());
        boolean sharded = info.files().contains(WeightStore.INDEX_FILE);
        List<String> shards;
        if (sharded) {
            Path index = snap.resolve(WeightStore.INDEX_FILE);
            if (!Files.isRegularFile(index)) {
                fetchAll(repo, repoDir, snap, List.of(head(repo, revision, info.commit(), WeightStore.INDEX_FILE)), null);
            }
            shards = new ArrayList<>(WeightStore.shardNames(index));
            for (String s : shards) {
                if (!info.files().contains(s)) {
                    throw new ShrinkException(repo + "@" + revision + ": " + WeightStore.INDEX_FILE + " names " + s
                            + ", which the repository does not have");
                }
            }
        } else {
            shards = info.files().stream().filter(f -> f.endsWith(".safetensors")).sorted().toList();
            if (shards.isEmpty()) {
                throw new ShrinkException(repo + "@" + revision + " on " + settings.endpoint()
                        + " has no safetensors weights; Shrink never reads pickle checkpoints (.bin, .pt), because "
                        + "loading one runs code stored in the file");
            }
        }
        wanted.addAll(shards);
        List<Remote> todo = new ArrayList<>();
        for (String f : wanted) {
            if (!Files.isRegularFile(snap.resolve(f))) {
                todo.add(head(repo, revision, info.commit(), f));
            }
        }
        if (!todo.isEmpty()) {
            long total = todo.stream().mapToLong(r -> Math.max(r.size(), 0)).sum();
            if (!quiet) {
                log.printf(Locale.ROOT, "downloading %s@%s (commit %s, %d file%s, %.1f MiB) from %s into %s%n", repo,
                        revision, info.commit().substring(0, 12), todo.size(), todo.size() == 1 ? "" : "s",
                        total / 1048576.0, settings.endpoint(), repoDir);
            }
            try (Progress p = new Progress("download " + repo, Math.max(1, total / 1024), "KiB", quiet)) {
                fetchAll(repo, repoDir, snap, todo, new Bytes(p));
            }
        }
        if (!revision.equals(info.commit())) {
            writeRef(repoDir, revision, info.commit());
        }
        List<String> missing = missing(snap);
        if (!missing.isEmpty()) { // the repository's own files disagree (e.g. an index naming absent shards)
            throw new ShrinkException(repo + "@" + revision + ": the download lacks " + String.join(", ", missing));
        }
        return snap;
    }

    /** {@code GET ENDPOINT/api/models/REPO/revision/REV}: the commit and the top-level file names. */
    private RepoInfo repoInfo(String repo, String revision) {
        URI uri = URI.create(settings.endpoint() + "/api/models/" + repo + "/revision/" + encode(revision, true));
        HttpResponse<byte[]> r = send("GET", uri, repo, -1, HttpResponse.BodyHandlers.ofByteArray(), false);
        if (r.statusCode() != 200) {
            throw httpError(repo, revision, null, r);
        }
        JsonNode root;
        try {
            root = JSON.readTree(r.body());
        } catch (IOException e) {
            throw new ShrinkException(uri + ": the Hub's answer is not valid JSON (is HF_ENDPOINT a Hugging Face Hub?)");
        }
        String sha = root == null ? null : root.path("sha").asText(null);
        if (sha == null || !COMMIT.matcher(sha).matches()) {
            throw new ShrinkException(uri + ": the Hub's answer has no commit \"sha\" (is HF_ENDPOINT a Hugging Face Hub?)");
        }
        Set<String> files = new LinkedHashSet<>();
        for (JsonNode s : root.path("siblings")) {
            String name = s.path("rfilename").asText("");
            if (WeightStore.isPlainFileName(name)) {
                files.add(name); // top-level files only: Shrink reads nothing in subfolders
            }
        }
        return new RepoInfo(sha, files);
    }

    /** HEAD on the file's resolve URL, following only relative redirects (as huggingface_hub does). */
    private Remote head(String repo, String revision, String commit, String file) {
        URI uri = resolveUri(repo, commit, file);
        HttpResponse<Void> r = send("HEAD", uri, repo, -1, HttpResponse.BodyHandlers.discarding(), false);
        int s = r.statusCode();
        if (s != 200 && !isRedirect(s)) {
            throw httpError(repo, revision, file, r);
        }
        HttpHeaders h = r.headers();
        String etag = h.firstValue("X-Linked-Etag").or(() -> h.firstValue("ETag")).map(HubModel::normalizeEtag)
                .orElse(null);
        if (etag == null || !SAFE_ETAG.matcher(etag).matches()) {
            throw new ShrinkException(uri + ": the Hub sent " + (etag == null ? "no ETag" : "an unusable ETag '" + etag + "'")
                    + " (is HF_ENDPOINT a Hugging Face Hub?)");
        }
        Optional<String> size = h.firstValue("X-Linked-Size");
        if (size.isEmpty() && !isRedirect(s)) {
            size = h.firstValue("Content-Length");
        }
        URI location = h.firstValue("Location").map(l -> r.uri().resolve(l)).orElse(r.uri());
        return new Remote(file, etag, size.map(HubModel::parseSize).orElse(-1L), location);
    }

    private void fetchAll(String repo, Path repoDir, Path snap, List<Remote> files, Bytes progress) {
        Path blobs = repoDir.resolve("blobs");
        Path locks = settings.cacheDir().resolve(".locks").resolve(folderName(repo));
        try {
            Files.createDirectories(blobs);
            Files.createDirectories(snap);
            Files.createDirectories(locks);
        } catch (IOException e) {
            throw ShrinkException.at(repoDir, "cannot create the cache folders: " + e.getMessage(), e);
        }
        for (Remote f : files) {
            Path blob = blobs.resolve(f.etag());
            try (FileChannel lc = FileChannel.open(locks.resolve(f.etag() + ".lock"), StandardOpenOption.CREATE,
                    StandardOpenOption.WRITE); FileLock lock = lc.lock()) {
                if (Files.isRegularFile(blob)) {
                    if (progress != null) {
                        progress.add(Math.max(f.size(), 0));
                    }
                } else {
                    downloadBlob(repo, f, blob, progress);
                }
                link(snap.resolve(f.file()), blob);
            } catch (IOException e) {
                throw ShrinkException.at(blob, "cannot write to the cache: " + e.getMessage(), e);
            }
        }
    }

    /** Streams the file into {@code blob.incomplete} (resumed with Range), checks it, then names it {@code blob}. */
    private void downloadBlob(String repo, Remote f, Path blob, Bytes progress) throws IOException {
        Path part = blob.resolveSibling(blob.getFileName() + ".incomplete");
        long have = Files.exists(part) ? Files.size(part) : 0;
        if (f.size() >= 0 && have > f.size()) {
            Files.delete(part);
            have = 0;
        }
        if (progress != null) {
            progress.add(have);
        }
        int stalled = 0;
        while (f.size() < 0 || have < f.size()) {
            try {
                get(repo, f, part, have, progress);
                break; // the body ended where the server said it would
            } catch (BodyInterrupted e) {
                long now = Files.exists(part) ? Files.size(part) : 0;
                if (now > have) {
                    stalled = 0; // progress: resume at once, as huggingface_hub's http_get does
                } else if (++stalled >= 3) {
                    throw new ShrinkException(repo + ": " + f.file() + ": the download broke off at " + now + " of "
                            + f.size() + " bytes (" + e.getMessage() + "); run again to resume it");
                } else {
                    sleep(1000L * stalled);
                }
                have = now;
            }
        }
        if (!Files.exists(part)) {
            Files.createFile(part); // an empty file: no GET needed
        }
        long size = Files.size(part);
        String problem = null;
        if (f.size() >= 0 && size != f.size()) {
            problem = "received " + size + " bytes, the Hub announced " + f.size();
        } else if (SHA256.matcher(f.etag()).matches()) {
            String got = digest(part, "SHA-256", null);
            if (!got.equals(f.etag())) {
                problem = "the bytes' sha256 is " + got + ", the Hub's ETag says " + f.etag();
            }
        } else if (COMMIT.matcher(f.etag()).matches()) {
            String got = digest(part, "SHA-1", ("blob " + size + "\0").getBytes(StandardCharsets.US_ASCII));
            if (!got.equals(f.etag())) {
                problem = "the bytes' git sha1 is " + got + ", the Hub's ETag says " + f.etag();
            }
        }
        if (problem != null) {
            Files.deleteIfExists(part);
            throw new ShrinkException(repo + ": " + f.file() + ": corrupt download: " + problem
                    + "; deleted it, run again");
        }
        Files.move(part, blob, StandardCopyOption.ATOMIC_MOVE);
    }

    /** One GET of the rest of a file into {@code part}; throws {@link BodyInterrupted} when the body breaks off. */
    private void get(String repo, Remote f, Path part, long have, Bytes progress) throws IOException {
        HttpResponse<InputStream> r = send("GET", f.location(), repo, have, HttpResponse.BodyHandlers.ofInputStream(), true);
        int s = r.statusCode();
        try (InputStream in = r.body()) {
            boolean append;
            if (s == 206 && have > 0) {
                String range = r.headers().firstValue("Content-Range").orElse("");
                if (!range.startsWith("bytes " + have + "-")) {
                    throw new ShrinkException(f.location() + ": asked for bytes from " + have + ", the server sent "
                            + (range.isEmpty() ? "no Content-Range" : range));
                }
                append = true;
            } else if (s == 200) {
                append = false; // a server that ignores Range sends it all: start over
                if (have > 0 && progress != null) {
                    progress.add(-have);
                }
            } else if (s == 416 && have > 0) {
                Files.delete(part); // what we hold is not a prefix of this file: start over
                throw new BodyInterrupted("the server refused to resume at byte " + have);
            } else {
                throw httpError(repo, null, f.file(), r);
            }
            try (FileChannel out = FileChannel.open(part, StandardOpenOption.CREATE, StandardOpenOption.WRITE,
                    append ? StandardOpenOption.APPEND : StandardOpenOption.TRUNCATE_EXISTING)) {
                byte[] buf = new byte[1 << 20];
                while (true) {
                    int n;
                    try {
                        n = in.read(buf);
                    } catch (IOException e) {
                        throw new BodyInterrupted(e.toString());
                    }
                    if (n < 0) {
                        break;
                    }
                    out.write(ByteBuffer.wrap(buf, 0, n));
                    if (progress != null) {
                        progress.add(n);
                    }
                }
            }
        }
    }

    /**
     * Sends a request, following redirects: only relative ones for metadata (the absolute Location
     * of an LFS file is where its bytes are), any for a download. The token goes only to the endpoint's
     * own scheme, host and port. A network failure is one line saying what to do.
     */
    private <T> HttpResponse<T> send(String method, URI uri, String repo, long rangeFrom,
                                     HttpResponse.BodyHandler<T> handler, boolean followAbsolute) {
        URI endpoint = URI.create(settings.endpoint());
        for (int hop = 0; ; hop++) {
            HttpRequest.Builder b = HttpRequest.newBuilder(uri).method(method, HttpRequest.BodyPublishers.noBody())
                    .header("User-Agent", "shrink/" + Version.VERSION + "; java/" + Runtime.version().feature());
            if (!method.equals("GET") || rangeFrom < 0) {
                b.timeout(METADATA_TIMEOUT);
            } else {
                b.timeout(Duration.ofMinutes(2)); // until the headers; the body may take as long as it takes
            }
            if (method.equals("HEAD")) {
                b.header("Accept-Encoding", "identity"); // the real size, as huggingface_hub asks
            }
            if (rangeFrom > 0) {
                b.header("Range", "bytes=" + rangeFrom + "-");
            }
            if (settings.token() != null && sameOrigin(uri, endpoint)) {
                b.header("Authorization", "Bearer " + settings.token());
            }
            HttpResponse<T> r;
            try {
                r = http.send(b.build(), handler);
            } catch (IOException e) {
                throw new NotHere("cannot reach " + origin(uri) + " for " + repo + " (" + e.getClass().getSimpleName()
                        + (e.getMessage() != null ? ": " + e.getMessage() : "")
                        + "); check the network and HF_ENDPOINT, or set HF_HUB_OFFLINE=1 to use only the cache", e);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new ShrinkException("interrupted while fetching " + repo + " from " + origin(uri), e);
            }
            Optional<String> location = r.headers().firstValue("Location");
            if (!isRedirect(r.statusCode()) || location.isEmpty()) {
                return r;
            }
            URI next = uri.resolve(location.get());
            boolean relative = !URI.create(location.get()).isAbsolute();
            if (!relative && !followAbsolute) {
                return r;
            }
            if (hop >= MAX_REDIRECTS) {
                throw new ShrinkException(uri + ": more than " + MAX_REDIRECTS + " redirects fetching " + repo);
            }
            closeQuietly(r.body());
            uri = next;
        }
    }

    private ShrinkException httpError(String repo, String revision, String file, HttpResponse<?> r) {
        closeQuietly(r.body());
        int s = r.statusCode();
        String code = r.headers().firstValue("X-Error-Code").orElse("");
        String page = settings.endpoint() + "/" + repo;
        String access = "set HF_TOKEN to a token with access to " + repo + " (accept its terms at " + page + ")";
        if (code.equals("RepoNotFound") || (s == 404 && file == null && code.isEmpty())) {
            return new NotHere("no model " + repo + " on " + settings.endpoint()
                    + (s == 401 && settings.token() == null ? " (if it is private, " + access + ")" : "")
                    + (revision != null && !revision.equals(DEFAULT_REVISION) && code.isEmpty()
                            ? " (or it has no revision " + revision + ")" : ""));
        }
        if (code.equals("RevisionNotFound")) {
            return new ShrinkException("model " + repo + " has no revision " + revision + " on " + settings.endpoint());
        }
        if (code.equals("EntryNotFound") || s == 404) {
            return new ShrinkException("model " + repo + " on " + settings.endpoint() + " has no file " + file
                    + " (it was listed a moment ago; run again)");
        }
        if (code.equals("GatedRepo") || s == 401 || s == 403) {
            return new ShrinkException(settings.token() == null
                    ? repo + " is gated or private: " + access
                    : "HF_TOKEN is not accepted for " + repo + " (HTTP " + s + "): " + access);
        }
        return new ShrinkException(origin(r.uri()) + " answered HTTP " + s + " for " + r.uri().getPath()
                + (s == 429 || s >= 500 ? "; try again later" : ""));
    }

    // ---- cache layout -----------------------------------------------------------------------------------------

    /** {@code snapshots/COMMIT/FILE} → {@code ../../blobs/ETAG}, relative as huggingface_hub makes it. */
    private static void link(Path pointer, Path blob) throws IOException {
        if (Files.isRegularFile(pointer)) {
            return;
        }
        Files.deleteIfExists(pointer); // a link to a blob someone deleted
        try {
            Files.createSymbolicLink(pointer, pointer.getParent().relativize(blob));
        } catch (UnsupportedOperationException | FileSystemException e) {
            Files.copy(blob, pointer); // no symlinks here (huggingface_hub then stores the file itself)
        }
    }

    /** {@code refs/REVISION} holds the commit, written whole (temporary file, then rename). */
    private static void writeRef(Path repoDir, String revision, String commit) {
        Path ref = repoDir.resolve("refs").resolve(revision);
        try {
            if (Files.isRegularFile(ref) && Files.readString(ref).equals(commit)) {
                return;
            }
            Files.createDirectories(ref.getParent());
            Path tmp = Files.createTempFile(ref.getParent(), ref.getFileName() + ".", ".tmp");
            Files.writeString(tmp, commit);
            Files.move(tmp, ref, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        } catch (IOException e) {
            throw ShrinkException.at(ref, "cannot write the revision's ref: " + e.getMessage(), e);
        }
    }

    // ---- small helpers ----------------------------------------------------------------------------------------

    private URI resolveUri(String repo, String commit, String file) {
        return URI.create(settings.endpoint() + "/" + repo + "/resolve/" + commit + "/" + encode(file, false));
    }

    /** Percent-encodes all but unreserved characters (and '/' unless {@code slash}), as urllib's quote does. */
    static String encode(String s, boolean slash) {
        StringBuilder b = new StringBuilder();
        for (byte x : s.getBytes(StandardCharsets.UTF_8)) {
            char c = (char) (x & 0xff);
            if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || "-._~".indexOf(c) >= 0
                    || (c == '/' && !slash)) {
                b.append(c);
            } else {
                b.append('%').append(String.format(Locale.ROOT, "%02X", x & 0xff));
            }
        }
        return b.toString();
    }

    /** huggingface_hub's {@code _normalize_etag}: drop a weak {@code W/} prefix and the quotes. */
    static String normalizeEtag(String etag) {
        String e = etag.trim();
        if (e.startsWith("W/")) {
            e = e.substring(2);
        }
        return e.replace("\"", "");
    }

    private static long parseSize(String s) {
        try {
            return Long.parseLong(s.trim());
        } catch (NumberFormatException e) {
            return -1;
        }
    }

    private static boolean isRedirect(int s) {
        return s == 301 || s == 302 || s == 303 || s == 307 || s == 308;
    }

    private static boolean sameOrigin(URI a, URI b) {
        return Objects.equals(lower(a.getScheme()), lower(b.getScheme())) && Objects.equals(lower(a.getHost()), lower(b.getHost()))
                && port(a) == port(b);
    }

    private static String lower(String s) {
        return s == null ? null : s.toLowerCase(Locale.ROOT);
    }

    private static int port(URI u) {
        return u.getPort() >= 0 ? u.getPort() : "https".equalsIgnoreCase(u.getScheme()) ? 443 : 80;
    }

    private static String origin(URI u) {
        return u.getScheme() + "://" + u.getRawAuthority();
    }

    private static String digest(Path file, String algorithm, byte[] prefix) throws IOException {
        MessageDigest md;
        try {
            md = MessageDigest.getInstance(algorithm);
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
        if (prefix != null) {
            md.update(prefix);
        }
        try (InputStream in = Files.newInputStream(file)) {
            byte[] buf = new byte[1 << 20];
            for (int n; (n = in.read(buf)) > 0; ) {
                md.update(buf, 0, n);
            }
        }
        return HexFormat.of().formatHex(md.digest());
    }

    private static void closeQuietly(Object body) {
        if (body instanceof InputStream in) {
            try {
                in.close();
            } catch (IOException ignored) {
                // the connection is dropped either way
            }
        }
    }

    private static void sleep(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new ShrinkException("interrupted");
        }
    }

    /** Counts bytes into a progress bar in KiB. */
    private static final class Bytes {
        private final Progress progress;
        private long bytes;
        private long shownKiB;

        Bytes(Progress progress) {
            this.progress = progress;
        }

        void add(long n) {
            bytes += n;
            long kib = bytes / 1024;
            if (kib != shownKiB) {
                progress.step(kib - shownKiB);
                shownKiB = kib;
            }
        }
    }

    /** The body of a download broke off (the connection closed or reset); resumable. */
    private static final class BodyInterrupted extends IOException {
        BodyInterrupted(String message) {
            super(message);
        }
    }

    /** No such model on the endpoint, offline and not cached, or no network: a mistyped path reads the same. */
    static final class NotHere extends ShrinkException {
        NotHere(String message) {
            super(message);
        }

        NotHere(String message, Throwable cause) {
            super(message, cause);
        }
    }
}
