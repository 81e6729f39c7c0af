package dev.shrink.cli;

import dev.shrink.core.ShrinkException;
import dev.shrink.core.hub.HubModel;
import java.nio.file.Files;
import java.nio.file.Path;
import picocli.CommandLine.Option;

/**
 * {@code --revision}, and the one way a command turns its model argument into a folder: a local
 * path when it exists, else a Hugging Face id ({@code org/name}) found in the Hub cache or downloaded
 * into it ({@link HubModel}). Output folders never go through here.
 */
public final class HubOptions {
    @Option(names = "--revision", paramLabel = "REV",
            description = "Branch, tag or commit of a model given as a Hugging Face id (org/name; default main). "
                    + "An id that is not a local folder is read from the Hugging Face cache (HF_HUB_CACHE) or "
                    + "downloaded from the Hub (HF_ENDPOINT, HF_TOKEN; HF_HUB_OFFLINE=1: cache only).")
    String revision;

    private boolean usedId;

    /** The model's folder (null stays null); --revision with a local folder is an error. */
    Path resolve(Path model, boolean quiet) {
        Path p = resolveAny(model, quiet);
        checkRevisionUsed(model);
        return p;
    }

    /** For commands that take several models: --revision applies to those given as ids. */
    Path resolveAny(Path model, boolean quiet) {
        if (model == null) {
            return null;
        }
        Path p = HubModel.resolveArgument(model, model.toString(), revision, quiet);
        usedId |= p != model;
        return p;
    }

    /** After {@link #resolveAny}: a --revision that no model used is an error, not silently ignored. */
    void checkRevisionUsed(Path local) {
        if (revision != null && !usedId && local != null && Files.exists(local)) {
            throw ShrinkException.at(local, "is a local folder; --revision " + revision
                    + " applies to Hugging Face ids (org/name) only");
        }
    }
}
