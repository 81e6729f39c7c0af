package dev.shrink.cli;

import dev.shrink.core.ShrinkException;
import dev.shrink.core.transform.RotatedModel;
import picocli.CommandLine.Option;

/** {@code --rotate [--rotate-seed N]} of the quantizing commands (docs/QUALITY.md, "Rotation"). */
final class RotateOptions {
    @Option(names = "--rotate", description = {
        "Before quantizing, fold the norms into the linears and rotate the residual stream by a seeded",
        "random Hadamard matrix (QuaRot-style, exact in float): outliers spread, quantization error drops.",
        "The output is the usual folder (norm weights 1; a tied head is written untied)."})
    boolean rotate;

    @Option(names = "--rotate-seed", paramLabel = "N", description = "Seed of the rotation's random signs (with --rotate). Default: 0.")
    Long seed;

    @Option(names = "--rotate-heads", description = "With --rotate: also rotate each attention head's values (v's outputs, o's inputs) by a Hadamard matrix of the head size.")
    boolean heads;

    /** What to rotate, or null without --rotate. */
    RotatedModel.Settings settings() {
        if ((seed != null || heads) && !rotate) {
            throw new ShrinkException((heads ? "--rotate-heads" : "--rotate-seed") + " goes with --rotate");
        }
        return rotate ? new RotatedModel.Settings(seed == null ? 0L : seed, heads) : null;
    }
}
