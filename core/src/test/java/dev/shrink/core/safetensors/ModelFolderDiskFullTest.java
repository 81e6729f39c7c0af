package dev.shrink.core.safetensors;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.shrink.core.ShrinkException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A disk that fills while a model folder is written (a real 1 MiB tmpfs; needs permission to mount
 * one, skipped elsewhere): the error names the file in the user's output folder, not the temporary
 * folder it was being written in, and nothing is left on the disk. The space check beforehand
 * refuses the same write with the bytes needed and free.
 */
class ModelFolderDiskFullTest {
    static boolean run(String... cmd) {
        try {
            Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
            p.getInputStream().readAllBytes();
            return p.waitFor(20, TimeUnit.SECONDS) && p.exitValue() == 0;
        } catch (IOException e) {
            return false;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return false;
        }
    }

    @Test
    void aFullDiskIsReportedAtTheOutputPath(@TempDir Path tmp) throws Exception {
        Path mnt = Files.createDirectory(tmp.resolve("small-disk"));
        assumeTrue(System.getProperty("os.name").startsWith("Linux")
                && run("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt.toString()), "cannot mount a tmpfs here");
        try {
            Path out = mnt.resolve("out");
            float[] big = new float[1 << 19]; // 2 MiB
            ShrinkException e = assertThrows(ShrinkException.class, () -> ModelFolderWriter.write(null, out, false,
                    "the model", dir -> SafetensorsWriter.write(dir.resolve("model.safetensors"),
                            List.of(TensorData.ofFloats("w", new long[] {big.length}, big,
                                    dev.shrink.core.tensor.DType.F32)), Map.of())));
            assertEquals(out.resolve("model.safetensors") + ": cannot write: no space left on device", e.getMessage());
            try (var s = Files.list(mnt)) {
                assertEquals(List.of(), s.toList(), "nothing left behind");
            }
            ShrinkException pre = assertThrows(ShrinkException.class, () -> ModelFolderWriter.checkSpace(out, 4L << 20));
            assertTrue(pre.getMessage().startsWith(out + ": not written: it needs about 5,284,823 bytes (0.00 GiB) and "
                    + mnt + " has 1,048,576 bytes (0.00 GiB) free"), pre.getMessage());
        } finally {
            run("umount", mnt.toString());
        }
    }
}
