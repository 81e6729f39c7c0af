package dev.shrink.awq;

import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.shrink.core.forward.WeightSource;
import dev.shrink.core.model.ModelConfig;
import dev.shrink.core.model.ModelDir;
import dev.shrink.core.safetensors.TokenWindows;
import dev.shrink.core.synth.SyntheticModel;
import dev.shrink.kernels.cuda.CudaDevice;
import dev.shrink.kernels.cuda.CudaOps;
import dev.shrink.kernels.cuda.GemmMath;
import java.nio.file.Path;
import java.util.Locale;

/**
 * Times AWQ's GPU block loop ({@link DeviceAwq}) on a model folder, with a calibration token file
 * or random windows (128 × 2048 by default, the 7B job; a folder written by
 * {@code shrink synth --preset llama2-7b}). The codes come back to the host as in a real run and
 * are checked, then dropped. Prints the time, its phases and the peak GPU memory, and a last line
 * {@code RESULT|awq job|seconds|peak allocations GiB|peak device use GiB|details} for
 * scripts/device-bench.sh. A benchmark for a person to read, not a test.
 *
 * <pre>
 * AwqDeviceBench --model DIR [--calib-tokens FILE | --samples 128 --seqlen 2048] [--layers N]
 *                [--math tf32|fp32] [--group 128] [--no-clip] [--no-duo-scaling]
 * </pre>
 * {@code --layers N} runs the first N blocks only (a timing check; the per-block time is printed).
 */
public final class AwqDeviceBench {
    private AwqDeviceBench() {
    }

    public static void main(String[] args) {
        int samples = 128, seqlen = 2048, group = 128, layers = 0;
        boolean clip = true, duo = true;
        GemmMath math = GemmMath.TF32;
        Path model = null, calib = null;
        long seed = 0;
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            switch (a) {
                case "--model" -> model = Path.of(args[++i]);
                case "--calib-tokens" -> calib = Path.of(args[++i]);
                case "--samples" -> samples = Integer.parseInt(args[++i]);
                case "--seqlen" -> seqlen = Integer.parseInt(args[++i]);
                case "--layers" -> layers = Integer.parseInt(args[++i]);
                case "--group" -> group = Integer.parseInt(args[++i]);
                case "--no-clip" -> clip = false;
                case "--no-duo-scaling" -> duo = false;
                case "--math" -> math = GemmMath.parse(args[++i]);
                case "--seed" -> seed = Long.parseLong(args[++i]);
                default -> {
                    System.err.println("AwqDeviceBench: unknown option " + a);
                    System.exit(2);
                }
            }
        }
        if (model == null) {
            System.err.println("AwqDeviceBench: --model DIR is needed (shrink synth --preset llama2-7b writes one)");
            System.exit(2);
        }
        AwqStage.Config cfg = new AwqStage.Config(group, duo, clip, false, 8);
        try (CudaOps ops = CudaOps.open(0); ModelDir dir = ModelDir.open(model)) {
            ops.setMath(math);
            CudaDevice dev = ops.device();
            ModelConfig mc = dir.config();
            if (layers > 0 && layers < mc.layers()) {
                ObjectNode raw = mc.raw().deepCopy();
                raw.put("num_hidden_layers", layers);
                mc = ModelConfig.parse(raw, model.resolve("config.json"));
            }
            int[][] windows;
            if (calib != null) {
                windows = TokenWindows.read(calib);
            } else {
                windows = SyntheticModel.randomTokens(samples, seqlen, mc.vocab(), seed);
            }
            String job = model.getFileName() + (layers > 0 ? " (" + mc.layers() + " layers)" : "");
            String what = String.format(Locale.ROOT, "%s; %d x %d %s tokens; w4 g%d%s%s; %s", job, windows.length,
                    windows[0].length, calib != null ? "calibration" : "random", group, clip ? " clip" : "",
                    duo ? " duo" : "", math.label());
            System.out.println("AWQ on " + ops.name() + ": " + what);
            long[] maxUsed = {dev.usedMemory()};
            long[] checked = {0};
            dev.resetPeak();
            long t0 = System.nanoTime();
            DeviceAwq.Sink sink = (name, q) -> {
                maxUsed[0] = Math.max(maxUsed[0], dev.usedMemory());
                checked[0] += check(name, q);
            };
            AwqStage.Result res = DeviceAwq.run(mc, dir.spec(), WeightSource.of(dir.weights()), windows, cfg, ops, true, sink);
            double s = (System.nanoTime() - t0) / 1e9;
            double peakAlloc = dev.peakAllocatedBytes() / (double) (1L << 30);
            double peakUsed = maxUsed[0] / (double) (1L << 30);
            AwqStage.Phases p = res.phases();
            double ratio = res.scalePlans().stream().mapToDouble(ScalePlan::ratio).average().orElse(Double.NaN);
            System.out.printf(Locale.ROOT, "%d linears quantized, %d codes checked; %d scale plans (mean ratio %.3f),"
                    + " %d clip plans%n", res.layers().stream().filter(l -> l.status().equals("quantized")).count(),
                    checked[0], res.scalePlans().size(), ratio, res.clipPlans().size());
            System.out.printf(Locale.ROOT, "total %.1f s: statistics %.1f s, scale search %.1f s, clip search %.1f s,"
                    + " quantize %.1f s (%.2f s per block)%n", s, p.statistics(), p.scaleSearch(), p.clipSearch(),
                    p.quantize(), s / mc.layers());
            System.out.printf(Locale.ROOT, "peak GPU memory: %.2f GiB allocated by the loop, %.2f GiB in use on the"
                    + " device (cuMemGetInfo, with the context and the libraries' workspaces)%n", peakAlloc, peakUsed);
            System.out.printf(Locale.ROOT, "RESULT|awq %s|%.1f|%.2f|%.2f|%s%n", job, s, peakAlloc, peakUsed, what);
        }
    }

    /** Codes in range, scales positive and finite: a cheap sanity check of what came back. */
    private static long check(String name, dev.shrink.core.quant.QuantizedLinear q) {
        for (int c : q.codes()) {
            if (c < 0 || c > AwqQuantizer.MAXQ) {
                throw new IllegalStateException(name + ": code " + c);
            }
        }
        for (float x : q.scales()) {
            if (!(x > 0) || !Float.isFinite(x)) {
                throw new IllegalStateException(name + ": scale " + x);
            }
        }
        return (long) q.N() * q.K();
    }
}
