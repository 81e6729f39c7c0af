package dev.shrink.pipeline;

import dev.shrink.core.transform.RotatedModel;
import dev.shrink.pipeline.Recipe.CalibSettings;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * One stage of a pipeline, with every option resolved (defaults filled in) and its effective
 * calibration (the recipe's, overridden by the stage's own {@code calibration:} keys). The options'
 * names are the recipe's (snake_case, as the CLI's).
 */
public sealed interface StageSpec permits StageSpec.Gptq, StageSpec.Awq, StageSpec.Prune, StageSpec.Distill {

    /** "gptq", "awq", "prune" or "distill": the YAML key. */
    String kind();

    /** The calibration windows this stage reads, or null when it reads none (RTN, magnitude pruning). */
    CalibSettings calibration();

    /** The options that decide the output, by their recipe names: the canonical form hashed into cache keys. */
    Map<String, Object> options();

    /** Whether the output is a packed (quantized) folder that no later stage can take as input. */
    boolean packedOutput();

    /**
     * "gptq(bits=4, group_size=128, ...)" for messages and reports. An option left to the method's
     * default (null, e.g. prune's scope) is left out rather than shown as "scope=null".
     */
    default String describe() {
        StringBuilder sb = new StringBuilder(kind()).append('(');
        int i = 0;
        for (Map.Entry<String, Object> e : options().entrySet()) {
            if (e.getValue() == null) {
                continue;
            }
            sb.append(i++ == 0 ? "" : ", ").append(e.getKey()).append('=').append(e.getValue());
        }
        return sb.append(')').toString();
    }

    /**
     * A quantizing stage's rotation in its options: "rotate" and "rotate_seed" only when on, so the cache
     * keys of the stages without rotation stay what they were.
     */
    private static void putRotate(Map<String, Object> m, RotatedModel.Settings rotate) {
        if (rotate != null) {
            m.put("rotate", true);
            m.put("rotate_seed", rotate.seed());
            m.put("rotate_heads", rotate.heads());
        }
    }

    /**
     * GPTQ or round-to-nearest, as {@code shrink gptq}. {@code awqScales} and {@code gptaq} enter
     * {@link #options()} only when on, so that the cache keys of stages without them stay as they were.
     *
     * @param rotate the rotation before quantizing ({@code --rotate}), or null for none
     */
    record Gptq(String method, int bits, int groupSize, boolean sym, boolean actOrder, boolean staticGroups,
                boolean trueSequential, double damp, boolean mse, int blockSize, int batch, CalibSettings calibSettings,
                boolean awqScales, boolean gptaq, RotatedModel.Settings rotate)
            implements StageSpec {
        /** Without the refinements and rotation. */
        public Gptq(String method, int bits, int groupSize, boolean sym, boolean actOrder, boolean staticGroups,
                    boolean trueSequential, double damp, boolean mse, int blockSize, int batch, CalibSettings calibSettings) {
            this(method, bits, groupSize, sym, actOrder, staticGroups, trueSequential, damp, mse, blockSize, batch,
                    calibSettings, false, false, null);
        }

        @Override
        public String kind() {
            return "gptq";
        }

        @Override
        public CalibSettings calibration() {
            return method.equals("rtn") ? null : calibSettings;
        }

        @Override
        public Map<String, Object> options() {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("method", method);
            m.put("bits", bits);
            m.put("group_size", groupSize);
            m.put("sym", sym);
            m.put("act_order", actOrder);
            m.put("static_groups", staticGroups);
            m.put("true_sequential", trueSequential);
            m.put("damp", damp);
            m.put("mse", mse);
            if (awqScales) {
                m.put("awq_scales", true);
            }
            if (gptaq) {
                m.put("gptaq", true);
            }
            m.put("block_size", blockSize);
            m.put("batch", batch);
            putRotate(m, rotate);
            return m;
        }

        @Override
        public boolean packedOutput() {
            return true;
        }
    }

