package dev.shrink.cli;

import dev.shrink.core.ShrinkException;
import dev.shrink.core.forward.KvCacheType;
import picocli.CommandLine.Option;

/**
 * {@code --kv-cache fp16|int8|int4} and LMDeploy's name for it, {@code --quant-policy 0|8|4}, for
 * the commands that run the decoder (eval, generate); docs/KV_CACHE.md.
 */
public final class KvCacheOptions {
    @Option(names = "--kv-cache", paramLabel = "fp16|int8|int4",
            description = "Keys and values as the KV cache holds them: fp16 (as computed), or int8 / int4 quantized "
                    + "per token and KV head, asymmetric, fp16 scale and zero point (LMDeploy's online scheme; "
                    + "simulated on the CPU: attention reads them through the quantizer). Default: fp16.")
    String kvCache;

    @Option(names = "--quant-policy", paramLabel = "0|8|4", description = "LMDeploy's name for --kv-cache: 8 = int8, 4 = int4, 0 = fp16.")
    Integer quantPolicy;

    /** The KV cache type asked for (fp16 when neither option is given). */
    KvCacheType type() {
        KvCacheType a = kvCache == null ? null : KvCacheType.parse(kvCache, "--kv-cache");
        KvCacheType b = quantPolicy == null ? null : KvCacheType.fromQuantPolicy(quantPolicy, "--quant-policy");
        if (a != null && b != null && a != b) {
            throw new ShrinkException("--kv-cache " + kvCache + " and --quant-policy " + quantPolicy
                    + " disagree: give one of them");
        }
        return a != null ? a : b != null ? b : KvCacheType.FP16;
    }
}
