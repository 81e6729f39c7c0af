package dev.shrink.awq;

import static dev.shrink.awq.AwqTestSupport.fixture;
import static dev.shrink.awq.AwqTestSupport.shared;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.shrink.core.forward.WeightSource;
import dev.shrink.core.model.ModelDir;
import dev.shrink.core.ops.Backends;
import dev.shrink.core.ops.Ops;
import dev.shrink.core.ops.OpsProvider;
import dev.shrink.core.safetensors.TokenWindows;
import dev.shrink.eval.DeviceDecoderCheck;
import dev.shrink.kernels.cuda.CudaOps;
import java.nio.file.Path;
import java.util.Arrays;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * An AWQ folder (AutoAWQ's GEMM packing, written by AwqCheckpoint after AwqStage on fixture-llama-14m,
 * w4 g128, 4 calibration windows of 128 tokens) through the device-resident decoder that `shrink eval
 * --speed --device cuda` uses: its codes repacked into GPTQ's layout and every fused linear kept on the
 * W4A16 GEMV, the logits of a 16-token prompt and 8 greedy steps against the CPU's CausalLM reading the
 * same folder (eval's DeviceDecoderCheck: max |diff| / max |logit| < 1e-2, same tokens). Prints the
 * folder's decode tok/s. Skipped with the reason where there is no GPU.
 */
class AwqDeviceDecoderParityTest {
    @Test
    void awqFolderDecodesOnTheGpuAsOnTheCpu(@TempDir Path tmp) throws Exception {
        OpsProvider cudaProvider = Backends.providers().stream().filter(p -> p.device().equals("cuda")).findFirst()
                .orElseThrow(() -> new AssertionError("the cuda backend is not registered"));
        assumeTrue(cudaProvider.available(), () -> "no CUDA device: " + cudaProvider.unavailableReason());
        int[][] all = TokenWindows.read(shared().resolve("golden/fixture-llama-14m.calib-c4-128x512.safetensors"));
        int[][] windows = new int[4][];
        for (int i = 0; i < windows.length; i++) {
            windows[i] = Arrays.copyOf(all[i], 128);
        }
        Ops cpu = Backends.select("cpu", 0);
        Path awq = tmp.resolve("awq-gemm-w4g128");
        try (ModelDir src = ModelDir.open(fixture())) {
            AwqStage.Result r = AwqStage.run(src, WeightSource.of(src.weights()), windows,
                    new AwqStage.Config(128, false, true, false, 4), cpu, true);
            assertEquals(42, r.quantized().size());
            AwqCheckpoint.write(src, awq, r.quantized(), r.modified(), 128, AwqCheckpoint.Export.GEMM, null, false);
        }
        int[] prompt = DeviceDecoderCheck.prompt(16);
        try (CudaOps ops = (CudaOps) Backends.select("cuda", 0)) {
            DeviceDecoderCheck.check(awq, cpu, ops, prompt, 8, "device-resident W4A16 GEMV (AWQ; 24 of 24 fused linears W4A16)");
            DeviceDecoderCheck.speed(awq, ops, prompt, "fixture-llama-14m");
        }
    }
}
