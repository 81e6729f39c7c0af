package dev.shrink.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shrink.cli.BadInputTest.Run;
import dev.shrink.core.model.ModelDir;
import dev.shrink.core.tensor.DType;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code shrink synth} from the command line: a folder that `shrink inspect` and the loaders read; one-line errors. */
class SynthCommandTest {
    @TempDir
    Path tmp;

    @Test
    void writesAFolderThatLoads() throws Exception {
        Path out = tmp.resolve("tiny");
        Run r = BadInputTest.shrink("synth", out.toString(), "--hidden", "64", "--intermediate", "96", "--layers", "2",
                "--heads", "4", "--kv-heads", "2", "--vocab", "500", "--dtype", "fp16", "--seed", "3", "--shard-mib", "1");
        assertEquals(0, r.code(), r.err());
        assertTrue(r.out().contains("wrote " + out), r.out());
        try (ModelDir d = ModelDir.open(out)) {
            assertEquals(2, d.config().kvHeads());
            assertEquals(DType.F16, d.weights().info("model.layers.1.mlp.down_proj.weight").dtype());
        }
        Run i = BadInputTest.shrink("inspect", "--model", out.toString());
        assertEquals(0, i.code(), i.err());
        assertTrue(i.out().contains("hidden 64, intermediate 96, layers 2, heads 4, kv heads 2 (GQA)"), i.out());
    }

    @Test
    void badInputIsOneLineAndExit2() throws Exception {
        Path out = tmp.resolve("x");
        Run noDims = BadInputTest.shrink("synth", out.toString(), "--hidden", "64");
        assertEquals(2, noDims.code());
        assertTrue(noDims.err().contains("give --preset llama2-7b"), noDims.err());
        Run badPreset = BadInputTest.shrink("synth", out.toString(), "--preset", "llama9");
        assertEquals(2, badPreset.code());
        assertTrue(badPreset.err().contains("unknown preset 'llama9'"), badPreset.err());
        Run badHeads = BadInputTest.shrink("synth", out.toString(), "--preset", "llama2-7b", "--kv-heads", "5");
        assertEquals(2, badHeads.code());
        assertTrue(badHeads.err().contains("not a multiple of the 5 kv heads"), badHeads.err());
        Run badDtype = BadInputTest.shrink("synth", out.toString(), "--preset", "llama2-7b", "--dtype", "fp8");
        assertEquals(2, badDtype.code());
        assertFalse(Files.exists(out));
        Files.createDirectories(out);
        Files.writeString(out.resolve("keep.txt"), "x");
        Run taken = BadInputTest.shrink("synth", out.toString(), "--hidden", "64", "--intermediate", "96", "--layers", "1",
                "--heads", "4", "--vocab", "100");
        assertEquals(2, taken.code());
        assertTrue(taken.err().startsWith("shrink: error: " + out), taken.err());
        assertEquals(1, taken.err().strip().lines().count(), taken.err());
    }
}
