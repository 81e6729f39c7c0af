package dev.shrink.eval;

/**
 * Prefill and decode speed at batch 1 ({@link Speed}): medians of {@code repeats} timed runs with the
 * spread (slowest, fastest), tokens per second.
 *
 * @param promptTokens tokens of the prompt (one forward: the prefill)
 * @param decodeTokens tokens generated one at a time with the KV cache, greedy
 * @param backend      the Ops backend that ran, with its threads
 */
public record SpeedResult(int promptTokens, int decodeTokens, int repeats, double prefillTokensPerSecond,
                          double prefillMin, double prefillMax, double decodeTokensPerSecond, double decodeMin,
                          double decodeMax, String backend) {
}
