package dev.shrink.cli;

import dev.shrink.core.forward.MoeBlocks;
import picocli.CommandLine.Option;

/** {@code --expert-min-tokens} of the stages that calibrate a mixture of experts (docs/FORWARD.md, "Mixtures of experts"). */
final class ExpertOptions {
    @Option(names = "--expert-min-tokens", defaultValue = MoeBlocks.DEFAULT_MIN_TOKENS, paramLabel = "N|P%", description = {
        "Mixtures of experts: an expert the router sends fewer calibration tokens (a count, or a share of all",
        "of them) takes its statistics from every token of its block's MLP input instead (said per block in",
        "the report). Dense models ignore it. Default: ${DEFAULT-VALUE}."})
    String minTokens;

    /** The threshold, or a one-line error naming the option. */
    MoeBlocks.Threshold threshold() {
        return MoeBlocks.Threshold.parse(minTokens, "--expert-min-tokens");
    }
}
