package dev.shrink.eval;

import dev.shrink.core.ShrinkException;
import dev.shrink.core.forward.WeightSource;
import dev.shrink.core.model.ModelDir;
import java.nio.file.Files;

/**
 * Chooses how a folder's weights become float32: as they are, dequantized (GPTQ, AWQ) or decompressed
 * (compressed-tensors sparse formats) per quantization_config.
 */
public final class WeightSources {
    private WeightSources() {
    }

    /** The folder's weights as the forward reads them: packed linears dequantized, fused tensors split ({@link FusedLinears}). */
    public static WeightSource forModel(ModelDir dir) {
        return dev.shrink.core.forward.FusedLinears.split(stored(dir), dir.spec(), dir.config());
    }

    /** The folder's tensors as stored: packed linears dequantized by their format's reader. */
    public static WeightSource stored(ModelDir dir) {
        var qc = dir.config().raw().get("quantization_config");
        if (qc == null || qc.isNull()) {
            // Older AutoGPTQ folders keep their settings only in quantize_config.json.
            if (Files.isRegularFile(dir.dir().resolve("quantize_config.json"))) {
                return GptqWeightSource.forModel(dir);
            }
            // Older AutoAWQ folders keep theirs in quant_config.json.
            if (Files.isRegularFile(dir.dir().resolve(AwqWeightSource.QUANT_CONFIG))) {
                return AwqWeightSource.forModel(dir);
            }
            return WeightSource.of(dir.weights());
        }
        String method = qc.path("quant_method").asText("?");
        if (method.equalsIgnoreCase("gptq")) {
            return GptqWeightSource.forModel(dir);
        }
        if (method.equalsIgnoreCase("awq")) {
            return AwqWeightSource.forModel(dir);
        }
        if (method.equalsIgnoreCase("compressed-tensors")) {
            return CompressedSparseWeightSource.forModel(dir);
        }
        throw ShrinkException.at(dir.dir().resolve("config.json"),
                "quantization_config quant_method '" + method + "' is not readable yet");
    }
}
