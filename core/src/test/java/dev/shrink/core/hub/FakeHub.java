package dev.shrink.core.hub;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.sun.net.httpserver.Headers;
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A Hugging Face Hub on 127.0.0.1 (port 0) for tests, answering as huggingface.co does:
 * {@code GET /api/models/ORG/NAME/revision/REV} (sha, siblings), HEAD and GET on
 * {@code /ORG/NAME/resolve/REV/FILE} (ETag = git blob sha1 for small files; LFS files — *.safetensors,
 * *.bin — answer 302 to a "CDN" on http://localhost:PORT/cdn/SHA256 with X-Linked-Etag and X-Linked-Size),
 * Range requests (206), 401 + X-Error-Code GatedRepo for the gated repo, 307 to the new name for a
 * renamed one, 404 + RepoNotFound / RevisionNotFound / EntryNotFound otherwise. It records every
 * request and can break a body off, fail after that, or corrupt LFS bytes.
 */
final class FakeHub implements AutoCloseable {
    static final String STORIES = "test-org/stories";
    static final String SHARDED = "test-org/sharded";
    static final String GATED = "test-org/gated";
    static final String RENAMED = "old-org/stories";
    static final String COMMIT = "0123456789abcdef0123456789abcdef01234567";
    static final String TAG = "v1.0";

    /** One request as the server saw it. */
    record Request(String method, String path, String range, String authorization) {
    }

    final Map<String, Map<String, byte[]>> repos = new LinkedHashMap<>();
    final List<Request> requests = Collections.synchronizedList(new ArrayList<>());
    /** Break the next LFS body off after this many bytes (-1: never). */
    volatile long cutAfter = -1;
    /** After a cut body, answer every later GET with 503. */
    volatile boolean failAfterCut;
    /** Flip a byte in every LFS body. */
    volatile boolean corrupt;
    private volatile boolean cut;
    private final AtomicInteger port = new AtomicInteger();
    private final HttpServer server;

    FakeHub() throws IOException {
        Path src = stories260K();
        Map<String, byte[]> stories = new TreeMap<>();
        for (String f : List.of("config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                "tokenizer_config.json")) {
            stories.put(f, Files.readAllBytes(src.resolve(f)));
        }
        stories.put("README.md", "# stories260K\n".getBytes(StandardCharsets.UTF_8));
        stories.put("pytorch_model.bin", new byte[] {1, 2, 3}); // listed, never to be fetched
        repos.put(STORIES, stories);

        Map<String, byte[]> sharded = new TreeMap<>(stories);
        sharded.remove("model.safetensors");
        sharded.remove("pytorch_model.bin");
        byte[] weights = stories.get("model.safetensors");
        sharded.put("model-00001-of-00001.safetensors", weights);
        sharded.put("consolidated.safetensors", weights); // not in the index: never to be fetched
        sharded.put("model.safetensors.index.json", index(weights, "model-00001-of-00001.safetensors"));
        repos.put(SHARDED, sharded);

        server = HttpServer.create(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), 0);
        server.createContext("/", this::handle);
        server.start();
        port.set(server.getAddress().getPort());
    }

    static Path stories260K() {
        return Path.of(System.getProperty("shrink.shared", "../shared"), "models/stories260K-hf").toAbsolutePath()
                .normalize();
    }

    String endpoint() {
        return "http://127.0.0.1:" + port.get();
    }

    /** Requests other than the ones in {@code methods}... e.g. count("GET"). */
    long count(String method) {
        synchronized (requests) {
            return requests.stream().filter(r -> r.method().equals(method)).count();
        }
    }

    List<Request> requests() {
        synchronized (requests) {
            return List.copyOf(requests);
        }
    }

    static boolean isLfs(String file) {
        return file.endsWith(".safetensors") || file.endsWith(".bin");
    }

    /** The ETag the Hub gives: sha256 for LFS files, else the git blob sha1. */
    static String etag(String file, byte[] bytes) {
        return isLfs(file) ? sha256(bytes) : gitSha1(bytes);
    }

    static String sha256(byte[] b) {
        return digest("SHA-256", new byte[0], b);
    }

    static String gitSha1(byte[] b) {
        return digest("SHA-1", ("blob " + b.length + "\0").getBytes(StandardCharsets.US_ASCII), b);
    }

    private static String digest(String alg, byte[] prefix, byte[] b) {
        try {
            MessageDigest md = MessageDigest.getInstance(alg);
            md.update(prefix);
            return HexFormat.of().formatHex(md.digest(b));
        } catch (Exception e) {
            throw new IllegalStateException(e);
        }
    }

    /** model.safetensors.index.json putting every tensor of {@code weights} in {@code shard}. */
    private static byte[] index(byte[] weights, String shard) throws IOException {
        long n = 0;
        for (int i = 7; i >= 0; i--) {
            n = (n << 8) | (weights[i] & 0xff);
        }
        ObjectMapper om = new ObjectMapper();
        Map<String, Object> header = om.readValue(new String(weights, 8, (int) n, StandardCharsets.UTF_8), Map.class);
        Map<String, String> map = new TreeMap<>();
        for (String k : header.keySet()) {
            if (!k.equals("__metadata__")) {
                map.put(k, shard);
            }
        }
        return om.writeValueAsBytes(Map.of("metadata", Map.of("total_size", weights.length - 8 - n), "weight_map", map));
    }

    private void handle(HttpExchange ex) throws IOException {
        try (ex) {
            String method = ex.getRequestMethod();
            String path = ex.getRequestURI().getRawPath();
            requests.add(new Request(method, path, ex.getRequestHeaders().getFirst("Range"),
                    ex.getRequestHeaders().getFirst("Authorization")));
            Headers h = ex.getResponseHeaders();
            if (failAfterCut && cut && method.equals("GET")) {
                send(ex, 503, null);
                return;
            }
            String[] p = path.substring(1).split("/", 6);
            if (p.length == 2 && p[0].equals("cdn")) {
                for (Map<String, byte[]> files : repos.values()) {
                    for (Map.Entry<String, byte[]> e : files.entrySet()) {
                        if (isLfs(e.getKey()) && sha256(e.getValue()).equals(p[1])) {
                            body(ex, e.getValue(), true);
                            return;
                        }
                    }
                }
                send(ex, 404, null);
                return;
            }
            boolean api = p.length >= 5 && p[0].equals("api") && p[1].equals("models") && p[4].equals("revision");
            String repo = api ? p[2] + "/" + p[3] : p.length >= 2 ? p[0] + "/" + p[1] : "";
            if (repo.equals(RENAMED)) {
                String rest = api ? path.substring(("/api/models/" + RENAMED).length()) : path.substring(RENAMED.length() + 1);
                h.set("Location", (api ? "/api/models/" : "/") + STORIES + rest); // relative, as the Hub does
                send(ex, 307, null);
                return;
            }
            if (repo.equals(GATED)) {
                h.set("X-Error-Code", "GatedRepo");
                send(ex, 401, null);
                return;
            }
            Map<String, byte[]> files = repos.get(repo);
            if (files == null) {
                h.set("X-Error-Code", "RepoNotFound");
                send(ex, 404, null);
                return;
            }
            String rev = java.net.URLDecoder.decode(api ? p[5] : p.length >= 4 ? p[3] : "", StandardCharsets.UTF_8);
            if (!rev.equals("main") && !rev.equals(TAG) && !rev.equals(COMMIT)) {
                h.set("X-Error-Code", "RevisionNotFound");
                send(ex, 404, null);
                return;
            }
            if (api && p.length == 6) {
                List<Map<String, String>> siblings = files.keySet().stream().map(f -> Map.of("rfilename", f)).toList();
                send(ex, 200, new ObjectMapper().writeValueAsBytes(Map.of("id", repo, "sha", COMMIT, "siblings", siblings)));
                return;
            }
            if (p.length == 5 && p[2].equals("resolve")) {
                String file = p[4];
                byte[] bytes = files.get(file);
                if (bytes == null) {
                    h.set("X-Error-Code", "EntryNotFound");
                    send(ex, 404, null);
                    return;
                }
                h.set("X-Repo-Commit", COMMIT);
                if (isLfs(file)) {
                    h.set("ETag", "\"" + gitSha1(("version https://git-lfs.github.com/spec/v1\noid sha256:"
                            + sha256(bytes)).getBytes(StandardCharsets.UTF_8)) + "\""); // the pointer file's
                    h.set("X-Linked-Etag", "\"" + sha256(bytes) + "\"");
                    h.set("X-Linked-Size", Long.toString(bytes.length));
                    h.set("Location", "http://localhost:" + port.get() + "/cdn/" + sha256(bytes));
                    send(ex, 302, null);
                    return;
                }
                h.set("ETag", "\"" + gitSha1(bytes) + "\"");
                body(ex, bytes, false);
                return;
            }
            send(ex, 404, null);
        }
    }

    /** The bytes, honouring "Range: bytes=N-"; HEAD gets the headers only. */
    private void body(HttpExchange ex, byte[] all, boolean lfs) throws IOException {
        long from = 0;
        String range = ex.getRequestHeaders().getFirst("Range");
        if (range != null && range.startsWith("bytes=") && range.endsWith("-")) {
            from = Long.parseLong(range.substring(6, range.length() - 1));
            if (from >= all.length) {
                send(ex, 416, null);
                return;
            }
            ex.getResponseHeaders().set("Content-Range", "bytes " + from + "-" + (all.length - 1) + "/" + all.length);
        }
        int status = range != null ? 206 : 200;
        long len = all.length - from;
        if (ex.getRequestMethod().equals("HEAD")) {
            ex.getResponseHeaders().set("Content-Length", Long.toString(len));
            ex.sendResponseHeaders(status, -1);
            return;
        }
        byte[] out = java.util.Arrays.copyOfRange(all, (int) from, all.length);
        if (lfs && corrupt) {
            out[out.length / 2] ^= 0x55;
        }
        ex.sendResponseHeaders(status, len);
        OutputStream os = ex.getResponseBody();
        long limit = lfs ? cutAfter : -1;
        if (limit >= 0 && limit < len) {
            cutAfter = -1;
            cut = true;
            os.write(out, 0, (int) limit);
            os.flush();
            throw new UncheckedIOException(new IOException("cut")); // the server drops the connection mid-body
        }
        os.write(out);
    }

    private static void send(HttpExchange ex, int status, byte[] body) throws IOException {
        if (body == null) {
            ex.sendResponseHeaders(status, -1);
        } else {
            ex.getResponseHeaders().set("Content-Type", "application/json");
            ex.sendResponseHeaders(status, body.length);
            ex.getResponseBody().write(body);
        }
    }

    @Override
    public void close() {
        server.stop(0);
    }
}
