package dev.shrink.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.shrink.calib.SharedData;
import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The same output bytes on every CPU (README, "Determinism"): GPTQ, AWQ, magnitude and Wanda
 * pruning, distillation and evaluation ({@link SameBytesRun}) in forked JVMs whose preferred vector is 16, 8 and
 * 4 floats ({@code -XX:MaxVectorSize=64, 32, 16} on an AVX-512 CPU; on an AVX2 CPU 64 gives 8
 * floats like 32, so fewer widths are covered there),
 * with 2, 1 and 2 threads: every output file has the same SHA-256, except that
 * shrink-report.json and the evaluation JSON are compared without their timings and backend
 * description (and the evaluation without the evaluated folder's path). The reports' bytes are
 * compared otherwise, key order included.
 */
class SameBytesEverywhereTest {
    @TempDir
    Path tmp;

    /**
     * Keys of the JSON reports left out of the comparison: measured times and rates, and the
     * backend's description, which names the thread count.
     */
    private static boolean ignored(String key) {
        return key.contains("seconds") || key.endsWith("per_second") || key.equals("backend");
    }

    @Test
    void sameOutputsForEveryVectorWidthAndThreadCount() throws Exception {
        Path model = GptqCommandTest.stories();
        Map<String, String> first = null;
        String firstName = null;
        // three JVMs, not four: a thread count's effect shows as well next to another vector width
        for (int[] run : new int[][] {{64, 2}, {32, 1}, {16, 2}}) {
            String name = "-XX:MaxVectorSize=" + run[0] + " --threads " + run[1];
            Path out = tmp.resolve("v" + run[0] + "-t" + run[1]);
            fork(out, model, run[0], run[1]);
            Map<String, String> digests = digests(out);
            for (String stage : List.of("gptq", "awq", "magnitude", "wanda", "distill")) {
                assertTrue(digests.containsKey(stage + "/model.safetensors"), name + ": no " + stage + " weights");
                assertTrue(digests.containsKey(stage + "/config.json"), name + ": no " + stage + " config.json");
            }
            assertTrue(digests.containsKey("eval-model.json") && digests.containsKey("eval-gptq.json"), name);
            if (first == null) {
                first = digests;
                firstName = name;
            } else {
                assertEquals(first, digests, "outputs of " + firstName + " vs " + name + " (SHA-256 per file)");
            }
        }
    }

    /** Runs {@link SameBytesRun} in a JVM with this one's module flags, the given vector size and threads. */
    private static void fork(Path out, Path model, int maxVectorBytes, int threads) throws Exception {
        List<String> cmd = new ArrayList<>();
        cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        cmd.addAll(moduleFlags());
        cmd.add("-XX:MaxVectorSize=" + maxVectorBytes);
        cmd.add("-Xmx512m");
        cmd.add("-XX:+UseSerialGC"); // less CPU for a small heap on a busy machine
        cmd.add("-Dshrink.shared=" + SharedData.root().orElseThrow());
        cmd.add("-cp");
        cmd.add(System.getProperty("java.class.path"));
        cmd.add(SameBytesRun.class.getName());
        cmd.addAll(List.of(out.toString(), model.toString(), Integer.toString(threads)));
        Path log = Files.createDirectories(out.getParent()).resolve(out.getFileName() + ".log");
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(log.toFile()).start();
        if (!p.waitFor(180, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            fail("-XX:MaxVectorSize=" + maxVectorBytes + " --threads " + threads + " did not finish in 180 s");
        }
        assertEquals(0, p.exitValue(), "-XX:MaxVectorSize=" + maxVectorBytes + " --threads " + threads + ":\n"
                + Files.readString(log, StandardCharsets.UTF_8));
    }

    /** This JVM's {@code --} options (the pom's shrink.jvm.flags: the vector module, native access, ...). */
    private static List<String> moduleFlags() {
        List<String> in = ManagementFactory.getRuntimeMXBean().getInputArguments(), flags = new ArrayList<>();
        for (int i = 0; i < in.size(); i++) {
            String a = in.get(i);
            if (a.startsWith("--")) {
                flags.add(a);
                if (!a.contains("=") && i + 1 < in.size() && !in.get(i + 1).startsWith("-")) {
                    flags.add(in.get(++i)); // "--add-modules jdk.incubator.vector" as two arguments
                }
            }
        }
        if (flags.stream().noneMatch(f -> f.contains("jdk.incubator.vector"))) {
            flags.addAll(List.of("--add-modules", "jdk.incubator.vector"));
        }
        return flags;
    }

    /** SHA-256 of every file under dir by relative path; the timings of JSON reports left out. */
    private static Map<String, String> digests(Path dir) throws IOException {
        Map<String, String> m = new TreeMap<>();
        try (Stream<Path> s = Files.walk(dir)) {
            for (Path f : s.filter(Files::isRegularFile).toList()) {
                String rel = dir.relativize(f).toString().replace('\\', '/');
                String name = f.getFileName().toString();
                byte[] bytes = Files.readAllBytes(f);
                if (name.equals("shrink-report.json") || name.startsWith("eval-")) {
                    JsonNode json = new ObjectMapper().readTree(bytes);
                    withoutTimings(json);
                    if (name.startsWith("eval-")) {
                        ((ObjectNode) json).remove("model"); // the folder's path, which differs per run
                    }
                    bytes = json.toString().getBytes(StandardCharsets.UTF_8);
                }
                m.put(rel, sha256(bytes));
            }
        }
        return m;
    }

    private static void withoutTimings(JsonNode node) {
        if (node instanceof ObjectNode o) {
            List<String> drop = new ArrayList<>();
            o.fieldNames().forEachRemaining(k -> {
                if (ignored(k)) {
                    drop.add(k);
                }
            });
            o.remove(drop);
        }
        for (JsonNode child : node) {
            withoutTimings(child);
        }
    }

    private static String sha256(byte[] bytes) {
        try {
            return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(bytes));
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }
}
