package dev.shrink.pipeline;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.MapperFeature;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.json.JsonMapper;
import dev.shrink.core.ShrinkException;
import dev.shrink.core.Version;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

/**
 * Content keys of the cache (hex SHA-256):
 * <ul>
 *   <li>the input model: every byte of its {@code *.safetensors} files, its JSON files (config,
 *       index, tokenizer, generation config; not shrink-report.json) and {@code tokenizer.model},
 *       each preceded by its name and size. All bytes, not only the safetensors headers: a
 *       fine-tuned checkpoint saved over the same folder keeps every header (names, shapes, offsets)
 *       and changes only the data, and a header-only key would serve stale results for it.
 *       Measured here: SHA-256 runs at ~1 GB/s (JDK 25, warm page cache), 0.03 s for the 27 MB
 *       fixture, ~14 s for a 7B model in bf16, small next to any compression of such a model;</li>
 *   <li>a stage's output: SHA-256 of the canonical JSON (keys sorted) of the input's key, the
 *       stage kind and its resolved options, the calibration windows' fingerprint
 *       ({@code TokenWindows.fingerprint}; null for stages that read none) and Shrink's version;
 *       for a distill stage also its teacher's key (a model key as above: the teacher by content).
 *       A distill stage's training text enters by its option (preset names, file paths), not by
 *       content;</li>
 *   <li>a result's measurements: the model's key, the baseline's key (KL is against it), the
 *       evaluation settings, the backend and threads.</li>
 * </ul>
 */
public final class Keys {
    private Keys() {
    }

    /** Bumped when what a key covers changes. */
    static final int FORMAT = 1;

    static final ObjectMapper CANONICAL = JsonMapper.builder()
            .enable(MapperFeature.SORT_PROPERTIES_ALPHABETICALLY)
            .enable(SerializationFeature.ORDER_MAP_ENTRIES_BY_KEYS)
            .build();

    /** The canonical JSON of a value: maps and record properties in key order, no spaces. */
    public static String canonicalJson(Object value) {
        try {
            return CANONICAL.writeValueAsString(value);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException("cannot serialize " + value, e);
        }
    }

    public static String sha256(String text) {
        return HexFormat.of().formatHex(digest().digest(text.getBytes(StandardCharsets.UTF_8)));
    }

    /** The key of a model folder given as input (see the class comment). */
    public static String modelKey(Path dir) {
        List<Path> files;
        try (Stream<Path> s = Files.list(dir)) {
            files = s.filter(Files::isRegularFile).filter(Keys::hashed).sorted().toList();
        } catch (IOException e) {
            throw ShrinkException.at(dir, "cannot list the model folder: " + e.getMessage(), e);
        }
        if (files.stream().noneMatch(f -> f.getFileName().toString().equals("config.json"))) {
            throw ShrinkException.at(dir, "no config.json: not a Hugging Face model folder");
        }
        MessageDigest sha = digest();
        byte[] buf = new byte[1 << 20];
        for (Path f : files) {
            try (InputStream in = Files.newInputStream(f)) {
                sha.update((f.getFileName() + "\n" + Files.size(f) + "\n").getBytes(StandardCharsets.UTF_8));
                for (int n; (n = in.read(buf)) > 0; ) {
                    sha.update(buf, 0, n);
                }
            } catch (IOException e) {
                throw ShrinkException.at(f, "cannot read: " + e.getMessage(), e);
            }
        }
        return HexFormat.of().formatHex(sha.digest());
    }

    private static boolean hashed(Path f) {
        String n = f.getFileName().toString();
        return n.endsWith(".safetensors") || (n.endsWith(".json") && !n.equals("shrink-report.json"))
                || n.equals("tokenizer.model");
    }

    /** The key of a stage's output. {@code fingerprint}: the calibration windows', or null when the stage reads none. */
    public static String stageKey(String inputKey, StageSpec stage, String fingerprint) {
        return stageKey(inputKey, stage, fingerprint, null);
    }

    /** {@link #stageKey(String, StageSpec, String)} with the key of the stage's teacher model (distill), or null. */
    public static String stageKey(String inputKey, StageSpec stage, String fingerprint, String teacherKey) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("format", FORMAT);
        m.put("tool", Version.VERSION);
        m.put("input", inputKey);
        m.put("stage", stage.kind());
        m.put("options", stage.options());
        m.put("calibration", fingerprint);
        if (teacherKey != null) {
            m.put("teacher", teacherKey);
        }
        return sha256(canonicalJson(m));
    }

    /** The key of a result's measurements. */
    public static String resultKey(String modelKey, String baselineKey, Object evaluation, String backend, int threads) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("format", FORMAT);
        m.put("tool", Version.VERSION);
        m.put("model", modelKey);
        m.put("baseline", baselineKey);
        m.put("evaluation", evaluation);
        m.put("backend", backend);
        m.put("threads", threads);
        return sha256(canonicalJson(m));
    }

    private static MessageDigest digest() {
        try {
            return MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("SHA-256 is missing from this JDK", e);
        }
    }
}
