package dev.shrink.cli;

import dev.shrink.core.safetensors.ModelFolderWriter;
import dev.shrink.core.util.StrictJson;
import dev.shrink.pipeline.ReportJson;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;

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

    /**
     * The --json document of a command that writes a model folder (docs/JSON.md): the command, the
     * folder, its bytes on disk and the shrink-report.json it holds.
     */
    static Map<String, Object> folderResult(String command, Path workDir) {
        Map<String, Object> doc = new LinkedHashMap<>();
        doc.put("command", command);
        doc.put("output", workDir.toAbsolutePath().normalize().toString());
        doc.put("bytes", GptqCommand.folderBytes(workDir));
        doc.put("report", StrictJson.read(workDir.resolve(ModelFolderWriter.REPORT), "no such file"));
        return doc;
    }
}
