package dev.shrink.distill;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.shrink.core.ShrinkException;
import dev.shrink.core.forward.WeightSource;
import dev.shrink.core.model.ModelDir;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A disk that fills while checkpointing: a real 5 MiB tmpfs that holds one stories260K checkpoint
 * (~3 MiB) but not a second one beside it, so the write of step 2's checkpoint runs out of space
 * half way. The run must stop with one line naming the file and the full disk, leave step 1's
 * checkpoint byte for byte as it was (readable, resumable) and no temporary file. Needs permission
 * to mount a tmpfs (root on Linux); skipped elsewhere.
 */
class CheckpointDiskFullTest {

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
    void aFullDiskKeepsTheLastCheckpointIntact(@TempDir Path tmp) throws Exception {
        Path mnt = Files.createDirectory(tmp.resolve("small-disk"));
        assumeTrue(System.getProperty("os.name").startsWith("Linux")
                && run("mount", "-t", "tmpfs", "-o", "size=5m", "tmpfs", mnt.toString()), "cannot mount a tmpfs here");
        try (ModelDir dir = ModelDir.open(TestSupport.stories())) {
            Path ck = mnt.resolve("ck");
            DistillStage.Config cfg = new DistillStage.Config(3, 2, 2, 32, 1e-3, 0, 1.0, 1.0, 1.0, Losses.Kind.KL, 0, null,
                    AdamW.Hyper.TORCH, 0, 1);
            ShrinkException e = assertThrows(ShrinkException.class, () -> DistillStage.train(DistillStageTest.teacher(dir),
                    DistillStageTest.pruned(dir, DistillStageTest.ops()), DistillStageTest.streamFor(dir), cfg,
                    DistillStageTest.ops(), ck, false, null, DistillStage.Listener.NONE));
            Path file = DistillCheckpoint.file(ck);
            assertEquals("checkpoint of step 2 not written: " + file + ": cannot write: no space left on device; the last "
                    + "good checkpoint (step 1) is kept in " + file + ": continue with --resume", e.getMessage());
            try (var files = Files.list(ck)) {
                assertEquals(List.of(DistillCheckpoint.FILE), files.map(f -> f.getFileName().toString()).toList());
            }
            Map<String, Integer> sizes = new LinkedHashMap<>();
            Weights.load(WeightSource.of(dir.weights()), dir.config(), dir.spec(), DistillStageTest.ops()).entries()
                    .forEach(en -> sizes.put(en.name(), en.value().length));
            DistillCheckpoint.Loaded l = DistillCheckpoint.read(ck, sizes);
            assertEquals(1, l.state().step());
            assertEquals(2, l.state().windowsDrawn());
        } finally {
            run("umount", mnt.toString());
        }
    }
}
