package dev.shrink.cli;

import dev.shrink.pipeline.ReportJson;
import java.nio.file.Path;

/**
 * JSON output for --json: Shrink's one JSON form ({@link ReportJson}: snake_case keys, as report.json),
 * pretty, written atomically when it goes to a file.
 */
final class Json {
    private Json() {
    }

    static String write(Object value) {
        return ReportJson.write(value);
    }

    static void writeFile(Path file, Object value) {
        ReportJson.writeAtomically(file, write(value) + "\n");
    }
}
