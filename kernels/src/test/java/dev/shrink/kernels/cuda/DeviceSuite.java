package dev.shrink.kernels.cuda;

import static org.junit.platform.engine.discovery.DiscoverySelectors.selectClass;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import org.junit.platform.engine.TestExecutionResult;
import org.junit.platform.engine.TestSource;
import org.junit.platform.engine.support.descriptor.ClassSource;
import org.junit.platform.engine.support.descriptor.MethodSource;
import org.junit.platform.launcher.Launcher;
import org.junit.platform.launcher.LauncherDiscoveryRequest;
import org.junit.platform.launcher.TestExecutionListener;
import org.junit.platform.launcher.TestIdentifier;
import org.junit.platform.launcher.core.LauncherDiscoveryRequestBuilder;
import org.junit.platform.launcher.core.LauncherFactory;

/**
 * Runs JUnit test classes where there is no Maven (the GPU machine) and prints one table row per
 * test method (parameterized cases added up): passed, failed, skipped, seconds; then every
 * failure and skip reason. Exit code 1 when anything failed, 0 otherwise.
 *
 * <pre>java -cp 'lib/*' dev.shrink.kernels.cuda.DeviceSuite dev.shrink.kernels.cuda.CudaConformanceTest ...</pre>
 */
public final class DeviceSuite {
    private DeviceSuite() {
    }

    /** Counts of one test method. */
    private static final class Row {
        int passed, failed, skipped;
        double seconds;
    }

    public static void main(String[] args) {
        if (args.length == 0) {
            System.err.println("usage: DeviceSuite TEST_CLASS...");
            System.exit(2);
        }
        LauncherDiscoveryRequestBuilder b = LauncherDiscoveryRequestBuilder.request();
        for (String c : args) {
            b.selectors(selectClass(c));
        }
        LauncherDiscoveryRequest request = b.build();
        Map<String, Row> rows = new LinkedHashMap<>();
        Map<String, Long> started = new LinkedHashMap<>();
        List<String> problems = new ArrayList<>();
        TestExecutionListener listener = new TestExecutionListener() {
            @Override
            public void executionStarted(TestIdentifier id) {
                started.put(id.getUniqueId(), System.nanoTime());
            }

            @Override
            public void executionSkipped(TestIdentifier id, String reason) {
                rows.computeIfAbsent(key(id), k -> new Row()).skipped++;
                problems.add("SKIPPED " + key(id) + " " + id.getDisplayName() + ": " + reason);
            }

            @Override
            public void executionFinished(TestIdentifier id, TestExecutionResult result) {
                Long t0 = started.remove(id.getUniqueId());
                double s = t0 == null ? 0 : (System.nanoTime() - t0) / 1e9;
                String why = result.getThrowable().map(t -> t.getClass().getSimpleName() + ": " + t.getMessage())
                        .orElse("");
                if (!id.isTest()) {
                    if (result.getStatus() != TestExecutionResult.Status.SUCCESSFUL && !id.getSource().isEmpty()) {
                        Row r = rows.computeIfAbsent(key(id), k -> new Row());
                        r.failed++;
                        problems.add("FAILED " + key(id) + ": " + why);
                    }
                    return;
                }
                Row r = rows.computeIfAbsent(key(id), k -> new Row());
                r.seconds += s;
                switch (result.getStatus()) {
                    case SUCCESSFUL -> r.passed++;
                    case ABORTED -> {
                        r.skipped++;
                        if (r.skipped == 1) {
                            problems.add("SKIPPED " + key(id) + ": " + why);
                        }
                    }
                    case FAILED -> {
                        r.failed++;
                        problems.add("FAILED " + key(id) + " " + id.getDisplayName() + ": " + why);
                    }
                }
            }
        };
        Launcher launcher = LauncherFactory.create();
        long t0 = System.nanoTime();
        launcher.execute(request, listener);
        double total = (System.nanoTime() - t0) / 1e9;

        System.out.println();
        System.out.printf("%-66s %6s %6s %7s %8s%n", "test", "passed", "failed", "skipped", "seconds");
        int passed = 0, failed = 0, skipped = 0;
        for (var e : rows.entrySet()) {
            Row r = e.getValue();
            System.out.printf("%-66s %6d %6d %7d %8.2f%n", e.getKey(), r.passed, r.failed, r.skipped, r.seconds);
            passed += r.passed;
            failed += r.failed;
            skipped += r.skipped;
        }
        System.out.printf("%-66s %6d %6d %7d %8.2f%n", "total", passed, failed, skipped, total);
        for (String p : problems) {
            System.out.println(p);
        }
        System.exit(failed > 0 ? 1 : 0);
    }

    /** "CudaConformanceTest.gemmMatchesReference" for a test, its class for a container. */
    private static String key(TestIdentifier id) {
        Optional<TestSource> src = id.getSource();
        if (src.isPresent() && src.get() instanceof MethodSource m) {
            String cls = m.getClassName();
            return cls.substring(cls.lastIndexOf('.') + 1) + "." + m.getMethodName();
        }
        if (src.isPresent() && src.get() instanceof ClassSource c) {
            String cls = c.getClassName();
            return cls.substring(cls.lastIndexOf('.') + 1);
        }
        return id.getDisplayName();
    }
}
