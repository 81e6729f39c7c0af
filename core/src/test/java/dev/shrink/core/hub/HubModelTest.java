package dev.shrink.core.hub;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shrink.core.ShrinkException;
import dev.shrink.core.model.ModelDir;
import java.io.IOException;
import java.io.PrintStream;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Resolving Hugging Face ids: the cache layout of huggingface_hub, downloads from a local fake Hub, errors. */
class HubModelTest {
    /** The files of stories260K that Shrink fetches (README.md and pytorch_model.bin are never fetched). */
    static final List<String> FETCHED = List.of("config.json", "generation_config.json", "model.safetensors",
            "tokenizer.json", "tokenizer_config.json");

    @TempDir
    Path tmp;
    Path cache;
    FakeHub hub;

    @BeforeEach
    void start() throws IOException {
        cache = tmp.resolve("hub");
        hub = new FakeHub();
    }

    @AfterEach
    void stop() {
        hub.close();
    }

    private HubModel model(String token, boolean offline) {
        return new HubModel(new HubSettings(hub.endpoint(), token, cache, offline), true);
    }

    private HubModel model() {
        return model("hf_secret", false);
    }

    /** Builds {@code models--org--name} as huggingface_hub's hf_hub_download leaves it. */
    static Path premadeCache(Path cache, String repo, String revision, String commit, Map<String, byte[]> files)
            throws IOException {
        Path repoDir = cache.resolve("models--" + repo.replace("/", "--"));
        Path snap = repoDir.resolve("snapshots").resolve(commit);
        Files.createDirectories(repoDir.resolve("blobs"));
        Files.createDirectories(snap);
        for (Map.Entry<String, byte[]> e : files.entrySet()) {
            String etag = FakeHub.etag(e.getKey(), e.getValue());
            Files.write(repoDir.resolve("blobs").resolve(etag), e.getValue());
            Files.createSymbolicLink(snap.resolve(e.getKey()), Path.of("../../blobs/" + etag));
        }
        if (!revision.equals(commit)) {
            Files.createDirectories(repoDir.resolve("refs"));
            Files.writeString(repoDir.resolve("refs").resolve(revision), commit);
        }
        return snap;
    }

    private Map<String, byte[]> storiesFiles() {
        Map<String, byte[]> m = new TreeMap<>(hub.repos.get(FakeHub.STORIES));
        m.keySet().retainAll(FETCHED);
        return m;
    }

    /** Every path under {@code root} (relative), with a symlink's target after "->". */
    static List<String> layout(Path root) throws IOException {
        try (Stream<Path> s = Files.walk(root)) {
            return s.filter(p -> !p.equals(root)).map(p -> {
                String rel = root.relativize(p).toString();
                try {
                    return Files.isSymbolicLink(p) ? rel + " -> " + Files.readSymbolicLink(p) : rel;
                } catch (IOException e) {
                    throw new IllegalStateException(e);
                }
            }).sorted().toList();
        }
    }

    @Test
    void aPremadeCacheIsUsedWithoutTheNetwork() throws IOException {
        Path snap = premadeCache(cache, FakeHub.STORIES, "main", FakeHub.COMMIT, storiesFiles());
        hub.close(); // nothing answers any more
        HubModel online = new HubModel(new HubSettings("http://127.0.0.1:" + closedPort(), null, cache, false), true);
        assertEquals(snap, online.resolve(FakeHub.STORIES, "main"));
        assertEquals(snap, online.resolve(FakeHub.STORIES, FakeHub.COMMIT)); // a commit needs no ref
        assertEquals(snap, model(null, true).resolve(FakeHub.STORIES, "main"));
        try (ModelDir dir = ModelDir.open(snap)) {
            assertEquals(storiesFiles().get("config.json").length, Files.size(dir.dir().resolve("config.json")));
            assertFalse(dir.weights().names().isEmpty());
        }
    }

