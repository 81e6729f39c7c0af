package dev.shrink.cli;

import dev.shrink.calib.CalibSource;
import dev.shrink.calib.CalibSpec;
import dev.shrink.core.safetensors.TokenWindows;
import dev.shrink.core.ShrinkException;
import dev.shrink.core.io.SafeFiles;
import dev.shrink.core.model.ModelConfig;
import dev.shrink.core.ops.Ops;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.LinkedHashMap;
import java.util.Map;
import picocli.CommandLine.Option;

/**
 * The calibration options every compression command shares, named as LMDeploy's {@code lite}
 * names them, and the report entries that say which windows a run used.
 */
public final class CalibOptions {
    @Option(names = "--calib-dataset", defaultValue = "c4", paramLabel = "NAME|PATH", description = "c4, wikitext2, ptb, tinystories, heldout, pileval (../shared/datasets) or a .txt/.jsonl/.arrow/.parquet file or folder. Default: ${DEFAULT-VALUE}.")
    String dataset;

    @Option(names = "--calib-field", paramLabel = "NAME", description = "JSON field / column holding the text (default: text).")
    String field;

    @Option(names = "--calib-samples", defaultValue = "128", paramLabel = "N", description = "Calibration sequences. Default: ${DEFAULT-VALUE}.")
    int samples;

    @Option(names = "--calib-seqlen", defaultValue = "512", paramLabel = "T", description = "Tokens per sequence. Default: ${DEFAULT-VALUE}.")
    int seqlen;

    @Option(names = "--calib-tokens", paramLabel = "FILE", description = "Read the sequences from a safetensors file (input_ids int32 [n, seqlen]); wins over --calib-dataset.")
    Path tokens;

    @Option(names = "--save-calib-tokens", paramLabel = "FILE", description = "Save the sequences used, for an exactly repeatable run.")
    Path saveTokens;

    @Option(names = "--seed", defaultValue = "0", description = "Seed of random windows (Python random.seed semantics). Default: ${DEFAULT-VALUE}.")
    long seed;

    void validate() {
        if (samples < 1 || seqlen < 1) {
            throw new ShrinkException("--calib-samples and --calib-seqlen must be positive");
        }
    }

    CalibSpec spec(String sampling) {
        return new CalibSpec(dataset, field, samples, seqlen, seed, tokens, sampling);
    }

    /** The files and folders these options read: the token file, else the dataset's. */
    List<Path> inputs() {
        return tokens != null ? List.of(tokens) : CalibSource.inputPaths(dataset);
    }

    /**
     * Refuses, before any work, a --save-calib-tokens file that exists and is not a regular file, or
     * that is an input (the token file read) or lies inside one (the model).
     */
    void checkSave(Path model) {
        if (saveTokens != null) {
            SafeFiles.checkFileTarget(saveTokens);
            List<Path> inputs = new ArrayList<>(inputs());
            inputs.add(model);
            SafeFiles.checkApart(saveTokens, inputs, "the calibration tokens");
        }
    }

    /**
     * Warns, as eval does for its --seqlen, when calibration windows are longer than the model's
     * max_position_embeddings (positions it was not trained on).
     */
    void warnLong(int[][] windows, ModelConfig config, PrintWriter err) {
        if (windows.length > 0) {
            warnLongerThanPositions(tokens != null ? "--calib-tokens " + tokens + ": windows of" : "--calib-seqlen",
                    windows[0].length, config, err);
        }
    }

    /** One warning line when {@code length} tokens exceed the model's max_position_embeddings. */
    static void warnLongerThanPositions(String option, int length, ModelConfig config, PrintWriter err) {
        if (length > config.maxPositions()) {
            err.println("shrink: warning: " + option + " " + length + " exceeds max_position_embeddings "
                    + config.maxPositions());
            err.flush();
        }
    }

    /** Saves the windows when --save-calib-tokens asks for it. */
    void save(int[][] windows) {
        if (saveTokens != null) {
            TokenWindows.write(saveTokens, windows);
        }
    }

    /** The report's "calibration" entry: where the windows came from, their shape and fingerprint. */
    Map<String, Object> report(int[][] windows, String sampling) {
        Map<String, Object> calib = new LinkedHashMap<>();
        calib.put("source", tokens != null ? tokens.toString() : dataset);
        calib.put("sampling", sampling);
        calib.put("samples", windows.length);
        calib.put("seqlen", windows[0].length);
        calib.put("seed", seed);
        calib.put("fingerprint_sha256", TokenWindows.fingerprint(windows));
        return calib;
    }

    /** The head every stage report starts with: stage, tool and runtime versions, backend, source. */
    static Map<String, Object> reportHead(String stage, Path model, Ops ops) {
        Map<String, Object> report = new LinkedHashMap<>();
        report.put("stage", stage);
        report.put("tool", dev.shrink.core.Version.tool());
        report.put("java", Runtime.version().toString());
        report.put("backend", ops.name());
        report.put("source_model", model.toAbsolutePath().normalize().toString());
        return report;
    }
}
