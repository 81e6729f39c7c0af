package dev.shrink.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.File;
import java.net.URL;
import java.net.URLClassLoader;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * The CLI's runtime classpath (target/runtime.classpath, written by cli/pom.xml; ./shrink and
 * scripts/dist.sh run from it) holds the CLI's libraries and no test library, and
 * {@code shrink --version} reports the revision, the runtime and every backend.
 */
class RuntimeClasspathTest {
    static List<Path> runtimeClasspath() throws Exception {
        Path file = Path.of("target", "runtime.classpath");
        assertTrue(Files.isRegularFile(file), "cli/pom.xml writes " + file.toAbsolutePath() + " in generate-resources");
        List<Path> entries = new ArrayList<>();
        for (String e : Files.readString(file).strip().split(File.pathSeparator)) {
            entries.add(Path.of(e));
        }
        return entries;
    }

    @Test
    void runtimeClasspathHasTheCliLibrariesAndNoTestLibrary() throws Exception {
        List<Path> cp = runtimeClasspath();
        List<String> names = cp.stream().map(p -> p.getFileName().toString()).toList();
        for (String n : names) {
            assertFalse(n.matches("(?i).*(junit|opentest4j|apiguardian|hamcrest|mockito|assertj).*"),
                    "a test library on the CLI's runtime classpath: " + n + " in " + names);
        }
        assertTrue(names.stream().anyMatch(n -> n.startsWith("picocli-")), names.toString());
        assertTrue(names.stream().anyMatch(n -> n.startsWith("tokenizers-")), names.toString());

        // the same, as the JVM sees it: these entries (without this test's classpath) load the CLI's
        // libraries but not JUnit
        URL[] urls = new URL[cp.size()];
        for (int i = 0; i < urls.length; i++) {
            urls[i] = cp.get(i).toUri().toURL();
        }
        try (URLClassLoader loader = new URLClassLoader(urls, ClassLoader.getPlatformClassLoader())) {
            assertNotNull(Class.forName("picocli.CommandLine", false, loader));
            assertNotNull(Class.forName("dev.shrink.core.ops.Backends", false, loader));
            for (String c : new String[] {"org.junit.jupiter.api.Test", "org.junit.platform.commons.util.ReflectionUtils",
                "org.opentest4j.AssertionFailedError"}) {
                assertThrows(ClassNotFoundException.class, () -> Class.forName(c, false, loader), c + " is loadable");
            }
        }
    }

    @Test
    void versionNamesTheRevisionTheRuntimeAndEveryBackend() {
        BadInputTest.Run r = BadInputTest.shrink("--version");
        assertEquals(0, r.code(), r.err());
        List<String> lines = Arrays.asList(r.out().strip().split("\n"));
        assertTrue(lines.get(0).startsWith("shrink " + Main.VERSION + " (revision "), lines.get(0));
        assertEquals(Main.Version.revision(), lines.get(0).replaceAll(".*\\(revision (.*)\\)$", "$1"));
        assertTrue(lines.get(1).startsWith("Java " + Runtime.version()), lines.get(1));
        assertTrue(lines.contains("backend cpu: available: " + Runtime.getRuntime().availableProcessors() + " cores, "
                + jdk.incubator.vector.FloatVector.SPECIES_PREFERRED.vectorBitSize() + "-bit vectors"), r.out());
        assertTrue(lines.stream().anyMatch(l -> l.startsWith("backend cpu-reference: available")), r.out());
        // cuda: the GPU's name, or the one-line reason it cannot run here
        String cuda = lines.stream().filter(l -> l.startsWith("backend cuda: ")).findFirst().orElseThrow();
        assertTrue(cuda.matches("backend cuda: (available: .+, driver CUDA [0-9.]+|unavailable: .+)"), cuda);
    }
}
