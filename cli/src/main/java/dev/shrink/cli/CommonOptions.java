package dev.shrink.cli;

import dev.shrink.core.ops.Backends;
import dev.shrink.core.ops.Ops;
import picocli.CommandLine.Option;

/** Options every command shares. */
public final class CommonOptions {
    @Option(names = "--device", defaultValue = "auto", paramLabel = "DEV",
            description = "Compute backend: auto (cuda when a GPU and its libraries work here, else cpu), cuda, "
                    + "cpu, cpu-reference. Default: ${DEFAULT-VALUE}.")
    String device;

    @Option(names = "--threads", defaultValue = "0", paramLabel = "N",
            description = "CPU threads (0 = all cores; the cuda backend ignores it).")
    int threads;

    @Option(names = {"-q", "--quiet"}, description = "No progress bar.")
    boolean quiet;

    @Option(names = "--debug", description = "Print stack traces with errors.")
    boolean debug;

    Ops ops() {
        return Backends.select(device, threads);
    }
}