    /**
     * AWQ W4A16, as {@code shrink awq}; export "gemm" (packed) or "fake" (dequantized fp16, composable).
     *
     * @param rotate the rotation before quantizing ({@code --rotate}), or null for none
     */
    record Awq(int bits, int groupSize, boolean duoScaling, boolean clip, boolean skipUnfit, String export, int batch,
               CalibSettings calibSettings, RotatedModel.Settings rotate) implements StageSpec {
        /** Without rotation. */
        public Awq(int bits, int groupSize, boolean duoScaling, boolean clip, boolean skipUnfit, String export, int batch,
                   CalibSettings calibSettings) {
            this(bits, groupSize, duoScaling, clip, skipUnfit, export, batch, calibSettings, null);
        }

        @Override
        public String kind() {
            return "awq";
        }

        @Override
        public CalibSettings calibration() {
            return calibSettings;
        }

        @Override
        public Map<String, Object> options() {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("bits", bits);
            m.put("group_size", groupSize);
            m.put("duo_scaling", duoScaling);
            m.put("clip", clip);
            m.put("skip_unfit", skipUnfit);
            m.put("export", export);
            m.put("batch", batch);
            putRotate(m, rotate);
            return m;
        }

        @Override
        public boolean packedOutput() {
            return export.equals("gemm");
        }
    }

    /**
     * Pruning (the prune module's PruneStage).
     *
     * @param pattern  "unstructured" or "N:M" (in each group of M consecutive input weights keep N)
     * @param sparsity fraction of weights zeroed: given for unstructured, 1 − N/M for N:M
     * @param scope    layer, row or global; null: the method's default
     * @param targets  linears to prune (names or suffixes; empty: every decoder linear)
     * @param ignore   linears to leave dense
     */
    record Prune(String method, String pattern, double sparsity, String scope, List<String> targets, List<String> ignore,
                 int batch, CalibSettings calibSettings) implements StageSpec {
        public Prune {
            targets = List.copyOf(targets);
            ignore = List.copyOf(ignore);
        }

        @Override
        public String kind() {
            return "prune";
        }

        @Override
        public CalibSettings calibration() {
            return method.equals("magnitude") ? null : calibSettings;
        }

        @Override
        public Map<String, Object> options() {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("method", method);
            m.put("pattern", pattern);
            m.put("sparsity", sparsity);
            m.put("scope", scope);
            m.put("targets", targets);
            m.put("ignore", ignore);
            m.put("batch", batch);
            return m;
        }

        @Override
        public boolean packedOutput() {
            return false;
        }
    }

    /**
     * Knowledge distillation (the distill module's DistillRun): the stage's input model is the
     * student, {@code teacher} the model it imitates (the recipe's model unless the stage names one).
     * The teacher enters the cache key by its content, not its path (see {@link Keys#stageKey}).
     *
     * @param teacher the teacher folder, absolute
     * @param data    training text sources (comma-separated presets or absolute paths)
     */
    record Distill(Path teacher, int steps, int batch, int microBatch, int seqlen, double lr, int warmup, double clip,
                   double weightDecay, double temperature, double alpha, String loss, double hiddenWeight, String data,
                   long seed) implements StageSpec {
        @Override
        public String kind() {
            return "distill";
        }

        @Override
        public CalibSettings calibration() {
            return null; // draws its own random training windows from `data`
        }

        @Override
        public Map<String, Object> options() {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("steps", steps);
            m.put("batch", batch);
            m.put("micro_batch", microBatch);
            m.put("seqlen", seqlen);
            m.put("lr", lr);
            m.put("warmup", warmup);
            m.put("clip", clip);
            m.put("weight_decay", weightDecay);
            m.put("temperature", temperature);
            m.put("alpha", alpha);
            m.put("loss", loss);
            m.put("hidden_weight", hiddenWeight);
            m.put("data", data);
            m.put("seed", seed);
            return m;
        }

        @Override
        public boolean packedOutput() {
            return false;
        }
    }
}
