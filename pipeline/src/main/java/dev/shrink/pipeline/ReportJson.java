package dev.shrink.pipeline;

import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.PropertyNamingStrategies;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.json.JsonMapper;
import dev.shrink.core.ShrinkException;
import dev.shrink.core.io.SafeFiles;
import dev.shrink.core.util.InputFiles;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/** JSON of reports and cache entries: snake_case keys, indented; files written atomically. */
public final class ReportJson {
    private ReportJson() {
    }

    static final ObjectMapper MAPPER = JsonMapper.builder()
            .propertyNamingStrategy(PropertyNamingStrategies.SNAKE_CASE)
            .enable(SerializationFeature.INDENT_OUTPUT)
            .disable(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES)
            .build();

    public static String write(Object value) {
        try {
            return MAPPER.writeValueAsString(value);
        } catch (IOException e) {
            throw new IllegalStateException("cannot serialize " + value.getClass().getSimpleName(), e);
        }
    }

    /** The value as a JSON tree (the same tree report.json holds). */
    public static JsonNode tree(Object value) {
        return MAPPER.valueToTree(value);
    }

    public static <T> T read(Path file, Class<T> type) throws IOException {
        return MAPPER.readValue(file.toFile(), type);
    }

    /** Reads a report.json (any version) as a tree, for the gate. */
    public static JsonNode readTree(Path file) {
        JsonNode n = dev.shrink.core.util.StrictJson.read(file, "no such file");
        if (!n.isObject() || !n.path("results").isArray()) {
            throw ShrinkException.at(file, "not a shrink compare report.json (no \"results\" list)");
        }
        return n;
    }

    /**
     * Writes text through {@link SafeFiles#writeString} (a unique temporary file renamed over
     * {@code file}; a target that is not a regular file is refused), creating missing folders.
     */
    public static void writeAtomically(Path file, String text) {
        Path abs = file.toAbsolutePath();
        try {
            Files.createDirectories(abs.getParent());
        } catch (IOException e) {
            throw ShrinkException.at(file, "cannot write: " + SafeFiles.describe(e), e);
        }
        SafeFiles.writeString(file, text);
    }
}
