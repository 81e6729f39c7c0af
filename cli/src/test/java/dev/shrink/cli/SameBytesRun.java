package dev.shrink.cli;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

/**
 * The commands {@link SameBytesEverywhereTest} runs in one forked JVM (one JVM per vector width and
 * thread count, so that the JIT and the Vector API's preferred species are those of its flags):
 * GPTQ, AWQ, magnitude and Wanda pruning of stories260K-hf, two distillation steps of a student
 * without layers 1 and 3, and evaluations of the model and of the GPTQ folder. Arguments: the output folder, the model folder, the thread count.
 * Exits with the first failing command's code, after printing its output.
 */
final class SameBytesRun {
    private SameBytesRun() {
    }

    public static void main(String[] args) throws Exception {
        Path out = Path.of(args[0]);
        String model = args[1], threads = args[2];
        Files.createDirectories(out);
        List<String> calib = List.of("--calib-dataset", "tinystories", "--calib-samples", "4", "--calib-seqlen", "64");
        String gptq = out.resolve("gptq").toString();
        List<List<String>> commands = List.of(
                concat(List.of("gptq", model, "--work-dir", gptq, "--w-group-size", "32"), calib),
                concat(List.of("awq", model, "--work-dir", out.resolve("awq").toString(), "--w-group-size", "32",
                        "--skip-unfit"), calib),
                List.of("prune", model, "--work-dir", out.resolve("magnitude").toString(), "--method", "magnitude",
                        "--pattern", "2:4"),
                concat(List.of("prune", model, "--work-dir", out.resolve("wanda").toString(), "--method", "wanda",
                        "--sparsity", "0.5"), calib),
                List.of("distill", "--teacher", model, "--drop-layers", "1,3", "--work-dir",
                        out.resolve("distill").toString(), "--steps", "2", "--batch", "2", "--seqlen", "32",
                        "--eval-windows", "0", "--calib-dataset", "c4"),
                List.of("eval", "--model", model, "--dataset", "tinystories", "--max-windows", "4", "--json",
                        "-o", out.resolve("eval-model.json").toString()),
                List.of("eval", "--model", gptq, "--dataset", "tinystories", "--max-windows", "4", "--json",
                        "-o", out.resolve("eval-gptq.json").toString()));
        for (List<String> c : commands) {
            StringWriter log = new StringWriter();
            PrintWriter w = new PrintWriter(log, true);
            long t0 = System.nanoTime();
            int code = Main.run(concat(c, List.of("--threads", threads, "-q")).toArray(String[]::new), w, w);
            System.out.printf(java.util.Locale.ROOT, "%s: %.1f s%n", c.get(0), (System.nanoTime() - t0) / 1e9);
            if (code != 0) {
                System.err.println("shrink " + String.join(" ", c) + " exited with " + code + ":\n" + log);
                System.exit(code);
            }
        }
        System.exit(0);
    }

    private static List<String> concat(List<String> a, List<String> b) {
        return java.util.stream.Stream.concat(a.stream(), b.stream()).toList();
    }
}
