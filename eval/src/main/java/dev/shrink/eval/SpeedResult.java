package dev.shrink.eval;

/**
 * Prefill and decode speed at batch 1 ({@link Speed}): medians of {@code repeats} timed runs with the
 * spread (slowest, fastest), tokens per second.
 *
 * @param promptTokens tokens of the prompt (one forward: the prefill)
 * @param decodeTokens tokens generated one at a time with the KV cache, greedy
 * @param backend      the Ops backend that ran, with its threads
 * @param path         what ran the forward passes: "host CausalLM" (the Ops backend op by op) or the
 *                     device-resident decoder ("device-resident W4A16 GEMV ...", {@link DeviceModel#path})
 */
public record SpeedResult(int promptTokens, int decodeTokens, int repeats, double prefillTokensPerSecond,
                          double prefillMin, double prefillMax, double decodeTokensPerSecond, double decodeMin,
                          double decodeMax, String backend, String path) {
    /** The host path's result. */
    public SpeedResult(int promptTokens, int decodeTokens, int repeats, double prefillTokensPerSecond,
                       double prefillMin, double prefillMax, double decodeTokensPerSecond, double decodeMin,
                       double decodeMax, String backend) {
        this(promptTokens, decodeTokens, repeats, prefillTokensPerSecond, prefillMin, prefillMax, decodeTokensPerSecond,
                decodeMin, decodeMax, backend, HOST);
    }

    /** The path of {@link Speed#measure(dev.shrink.core.forward.CausalLM, int[], int, int)}. */
    public static final String HOST = "host CausalLM";
}
