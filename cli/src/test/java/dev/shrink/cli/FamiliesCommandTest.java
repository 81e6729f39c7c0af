package dev.shrink.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The families beyond LLaMA through the CLI, on the fixtures transformers made
 * (eval/src/test/resources/arch): inspect reads them; a stage that would write Phi-3's fused linears
 * apart refuses in one line, before any work, and writes nothing.
 */
class FamiliesCommandTest {
    @TempDir
    Path tmp;

    private static Path fixture(String family) {
        return ConventionsTest.root().resolve("eval/src/test/resources/arch/" + family);
    }

    @Test
    void inspectReadsEveryNewFamily() {
        for (String f : new String[] {"qwen3", "gemma2", "gemma3", "phi3"}) {
            BadInputTest.Run r = BadInputTest.shrink("inspect", fixture(f).toString());
            assertEquals(0, r.code(), f + ": " + r.err());
        }
    }

    @Test
    void gptqOfPhi3RefusesInOneLine() throws Exception {
        Path out = tmp.resolve("phi3-gptq");
        BadInputTest.Run r = BadInputTest.shrink("gptq", fixture("phi3").toString(), "--work-dir", out.toString(),
                "--calib-dataset", "c4", "--calib-samples", "2", "--calib-seqlen", "16", "-q");
        assertEquals(2, r.code(), r.err());
        String err = r.err().strip();
        assertFalse(err.contains("\n"), err);
        assertTrue(err.startsWith("shrink: error: " + fixture("phi3")) && err.contains("phi3 models") && err.contains("qkv_proj"), err);
        assertFalse(Files.exists(out), "nothing written");
    }
}