    @Test
    void downloadsIntoAnEmptyCacheExactlyAsHuggingFaceHubLaysItOut() throws IOException {
        Path snap = model().resolve(FakeHub.STORIES, "main");

        Path expected = tmp.resolve("expected");
        premadeCache(expected, FakeHub.STORIES, "main", FakeHub.COMMIT, storiesFiles());
        String folder = "models--test-org--stories";
        List<String> got = layout(cache.resolve(folder));
        assertEquals(layout(expected.resolve(folder)), got);
        assertEquals(cache.resolve(folder).resolve("snapshots").resolve(FakeHub.COMMIT), snap);
        assertEquals(FakeHub.COMMIT, Files.readString(cache.resolve(folder).resolve("refs/main")));
        for (String f : FETCHED) {
            assertArrayEquals(hub.repos.get(FakeHub.STORIES).get(f), Files.readAllBytes(snap.resolve(f)), f);
        }
        assertTrue(got.contains("snapshots/" + FakeHub.COMMIT + "/model.safetensors -> ../../blobs/"
                + FakeHub.sha256(hub.repos.get(FakeHub.STORIES).get("model.safetensors"))), got.toString());
        for (FakeHub.Request r : hub.requests()) {
            assertFalse(r.path().endsWith("README.md") || r.path().endsWith(".bin"), r.toString());
            // the token goes to the endpoint only, never to the CDN (another host)
            assertEquals(r.path().startsWith("/cdn/") ? null : "Bearer hf_secret", r.authorization(), r.toString());
        }
        try (ModelDir dir = ModelDir.open(snap)) {
            assertFalse(dir.weights().names().isEmpty());
            assertTrue(Files.isRegularFile(dir.tokenizerFile()));
        }
    }

    @Test
    void aSecondRunUsesTheCache() throws IOException {
        Path first = model().resolve(FakeHub.STORIES, "main");
        assertTrue(hub.count("GET") > 0);
        hub.requests.clear();
        assertEquals(first, model().resolve(FakeHub.STORIES, "main"));
        assertEquals(List.of(), hub.requests());
    }

    @Test
    void aTagAndACommitResolveToTheSameSnapshot() throws IOException {
        Path byTag = model().resolve(FakeHub.STORIES, FakeHub.TAG);
        Path repoDir = cache.resolve("models--test-org--stories");
        assertEquals(FakeHub.COMMIT, Files.readString(repoDir.resolve("refs/" + FakeHub.TAG)));
        assertFalse(Files.exists(repoDir.resolve("refs/main")));
        hub.requests.clear();
        assertEquals(byTag, model().resolve(FakeHub.STORIES, FakeHub.COMMIT));
        assertEquals(List.of(), hub.requests());
    }

    @Test
    void anInterruptedDownloadResumesWithARange() throws IOException {
        hub.cutAfter = 300_000;
        Path snap = model().resolve(FakeHub.STORIES, "main");
        byte[] weights = hub.repos.get(FakeHub.STORIES).get("model.safetensors");
        assertArrayEquals(weights, Files.readAllBytes(snap.resolve("model.safetensors")));
        List<FakeHub.Request> cdn = hub.requests().stream().filter(r -> r.path().startsWith("/cdn/")).toList();
        assertEquals(2, cdn.size(), cdn.toString());
        assertNull(cdn.get(0).range());
        // the server cut the body after 300,000 bytes; a dropped connection may lose some in flight
        long from = Long.parseLong(cdn.get(1).range().replaceAll("^bytes=(\\d+)-$", "$1"));
        assertTrue(from > 0 && from <= 300_000, cdn.get(1).range());
    }

    @Test
    void aBrokenOffRunLeavesAnIncompleteBlobThatTheNextRunContinues() throws IOException {
        hub.cutAfter = 300_000;
        hub.failAfterCut = true;
        ShrinkException e = assertThrows(ShrinkException.class, () -> model().resolve(FakeHub.STORIES, "main"));
        assertTrue(e.getMessage().contains("HTTP 503"), e.getMessage());
        byte[] weights = hub.repos.get(FakeHub.STORIES).get("model.safetensors");
        Path blobs = cache.resolve("models--test-org--stories/blobs");
        Path part = blobs.resolve(FakeHub.sha256(weights) + ".incomplete");
        long kept = Files.size(part); // the 300,000 bytes sent before the cut, less any lost in flight
        assertTrue(kept > 0 && kept <= 300_000, "kept " + kept);
        assertFalse(Files.exists(blobs.resolve(FakeHub.sha256(weights))));
        assertFalse(Files.exists(cache.resolve("models--test-org--stories/refs/main")));

        hub.failAfterCut = false;
        hub.requests.clear();
        Path snap = model().resolve(FakeHub.STORIES, "main");
        assertArrayEquals(weights, Files.readAllBytes(snap.resolve("model.safetensors")));
        assertEquals(List.of("bytes=" + kept + "-"), hub.requests().stream().filter(r -> r.path().startsWith("/cdn/"))
                .map(FakeHub.Request::range).toList());
        assertFalse(Files.exists(part));
    }

