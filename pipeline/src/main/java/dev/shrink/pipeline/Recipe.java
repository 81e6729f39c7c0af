package dev.shrink.pipeline;

import dev.shrink.calib.CalibSource;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * A comparison recipe (YAML, read strictly by {@link RecipeParser}): one model, the calibration
 * every stage uses unless it overrides it, the evaluation settings, whether the uncompressed
 * baseline is measured, and named pipelines, each a chain of stages.
 *
 * <pre>
 * model: ../../shared/models/fixture-llama-14m     # relative to this file
 * calibration: {dataset: c4, samples: 16, seqlen: 512, seed: 0}
 * evaluation: {datasets: [heldout], seqlen: 512, max_windows: 20, kl: {windows: 4},
 *              prompts: ["Once upon a time"], max_new_tokens: 24,
 *              speed: {prefill_tokens: 128, decode_tokens: 128, repeats: 5}}
 * baseline: true
 * pipelines:
 *   - {name: rtn-w4, stages: [{gptq: {method: rtn, bits: 4, group_size: 128}}]}
 *   - {name: wanda24-gptq4, stages: [{prune: {method: wanda, pattern: "2:4"}}, {gptq: {bits: 4}}]}
 * </pre>
 *
 * @param file        the recipe file, for messages and relative paths
 * @param model       the input model folder (absolute)
 * @param calibration the recipe's calibration defaults (each stage holds its effective settings)
 * @param baseline    measure the uncompressed model too (it is always the KL reference)
 */
public record Recipe(Path file, Path model, CalibSettings calibration, Evaluation evaluation, boolean baseline,
                     List<Pipeline> pipelines) {

    public Recipe {
        pipelines = List.copyOf(pipelines);
    }

    /** The name of the uncompressed model's row in reports. */
    public static final String BASELINE = "baseline";

    /**
     * Everything the recipe reads: the recipe file, the model, distillation teachers and data, every
     * calibration token file and dataset, the evaluation sets. A work dir must not hold nor lie inside one.
     */
    public List<Path> inputs() {
        List<Path> in = new ArrayList<>();
        in.add(file);
        in.add(model);
        addCalibration(in, calibration);
        evaluation.datasets().forEach(d -> in.addAll(CalibSource.inputPaths(d)));
        if (evaluation.kl() != null) {
            in.addAll(CalibSource.inputPaths(evaluation.kl().dataset()));
        }
        for (Pipeline p : pipelines) {
            for (StageSpec s : p.stages()) {
                addCalibration(in, s.calibration());
                if (s instanceof StageSpec.Distill d) {
                    in.add(d.teacher());
                    in.addAll(CalibSource.inputPaths(d.data()));
                }
            }
        }
        return in;
    }

    private static void addCalibration(List<Path> in, CalibSettings c) {
        if (c != null) {
            if (c.tokens() != null) {
                in.add(c.tokens());
            }
            in.addAll(CalibSource.inputPaths(c.dataset()));
        }
    }

    /**
     * Calibration data of a stage.
     *
     * @param dataset  a preset (c4, wikitext2, ptb, tinystories, heldout) or an absolute path
     * @param field    JSON field / column of path sources (null: "text")
     * @param tokens   a token-window file (absolute); wins over dataset
     * @param sampling "random" or "blocks"; null: the stage's default (GPTQ and prune random, AWQ blocks)
     */
    public record CalibSettings(String dataset, String field, int samples, int seqlen, long seed, Path tokens,
                                String sampling) {
    }

    /**
     * How each result is measured.
     *
     * @param datasets     perplexity sets: presets or absolute paths
     * @param seqlen       window length; null: the model's max_position_embeddings, at most 2048
     * @param maxWindows   the first N windows of each set (0: all)
     * @param kl           KL(baseline ‖ result) settings
     * @param prompts      prompts continued greedily, side by side in the report
     * @param maxNewTokens tokens generated per prompt
     * @param speed        prefill/decode speed settings
     * @param device       Ops backend (auto, cpu, cpu-reference); the CLI's --device wins
     * @param threads      CPU threads (0: all cores); the CLI's --threads wins
     */
    public record Evaluation(List<String> datasets, Integer seqlen, int maxWindows, Kl kl, List<String> prompts,
                             int maxNewTokens, SpeedSettings speed, String device, int threads,
                             dev.shrink.core.forward.KvCacheType kvCache) {
        public Evaluation {
            datasets = List.copyOf(datasets);
            prompts = List.copyOf(prompts);
        }
    }

    /** KL on the first {@code windows} windows (seqlen of the evaluation) of {@code dataset}; 0 windows: no KL. */
    public record Kl(String dataset, int windows) {
    }

    /** Speed at batch 1: a prompt of {@code prefillTokens}, then {@code decodeTokens} greedy steps; median of {@code repeats}. */
    public record SpeedSettings(int prefillTokens, int decodeTokens, int repeats) {
    }

    /** A named chain of stages, applied in order to the recipe's model. */
    public record Pipeline(String name, List<StageSpec> stages) {
        public Pipeline {
            stages = List.copyOf(stages);
        }
    }
}
