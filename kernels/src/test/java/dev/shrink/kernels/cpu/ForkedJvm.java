package dev.shrink.kernels.cpu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.fail;

import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * Runs a test class's main in a second JVM with this one's module flags and a smaller vector size
 * ({@code -XX:MaxVectorSize}), so that a test can compare the bits of other vector widths with its own.
 */
final class ForkedJvm {
    private ForkedJvm() {
    }

    /** The output of {@code main.main(args)} under -XX:MaxVectorSize=maxVectorBytes; fails on a non-zero exit or after 120 s. */
    static String run(Class<?> main, int maxVectorBytes, String... args) throws Exception {
        List<String> cmd = new ArrayList<>();
        cmd.add(java.nio.file.Path.of(System.getProperty("java.home"), "bin", "java").toString());
        List<String> in = ManagementFactory.getRuntimeMXBean().getInputArguments();
        for (int i = 0; i < in.size(); i++) {
            if (in.get(i).startsWith("--")) {
                cmd.add(in.get(i));
                if (!in.get(i).contains("=") && i + 1 < in.size() && !in.get(i + 1).startsWith("-")) {
                    cmd.add(in.get(++i)); // "--add-modules jdk.incubator.vector" as two arguments
                }
            }
        }
        if (cmd.stream().noneMatch(f -> f.contains("jdk.incubator.vector"))) {
            cmd.addAll(List.of("--add-modules", "jdk.incubator.vector"));
        }
        cmd.addAll(List.of("-XX:MaxVectorSize=" + maxVectorBytes, "-Xmx256m", "-XX:+UseSerialGC",
                "-cp", System.getProperty("java.class.path"), main.getName()));
        cmd.addAll(List.of(args));
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        byte[] out = p.getInputStream().readAllBytes();
        if (!p.waitFor(120, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            fail("-XX:MaxVectorSize=" + maxVectorBytes + " did not finish in 120 s");
        }
        String text = new String(out, StandardCharsets.UTF_8);
        assertEquals(0, p.exitValue(), "-XX:MaxVectorSize=" + maxVectorBytes + ":\n" + text);
        return text;
    }
}
