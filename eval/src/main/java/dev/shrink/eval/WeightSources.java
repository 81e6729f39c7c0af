package dev.shrink.eval;

import dev.shrink.core.ShrinkException;
import dev.shrink.core.forward.WeightSource;
import dev.shrink.core.model.ModelDir;

/** Chooses how a folder's weights become float32: as they are, or dequantized per quantization_config. */
public final class WeightSources {
    private WeightSources() {
    }

    public static WeightSource forModel(ModelDir dir) {
        var qc = dir.config().raw().get("quantization_config");
        if (qc == null || qc.isNull()) {
            return WeightSource.of(dir.weights());
        }
        String method = qc.path("quant_method").asText("?");
        throw ShrinkException.at(dir.dir().resolve("config.json"),
                "quantization_config quant_method '" + method + "' is not readable yet");
    }
}
