package dev.shrink.core.util;

import com.fasterxml.jackson.core.JacksonException;
import com.fasterxml.jackson.core.JsonLocation;
import com.fasterxml.jackson.core.StreamReadFeature;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.json.JsonMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.shrink.core.ShrinkException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.AccessDeniedException;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;

/**
 * The one way Shrink reads the JSON files of a model folder (read through {@link InputFiles}: a
 * regular file of bounded size, never a device or a pipe) (config.json, the safetensors index,
 * tokenizer.json, quantize_config.json, ...): UTF-8 without a byte-order mark, exactly one JSON
 * value with nothing but whitespace after it, and no key twice in one object (Jackson would
 * otherwise keep the last one silently, and Python's json module does the same, so a duplicate
 * is almost always a hand edit gone wrong). Every problem is one {@link ShrinkException} line
 * "FILE: problem (line L, column C)".
 */
public final class StrictJson {
    private StrictJson() {
    }

    /** The strict reader: duplicate keys and trailing content are errors. */
    public static final JsonMapper MAPPER = JsonMapper.builder()
            .enable(StreamReadFeature.STRICT_DUPLICATE_DETECTION)
            .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)
            .build();

    /** Reads {@code file} as one JSON value; {@code missing} is the problem said when it does not exist. */
    public static JsonNode read(Path file, String missing) {
        byte[] bytes;
        try {
            bytes = InputFiles.readBytes(file, InputFiles.JSON_MAX_BYTES); // a regular file, bounded
        } catch (NoSuchFileException e) {
            throw ShrinkException.at(file, missing, e);
        } catch (AccessDeniedException e) {
            throw ShrinkException.at(file, "permission denied", e);
        } catch (IOException e) {
            throw ShrinkException.at(file, "cannot read: " + oneLine(e.getMessage(), e), e);
        }
        return parse(file, bytes);
    }

    /** Reads {@code file} as a JSON object. */
    public static ObjectNode readObject(Path file, String missing) {
        JsonNode root = read(file, missing);
        if (!(root instanceof ObjectNode o)) {
            throw ShrinkException.at(file, "not a JSON object (found " + kind(root) + ")");
        }
        return o;
    }

    /** Parses {@code bytes}, the content of {@code file}, as one JSON value. */
    public static JsonNode parse(Path file, byte[] bytes) {
        String text = utf8(file, bytes, "");
        JsonNode root;
        try {
            root = MAPPER.readTree(text);
        } catch (JacksonException e) {
            throw ShrinkException.at(file, "not valid JSON: " + describe(e), e);
        }
        if (root == null || root.isMissingNode()) {
            throw ShrinkException.at(file, "is empty (expected JSON)");
        }
        return root;
    }

    /**
     * {@code bytes} decoded as UTF-8, strictly: a byte-order mark, UTF-16/32 text or an invalid
     * byte sequence is an error naming {@code file} ({@code what} says which part, e.g. "header ").
     */
    public static String utf8(Path file, byte[] bytes, String what) {
        if (bytes.length >= 3 && (bytes[0] & 0xFF) == 0xEF && (bytes[1] & 0xFF) == 0xBB && (bytes[2] & 0xFF) == 0xBF) {
            throw ShrinkException.at(file, what + "starts with a UTF-8 byte-order mark; JSON here must be plain UTF-8");
        }
        if (bytes.length >= 2 && ((bytes[0] & 0xFF) == 0xFE && (bytes[1] & 0xFF) == 0xFF
                || (bytes[0] & 0xFF) == 0xFF && (bytes[1] & 0xFF) == 0xFE)) {
            throw ShrinkException.at(file, what + "is UTF-16 (it starts with a UTF-16 byte-order mark); JSON here must be UTF-8");
        }
        try {
            return StandardCharsets.UTF_8.newDecoder()
                    .onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT)
                    .decode(ByteBuffer.wrap(bytes)).toString();
        } catch (CharacterCodingException e) {
            throw ShrinkException.at(file, what + "is not valid UTF-8 text", e);
        }
    }

    /** Jackson's problem and where it is, on one line. */
    public static String describe(JacksonException e) {
        String m = oneLine(e.getOriginalMessage(), e);
        if (m.contains("FAIL_ON_TRAILING_TOKENS")) {
            m = "content after the end of the JSON value";
        }
        JsonLocation at = e.getLocation();
        if (at != null && at.getLineNr() > 0) {
            m += " (line " + at.getLineNr() + ", column " + at.getColumnNr() + ")";
        }
        return m;
    }

    /** "an array", "a string", ... for messages. */
    public static String kind(JsonNode n) {
        if (n == null || n.isMissingNode()) {
            return "nothing";
        }
        return switch (n.getNodeType()) {
            case ARRAY -> "an array";
            case OBJECT, POJO -> "an object";
            case STRING -> "a string";
            case NUMBER -> "a number";
            case BOOLEAN -> "a boolean";
            case NULL -> "null";
            default -> n.getNodeType().toString().toLowerCase(java.util.Locale.ROOT);
        };
    }

    private static String oneLine(String m, Throwable e) {
        if (m == null || m.isBlank()) {
            m = e.getClass().getSimpleName();
        }
        int nl = m.indexOf('\n');
        return (nl >= 0 ? m.substring(0, nl) : m).strip();
    }
}
