package dev.shrink.gptq;

import dev.shrink.core.ops.Backends;
import dev.shrink.eval.DeviceModel;
import dev.shrink.eval.Speed;
import dev.shrink.eval.SpeedResult;
import dev.shrink.kernels.cuda.CudaOps;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;

/**
 * Decode tok/s through eval's device path (the cuda backend's {@link Speed#measure}) of a dense folder
 * and of its GPTQ w4 g128 RTN quantization (GptqStage on the CPU, written to {@code --work}): each
 * folder loaded into a {@link DeviceModel}, a prompt fed token by token, then greedy decode steps.
 *
 * <pre>java -cp ... dev.shrink.gptq.DeviceSpeedBench DENSE_DIR [MORE_DIRS..] [--rtn WORK_DIR] [--prompt 32]
 *     [--decode 128] [--repeats 3]</pre>
 */
public final class DeviceSpeedBench {
    private DeviceSpeedBench() {
    }

    public static void main(String[] args) throws Exception {
        List<Path> folders = new ArrayList<>();
        Path rtnOut = null;
        int prompt = 32, decode = 128, repeats = 3;
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--rtn" -> rtnOut = Path.of(args[++i]);
                case "--prompt" -> prompt = Integer.parseInt(args[++i]);
                case "--decode" -> decode = Integer.parseInt(args[++i]);
                case "--repeats" -> repeats = Integer.parseInt(args[++i]);
                default -> folders.add(Path.of(args[i]));
            }
        }
        if (folders.isEmpty()) {
            System.err.println("DeviceSpeedBench: name a model folder");
            System.exit(2);
        }
        int[] ids = new int[prompt];
        ids[0] = 1;
        for (int i = 1; i < prompt; i++) {
            ids[i] = 3 + (int) ((i * 2654435761L) % 8000);
        }
        try (CudaOps ops = (CudaOps) Backends.select("cuda", 0)) {
            measure(ops, folders, ids, prompt, decode, repeats);
            if (rtnOut != null) {
                long t0 = System.nanoTime();
                GptqStage.compress(folders.get(0), rtnOut, new GptqStage.Config("rtn", QuantScheme.of(4, 128, false), false,
                        false, true, 0.01, 128, 1), new int[][] {{1, 2, 3, 4}}, new LinkedHashMap<>(), "shrink:bench",
                        Backends.select("cpu", 0), true, true);
                System.out.printf(Locale.ROOT, "RTN w4 g128 of %s -> %s in %.1f s%n", folders.get(0), rtnOut,
                        (System.nanoTime() - t0) / 1e9);
                measure(ops, List.of(rtnOut), ids, prompt, decode, repeats);
            }
        }
    }

    private static void measure(CudaOps ops, List<Path> folders, int[] ids, int prompt, int decode, int repeats) {
        for (Path f : folders) {
            {
                long t0 = System.nanoTime();
                try (DeviceModel dm = DeviceModel.load(f, ops.device(), prompt + decode)) {
                    double load = (System.nanoTime() - t0) / 1e9;
                    SpeedResult r = Speed.measure(dm, ids, decode, repeats, ops.name());
                    long bytes = dm.decoder().weightBytesPerToken();
                    System.out.printf(Locale.ROOT, "%s: loaded in %.1f s; %s%n  prompt %d (fed token by token) %.1f tok/s;"
                                    + " decode %d steps: %.1f tok/s (%.1f..%.1f over %d runs), %.3f GB weights/token, %.0f GB/s%n",
                            f, load, r.path(), prompt, r.prefillTokensPerSecond(), decode, r.decodeTokensPerSecond(),
                            r.decodeMin(), r.decodeMax(), repeats, bytes / 1e9, bytes * r.decodeTokensPerSecond() / 1e9);
                    System.out.printf(Locale.ROOT, "RESULT|evalspeed|%s|%.1f|%.1f|%.3f|%s%n", f.getFileName(),
                            r.decodeTokensPerSecond(), r.prefillTokensPerSecond(), bytes / 1e9, r.path());
                }
            }
        }
    }
}
