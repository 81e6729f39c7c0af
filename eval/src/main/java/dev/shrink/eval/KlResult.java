package dev.shrink.eval;

/**
 * KL(baseline ‖ candidate) on held-out windows.
 *
 * @param dataset   the text the windows come from
 * @param seqlen    window length
 * @param windows   windows compared (the first ones of the text)
 * @param positions positions compared (windows × seqlen): every position's next-token distribution
 * @param mean      mean KL per position, nats
 * @param max       the largest KL of one position, nats
 * @param seconds   wall time of the candidate's forward passes and the sums
 * @param backend   the Ops backend that ran
 */
public record KlResult(String dataset, int seqlen, int windows, long positions, double mean, double max, double seconds,
                       String backend) {
}
