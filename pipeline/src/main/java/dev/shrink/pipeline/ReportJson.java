package dev.shrink.pipeline;

import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.PropertyNamingStrategies;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.json.JsonMapper;
import dev.shrink.core.ShrinkException;
import dev.shrink.core.util.InputFiles;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;

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
        try {
            JsonNode n = MAPPER.readTree(InputFiles.readBytes(file, InputFiles.JSON_MAX_BYTES));
            if (n == null || !n.isObject() || !n.path("results").isArray()) {
                throw ShrinkException.at(file, "not a shrink compare report.json (no \"results\" list)");
            }
            return n;
        } catch (java.io.FileNotFoundException | java.nio.file.NoSuchFileException e) {
            throw ShrinkException.at(file, "no such file");
        } catch (IOException e) {
            throw ShrinkException.at(file, "not valid JSON: " + e.getMessage().replace('\n', ' '), e);
        }
    }

    /** Writes text to a sibling temporary file and renames it over {@code file}. */
    public static void writeAtomically(Path file, String text) {
        Path abs = file.toAbsolutePath();
        Path tmp = abs.resolveSibling(abs.getFileName() + ".tmp");
        try {
            Files.createDirectories(abs.getParent());
            Files.writeString(tmp, text, StandardCharsets.UTF_8);
            Files.move(tmp, abs, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        } catch (IOException e) {
            try {
                Files.deleteIfExists(tmp);
            } catch (IOException ignored) {
                // the original error is the one to report
            }
            throw ShrinkException.at(file, "cannot write: " + e.getMessage(), e);
        }
    }
}
