package dev.shrink.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shrink.core.ShrinkException;
import dev.shrink.pipeline.Recipe;
import dev.shrink.pipeline.RecipeParser;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Every command's model argument goes through one resolution: a local folder, else a Hugging Face id
 * found in the Hub cache (here a temp cache laid out as huggingface_hub does, offline: no network).
 * The environment is given through HubSettings' system-property stand-ins.
 */
class HubModelArgumentTest {
    static final String REPO = "test-org/stories";
    static final String COMMIT = "0123456789abcdef0123456789abcdef01234567";
    static final List<String> PROPS = List.of("HF_HUB_CACHE", "HF_HUB_OFFLINE", "HF_ENDPOINT");

    @TempDir
    Path tmp;
    Path cache;
    Path snapshot;
    final Map<String, String> saved = new HashMap<>();

    @BeforeEach
    void cache() throws Exception {
        cache = tmp.resolve("hub");
        Path repoDir = cache.resolve("models--test-org--stories");
        snapshot = repoDir.resolve("snapshots").resolve(COMMIT);
        Files.createDirectories(repoDir.resolve("blobs"));
        Files.createDirectories(snapshot);
        Path src = CommandsTest.model("stories260K-hf");
        for (String f : List.of("config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                "tokenizer_config.json")) {
            byte[] b = Files.readAllBytes(src.resolve(f));
            String etag = f.endsWith(".safetensors") ? hex("SHA-256", new byte[0], b)
                    : hex("SHA-1", ("blob " + b.length + "\0").getBytes(StandardCharsets.US_ASCII), b);
            Files.write(repoDir.resolve("blobs").resolve(etag), b);
            Files.createSymbolicLink(snapshot.resolve(f), Path.of("../../blobs", etag));
        }
        Files.createDirectories(repoDir.resolve("refs"));
        Files.writeString(repoDir.resolve("refs/main"), COMMIT);
        Files.writeString(repoDir.resolve("refs/v1.0"), COMMIT);
        for (String name : PROPS) {
            saved.put(name, System.getProperty("shrink.hub.env." + name));
        }
        System.setProperty("shrink.hub.env.HF_HUB_CACHE", cache.toString());
        System.setProperty("shrink.hub.env.HF_HUB_OFFLINE", "1");
        System.setProperty("shrink.hub.env.HF_ENDPOINT", "http://127.0.0.1:9"); // never reached: offline
    }

    @AfterEach
    void restore() { // back to the build's settings (offline, a cache under target/)
        saved.forEach((name, v) -> {
            if (v == null) {
                System.clearProperty("shrink.hub.env." + name);
            } else {
                System.setProperty("shrink.hub.env." + name, v);
            }
        });
    }

    private static String hex(String alg, byte[] prefix, byte[] b) throws Exception {
        MessageDigest md = MessageDigest.getInstance(alg);
        md.update(prefix);
        return HexFormat.of().formatHex(md.digest(b));
    }

    @Test
    void commandsTakeAnIdFromTheCache() {
        BadInputTest.Run inspect = BadInputTest.shrink("inspect", "--model", REPO, "--json");
        assertEquals(0, inspect.code(), inspect.err());
        assertTrue(inspect.out().contains(snapshot.toString()), inspect.out());

        BadInputTest.Run tagged = BadInputTest.shrink("inspect", "--model", REPO, "--revision", "v1.0");
        assertEquals(0, tagged.code(), tagged.err());
        BadInputTest.Run byCommit = BadInputTest.shrink("estimate", REPO, "--revision", COMMIT);
        assertEquals(0, byCommit.code(), byCommit.err());

        BadInputTest.Run gen = BadInputTest.shrink("generate", "--model", REPO, "--prompt", "Once upon a time",
                "--max-new-tokens", "4", "-q");
        BadInputTest.Run local = BadInputTest.shrink("generate", "--model", CommandsTest.model("stories260K-hf").toString(),
                "--prompt", "Once upon a time", "--max-new-tokens", "4", "-q");
        assertEquals(0, gen.code(), gen.err());
        assertEquals(local.out(), gen.out(), "the cached snapshot is the same model as the folder");
    }

    @Test
    void anUncachedRevisionOfflineIsOneLineAndWritesNothing() {
        Path out = tmp.resolve("q");
        BadInputTest.Run r = BadInputTest.shrink("gptq", REPO, "--revision", "nope", "--work-dir", out.toString(),
                "--method", "rtn");
        assertEquals(2, r.code());
        assertEquals("shrink: error: HF_HUB_OFFLINE=1 and test-org/stories@nope is not in the cache at "
                + cache.resolve("models--test-org--stories") + " (and there is no local folder test-org/stories)\n", r.err());
        assertFalse(Files.exists(out));

        BadInputTest.Run missing = BadInputTest.shrink("eval", "--model", "test-org/missing", "-q");
        assertEquals(2, missing.code());
        assertEquals("shrink: error: HF_HUB_OFFLINE=1 and test-org/missing@main is not in the cache at "
                + cache.resolve("models--test-org--missing") + " (and there is no local folder test-org/missing)\n",
                missing.err());
    }

    @Test
    void aRevisionWithALocalFolderIsRefused() {
        Path local = CommandsTest.model("stories260K-hf");
        BadInputTest.Run r = BadInputTest.shrink("inspect", "--model", local.toString(), "--revision", "main");
        assertEquals(2, r.code());
        assertEquals("shrink: error: " + local + ": is a local folder; --revision main applies to Hugging Face ids "
                + "(org/name) only\n", r.err());
    }

    @Test
    void aRecipeNamesAnIdAsItsModel() throws IOException {
        Path file = tmp.resolve("r.yaml");
        Recipe r = RecipeParser.parse("model: test-org/stories\nrevision: v1.0\n"
                + "pipelines: [{name: d, stages: [{distill: {teacher: test-org/stories, steps: 1}}]}]\n", file);
        assertEquals(snapshot, r.model());
        assertTrue(r.pipelines().get(0).toString().contains(snapshot.toString()), "the teacher resolves too");
        ShrinkException e = assertThrows(ShrinkException.class, () -> RecipeParser.parse(
                "model: " + CommandsTest.model("stories260K-hf") + "\nrevision: main\npipelines: [{name: x, stages: [{gptq: {}}]}]\n",
                file));
        assertTrue(e.getMessage().startsWith(file.toAbsolutePath() + ": 'revision' applies to a model given as a "
                + "Hugging Face id"), e.getMessage());
    }
}
