package dev.shrink.cli;

import dev.shrink.core.ShrinkException;
import dev.shrink.core.ops.Backends;
import dev.shrink.core.ops.Ops;
import dev.shrink.kernels.cuda.CudaOps;
import dev.shrink.kernels.cuda.GemmMath;
import picocli.CommandLine.Option;

/** Options every command shares. */
public final class CommonOptions {
    @Option(names = "--device", defaultValue = "auto", paramLabel = "DEV",
            description = "Compute backend: auto (cuda when a GPU and its libraries work here, else cpu), cuda, "
                    + "cpu, cpu-reference. Default: ${DEFAULT-VALUE}.")
    String device;

    @Option(names = "--threads", defaultValue = "0", paramLabel = "N",
            description = "CPU threads: 0 = all cores, else 1 to 1024 (the cuda backend ignores it). Default: ${DEFAULT-VALUE}.")
    int threads;

    @Option(names = "--gpu-math", defaultValue = "fp32", paramLabel = "M",
            description = "GEMM arithmetic on the cuda backend: fp32 (float32: the CPU's results to rounding) or "
                    + "tf32 (tensor cores: GPTQ at 7B scale ~3x faster, GEMM errors ~1e-3 relative) or fp16 (eval: "
                    + "linears' weights kept fp16 on the GPU and multiplied with fp16-rounded activations, as "
                    + "transformers' fp16; other commands treat it as tf32). The CPU backends ignore it. "
                    + "Default: ${DEFAULT-VALUE}.")
    String gpuMath;

    @Option(names = {"-q", "--quiet"}, description = "No progress bar.")
    boolean quiet;

    @Option(names = "--json", description = "Print the results as JSON on stdout instead of text (keys: docs/JSON.md); "
            + "progress and warnings stay on stderr.")
    boolean json;

    @Option(names = "--debug", description = "Print stack traces with errors.")
    boolean debug;

    Ops ops() {
        GemmMath math;
        try {
            math = GemmMath.parse(gpuMath);
        } catch (IllegalArgumentException e) {
            throw new ShrinkException("--gpu-math " + gpuMath + ": " + e.getMessage());
        }
        Ops ops = Backends.select(device, threads);
        if (ops instanceof CudaOps cuda) {
            cuda.setMath(math);
        }
        return ops;
    }
}
