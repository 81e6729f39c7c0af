package dev.shrink.eval;

import dev.shrink.core.forward.KvCacheType;
import dev.shrink.core.model.ModelDir;
import java.util.Locale;
import java.util.Optional;

/**
 * What {@code shrink estimate} predicts for a batch-1 speed measurement on the GPU it ran on: the
 * decode floor (weights and KV cache read once per token at the datasheet bandwidth), to set beside
 * the measured decode rate ("measured / estimated"). Prefill is not compared: the speed measurement
 * feeds the prompt token by token.
 *
 * @param gpu                   the known GPU the device's name denotes ({@link Gpu#forDeviceName})
 * @param decodeTokensPerSecond the estimate's upper bound at batch 1
 */
public record SpeedEstimate(String gpu, double decodeTokensPerSecond) {

    /** The estimate for {@code dir} on the device named {@code deviceName}, or empty for an unknown GPU. */
    public static Optional<SpeedEstimate> of(ModelDir dir, String deviceName, KvCacheType kv, int promptTokens,
                                             int decodeTokens) {
        Optional<Gpu> gpu = Gpu.forDeviceName(deviceName);
        if (gpu.isEmpty()) {
            return Optional.empty();
        }
        MemoryEstimate.Dims d = MemoryEstimate.Dims.of(dir.config(), dir.dir().toString());
        MemoryEstimate.KvDtype kvType = switch (kv) {
            case FP16 -> MemoryEstimate.KvDtype.FP16;
            case INT8 -> MemoryEstimate.KvDtype.INT8;
            case INT4 -> MemoryEstimate.KvDtype.INT4;
        };
        MemoryEstimate e = MemoryEstimate.estimate(d, MemoryEstimate.folderWeights(dir.weights()),
                new MemoryEstimate.Workload(1, promptTokens, decodeTokens), kvType, false, gpu.get());
        return Optional.of(new SpeedEstimate(gpu.get().id(), e.decode().tokensPerSecondPerSequence()));
    }

    /** "decode 381.8 tok/s is 41% of the h100 datasheet floor's 930.2". */
    public String versus(double measuredDecode) {
        return String.format(Locale.ROOT, "decode is %.0f%% of the %s estimate (%.1f tok/s: weights and KV cache read "
                + "once per token at the datasheet bandwidth)", 100 * measuredDecode / decodeTokensPerSecond, gpu,
                decodeTokensPerSecond);
    }
}
