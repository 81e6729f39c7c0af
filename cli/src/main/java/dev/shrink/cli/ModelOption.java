package dev.shrink.cli;

import dev.shrink.core.ShrinkException;
import java.nio.file.Path;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/**
 * The model a command reads, named the same way by every command: the positional {@code MODEL}
 * (the documented form), with {@code --model MODEL} accepted as an alias. Given both ways it must be
 * the same path; {@link HubOptions} turns it into a folder.
 */
public final class ModelOption {
    @Parameters(index = "0", arity = "0..1", paramLabel = "MODEL",
            description = "The model: a Hugging Face folder, or a Hugging Face id (org/name). "
                    + "--model MODEL is accepted too.")
    Path positional;

    @Option(names = "--model", hidden = true, paramLabel = "MODEL", description = "Same as the positional MODEL.")
    Path option;

    /** The model given, or null when neither form was used; both forms naming different paths is an error. */
    Path optional() {
        if (positional != null && option != null
                && !positional.normalize().equals(option.normalize())) {
            throw new ShrinkException("the model is given twice, as MODEL " + positional + " and --model " + option
                    + ": give it once");
        }
        return positional != null ? positional : option;
    }

    /** The model given; its absence is one line naming how to give it. */
    Path required(String command) {
        Path p = optional();
        if (p == null) {
            throw new ShrinkException("shrink " + command + " needs a model: shrink " + command
                    + " MODEL ... (a Hugging Face folder or org/name id)");
        }
        return p;
    }
}
