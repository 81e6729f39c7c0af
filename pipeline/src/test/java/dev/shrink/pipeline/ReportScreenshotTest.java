package dev.shrink.pipeline;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * report.html rendered by a real browser: scripts/check-report.sh takes a headless Chromium
 * screenshot. Skipped, saying why, where Debian's chromium is not installed.
 */
class ReportScreenshotTest {
    @TempDir
    Path tmp;

    static boolean chromium() {
        for (String dir : System.getenv().getOrDefault("PATH", "/usr/bin").split(":")) {
            if (Files.isExecutable(Path.of(dir, "chromium")) || Files.isExecutable(Path.of(dir, "chromium-browser"))) {
                return true;
            }
        }
        return false;
    }

    @Test
    void chromiumRendersTheReport() throws IOException, InterruptedException {
        assumeTrue(chromium(), "chromium is not installed (apt-get install -y chromium): report.html not rendered");
        Path script = Path.of(System.getProperty("user.dir")).resolve("../scripts/check-report.sh").normalize();
        assumeTrue(Files.isExecutable(script), "scripts/check-report.sh not found beside the module");
        ReportFiles.writeAll(tmp, ReportFilesTest.report());
        Path png = tmp.resolve("report.png");
        Process p = new ProcessBuilder(script.toString(), tmp.resolve("report.html").toString(), png.toString(), "1000x1400")
                .redirectErrorStream(true).start();
        String output = new String(p.getInputStream().readAllBytes());
        assertTrue(p.waitFor(90, TimeUnit.SECONDS), "chromium did not finish");
        assertEquals(0, p.exitValue(), output);
        byte[] bytes = Files.readAllBytes(png);
        assertArrayEquals(new byte[] {(byte) 0x89, 'P', 'N', 'G'}, Arrays.copyOf(bytes, 4), "a PNG");
        ByteBuffer ihdr = ByteBuffer.wrap(bytes, 16, 8); // width, height (big-endian) of the IHDR chunk
        assertEquals(1000, ihdr.getInt());
        assertEquals(1400, ihdr.getInt());
        assertTrue(bytes.length > 30_000, "a page with plots and tables, not a blank one: " + bytes.length + " bytes");
    }
}