    @Test
    void aCorruptBodyFailsTheSha256CheckAndLeavesNoBlob() throws IOException {
        hub.corrupt = true;
        ShrinkException e = assertThrows(ShrinkException.class, () -> model().resolve(FakeHub.STORIES, "main"));
        String sha = FakeHub.sha256(hub.repos.get(FakeHub.STORIES).get("model.safetensors"));
        assertTrue(e.getMessage().startsWith("test-org/stories: model.safetensors: corrupt download: the bytes' sha256 is "),
                e.getMessage());
        assertTrue(e.getMessage().contains("the Hub's ETag says " + sha), e.getMessage());
        assertFalse(e.getMessage().contains("\n"));
        Path repoDir = cache.resolve("models--test-org--stories");
        assertFalse(Files.exists(repoDir.resolve("blobs").resolve(sha)));
        assertFalse(Files.exists(repoDir.resolve("blobs").resolve(sha + ".incomplete")));
        assertFalse(Files.exists(repoDir.resolve("snapshots").resolve(FakeHub.COMMIT).resolve("model.safetensors"),
                LinkOption.NOFOLLOW_LINKS));
    }

    @Test
    void onlyTheShardsTheIndexNamesAreFetched() throws IOException {
        Path snap = model().resolve(FakeHub.SHARDED, "main");
        assertTrue(Files.isRegularFile(snap.resolve("model-00001-of-00001.safetensors")));
        assertFalse(Files.exists(snap.resolve("consolidated.safetensors"), LinkOption.NOFOLLOW_LINKS));
        assertTrue(hub.requests().stream().noneMatch(r -> r.path().contains("consolidated")), hub.requests().toString());
        try (ModelDir dir = ModelDir.open(snap)) {
            assertFalse(dir.weights().names().isEmpty());
        }
    }

    @Test
    void aRenamedRepositoryIsFollowedAndCachedUnderTheNameGiven() throws IOException {
        Path snap = model().resolve(FakeHub.RENAMED, "main");
        assertEquals(cache.resolve("models--old-org--stories/snapshots").resolve(FakeHub.COMMIT), snap);
        assertTrue(Files.isRegularFile(snap.resolve("model.safetensors")));
    }

    @Test
    void aGatedRepositorySaysToSetHfToken() {
        String url = hub.endpoint() + "/test-org/gated";
        ShrinkException e = assertThrows(ShrinkException.class, () -> model(null, false).resolve(FakeHub.GATED, "main"));
        assertEquals("test-org/gated is gated or private: set HF_TOKEN to a token with access to test-org/gated "
                + "(accept its terms at " + url + ")", e.getMessage());
        ShrinkException withToken = assertThrows(ShrinkException.class, () -> model().resolve(FakeHub.GATED, "main"));
        assertEquals("HF_TOKEN is not accepted for test-org/gated (HTTP 401): set HF_TOKEN to a token with access to "
                + "test-org/gated (accept its terms at " + url + ")", withToken.getMessage());
        assertFalse(Files.exists(cache.resolve("models--test-org--gated")));
    }

    @Test
    void aMissingModelOrRevisionIsNamed() {
        ShrinkException e = assertThrows(ShrinkException.class, () -> model().resolve("test-org/nope", "main"));
        assertEquals("no model test-org/nope on " + hub.endpoint(), e.getMessage());
        ShrinkException rev = assertThrows(ShrinkException.class, () -> model().resolve(FakeHub.STORIES, "v9"));
        assertEquals("model test-org/stories has no revision v9 on " + hub.endpoint(), rev.getMessage());
    }

