package dev.shrink.pipeline;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;

/**
 * What the cache knows of a stage output, beside its folder: {@code stages/<key>.json}. Written
 * after the folder is complete; the folder alone is what makes a stage cached (a missing or
 * unreadable record only loses the time it took).
 *
 * @param seconds wall time of the stage when it ran (calibration windows drawn before it excluded)
 */
record StageRecord(String key, String inputKey, String stage, Map<String, Object> options, String calibrationFingerprint,
                   double seconds, String created) {

    static void write(Path stagesDir, StageRecord r) {
        ReportJson.writeAtomically(stagesDir.resolve(r.key() + ".json"), ReportJson.write(r));
    }

    /** The recorded seconds, else the stage report's, else 0. */
    static double seconds(Path stagesDir, String key) {
        Path rec = stagesDir.resolve(key + ".json");
        try {
            if (Files.isRegularFile(rec)) {
                return ReportJson.read(rec, StageRecord.class).seconds();
            }
            Path report = stagesDir.resolve(key).resolve("shrink-report.json");
            if (Files.isRegularFile(report)) {
                return ReportJson.MAPPER.readTree(report.toFile()).path("seconds").asDouble(0);
            }
        } catch (IOException | RuntimeException e) {
            return 0;
        }
        return 0;
    }
}
