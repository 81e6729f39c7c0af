package dev.shrink.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeFalse;

import dev.shrink.core.ops.Backends;
import dev.shrink.core.ops.OpsProvider;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * --device: the backends are listed in the help, and cuda without a GPU is one clear error line;
 * --gpu-math takes fp32 or tf32 and refuses anything else in one line.
 */
class DeviceOptionTest {
    @TempDir
    Path tmp;

    private static String[] run(String... args) {
        StringWriter out = new StringWriter(), err = new StringWriter();
        int code = Main.run(args, new PrintWriter(out, true), new PrintWriter(err, true));
        return new String[] {String.valueOf(code), out.toString(), err.toString()};
    }

    @Test
    void helpNamesTheBackends() {
        String[] r = run("eval", "--help");
        assertEquals("0", r[0]);
        assertTrue(r[1].contains("cuda") && r[1].contains("cpu-reference"), r[1]);
    }

    @Test
    void cudaWithoutAGpuIsOneLineSayingWhy() {
        OpsProvider cuda = Backends.providers().stream().filter(p -> p.device().equals("cuda")).findFirst().orElseThrow();
        assumeFalse(cuda.available(), "a CUDA device is present here");
        String[] r = run("eval", "--model", tmp.toString(), "--dataset", "tinystories", "--device", "cuda", "-q");
        assertEquals("2", r[0], r[2]);
        String err = r[2].strip();
        assertFalse(err.contains("\n"), "one line: " + err);
        assertTrue(err.startsWith("shrink: error: --device cuda: not available here: CUDA not available: "), err);
        assertTrue(err.contains("libcuda.so.1"), err);
    }

    @Test
    void gpuMathIsCheckedAndListed() {
        String[] help = run("gptq", "--help");
        assertTrue(help[1].contains("--gpu-math") && help[1].contains("tf32"), help[1]);
        String[] r = run("eval", "--model", tmp.toString(), "--dataset", "tinystories", "--gpu-math", "bf16", "-q");
        assertEquals("2", r[0], r[2]);
        String err = r[2].strip();
        assertFalse(err.contains("\n"), "one line: " + err);
        assertEquals("shrink: error: --gpu-math bf16: unknown GEMM math 'bf16'; choose fp32, tf32 or fp16", err);
    }
}
