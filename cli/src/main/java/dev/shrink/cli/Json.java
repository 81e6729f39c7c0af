package dev.shrink.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import dev.shrink.pipeline.ReportJson;
import java.io.IOException;
import java.nio.file.Path;

/** JSON output for --json: pretty, written atomically when it goes to a file. */
final class Json {
    static final ObjectMapper MAPPER = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);

    private Json() {
    }

    static String write(Object value) {
        try {
            return MAPPER.writeValueAsString(value);
        } catch (IOException e) {
            throw new IllegalStateException(e);
        }
    }

    static void writeFile(Path file, Object value) {
        ReportJson.writeAtomically(file, write(value) + "\n");
    }
}