    @Test
    void offlineAndNotCachedNamesTheCacheAndTouchesNoNetwork() {
        ShrinkException e = assertThrows(ShrinkException.class, () -> model(null, true).resolve(FakeHub.STORIES, "main"));
        assertEquals("HF_HUB_OFFLINE=1 and test-org/stories@main is not in the cache at "
                + cache.resolve("models--test-org--stories"), e.getMessage());
        assertEquals(List.of(), hub.requests());
    }

    @Test
    void anUnreachableHubIsOneLine() throws IOException {
        int port = closedPort();
        HubModel m = new HubModel(new HubSettings("http://127.0.0.1:" + port, null, cache, false), true);
        ShrinkException e = assertThrows(ShrinkException.class, () -> m.resolve(FakeHub.STORIES, "main"));
        assertTrue(e.getMessage().startsWith("cannot reach http://127.0.0.1:" + port + " for test-org/stories ("),
                e.getMessage());
        assertTrue(e.getMessage().endsWith("check the network and HF_ENDPOINT, or set HF_HUB_OFFLINE=1 to use only the cache"));
    }

    @Test
    void progressAndTheDownloadLineGoToTheLog() throws IOException {
        var bytes = new java.io.ByteArrayOutputStream();
        try (PrintStream log = new PrintStream(bytes, true)) {
            new HubModel(new HubSettings(hub.endpoint(), null, cache, false), false, log).resolve(FakeHub.STORIES, "main");
        }
        String s = bytes.toString();
        assertTrue(s.startsWith("downloading test-org/stories@main (commit 0123456789ab, 5 files, "), s);
    }

    @Test
    void repoIds() {
        for (String ok : List.of("org/name", "TinyLlama/TinyLlama-1.1B-Chat-v1.0", "a/b", "user_1/m.v2")) {
            assertTrue(HubModel.isRepoId(ok), ok);
        }
        for (String no : List.of("name", "/abs/path", "./dir", "../x/y", "a/b/c", "org/-x", "org/x.", "a--b/c",
                "org/name.git", "org/", "dir/sub dir", "C:/x")) {
            assertFalse(HubModel.isRepoId(no), no);
        }
    }

    @Test
    void settingsReadTheEnvironmentAsHuggingFaceHubDoes() throws IOException {
        Path home = tmp.resolve("home");
        HubSettings d = HubSettings.from(Map.of(), home);
        assertEquals(home.resolve(".cache/huggingface/hub"), d.cacheDir());
        assertEquals("https://huggingface.co", d.endpoint());
        assertNull(d.token());
        assertFalse(d.offline());
        assertEquals(tmp.resolve("x/huggingface/hub"), HubSettings.from(Map.of("XDG_CACHE_HOME", tmp.resolve("x").toString()), home).cacheDir());
        assertEquals(tmp.resolve("h/hub"), HubSettings.from(Map.of("HF_HOME", tmp.resolve("h").toString()), home).cacheDir());
        assertEquals(tmp.resolve("c"), HubSettings.from(Map.of("HF_HOME", "/elsewhere", "HF_HUB_CACHE",
                tmp.resolve("c").toString()), home).cacheDir());
        Files.createDirectories(tmp.resolve("h"));
        Files.writeString(tmp.resolve("h/token"), "hf_fromfile\n");
        assertEquals("hf_fromfile", HubSettings.from(Map.of("HF_HOME", tmp.resolve("h").toString()), home).token());
        assertEquals("hf_env", HubSettings.from(Map.of("HF_HOME", tmp.resolve("h").toString(), "HF_TOKEN", "hf_env"), home).token());
        assertEquals("http://mirror", HubSettings.from(Map.of("HF_ENDPOINT", "http://mirror/"), home).endpoint());
        for (String on : List.of("1", "ON", "yes", "True")) {
            assertTrue(HubSettings.from(Map.of("HF_HUB_OFFLINE", on), home).offline(), on);
        }
        assertFalse(HubSettings.from(Map.of("HF_HUB_OFFLINE", "0"), home).offline());
        assertFalse(new HubSettings(null, "hf_secret", home, false).toString().contains("hf_secret"));
    }

    private static int closedPort() throws IOException {
        try (ServerSocket s = new ServerSocket(0)) {
            return s.getLocalPort();
        }
    }
}
