package dev.shrink.gptq;

import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.shrink.core.model.ModelDir;
import dev.shrink.core.ops.Backends;
import dev.shrink.core.ops.Ops;
import dev.shrink.core.ops.OpsProvider;
import dev.shrink.eval.DeviceDecoderCheck;
import dev.shrink.kernels.cuda.CudaOps;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The device-resident decoder (eval's DeviceModel, the cuda backend's speed path) against the
 * CPU's CausalLM on fixture-llama-14m (eval's {@link DeviceDecoderCheck}): dense (bf16 → fp16 on the GPU), a GPTQ w4 g128 folder made
 * here by GptqStage's RTN (kept 4-bit: every fused linear on the W4A16 GEMV) and an act-order GPTQ
 * folder (groups permuted over K: refused by the GEMV, dequantized to fp16, the path saying so). For
 * a 16-token prompt and then 8 greedy steps (both fed the CPU's token), each step's logits must agree
 * to max |diff| / max |logit| < 1e-2 and pick the same token. The CPU reads the packed folders
 * through the dequantizing reader. Prints each folder's decode tok/s through the device path.
 * Skipped with the reason where there is no GPU.
 */
class DeviceDecoderParityTest {
    private static final int PROMPT = 16, STEPS = 8;

    @Test
    void deviceDecoderMatchesCpuOnDenseAndGptqFolders(@TempDir Path tmp) throws Exception {
        OpsProvider cudaProvider = Backends.providers().stream().filter(p -> p.device().equals("cuda")).findFirst()
                .orElseThrow(() -> new AssertionError("the cuda backend is not registered"));
        assumeTrue(cudaProvider.available(), () -> "no CUDA device: " + cudaProvider.unavailableReason());
        Path fixture = GptqTestSupport.fixture();
        Ops cpu = Backends.select("cpu", 0);
        Path rtn = tmp.resolve("rtn-w4g128");
        GptqStage.compress(fixture, rtn, new GptqStage.Config("rtn", QuantScheme.of(4, 128, false), false, false, true,
                0.01, 128, 1), new int[][] {{1, 2, 3, 4}}, new LinkedHashMap<>(), "shrink:test", cpu, true, false);
        Path act = tmp.resolve("act-order");
        try (ModelDir m = ModelDir.open(fixture)) {
            GptqCheckpoint.write(m, act, GptqTestSupport.quantizeAll(m, 4, 128, false, true, 7),
                    new GptqFormat(4, 128, false, true, false, true, 0.01, "shrink:test"), null);
        }
        int[] prompt = DeviceDecoderCheck.prompt(PROMPT);
        CudaOps ops = (CudaOps) Backends.select("cuda", 0);
        try {
            DeviceDecoderCheck.check(fixture, cpu, ops, prompt, STEPS, "device-resident fp16 cuBLAS GEMV");
            DeviceDecoderCheck.check(rtn, cpu, ops, prompt, STEPS,
                    "device-resident W4A16 GEMV (GPTQ; 24 of 24 fused linears W4A16)");
            DeviceDecoderCheck.check(act, cpu, ops, prompt, STEPS,
                    "device-resident fp16 cuBLAS GEMV (24 packed fused linears dequantized to fp16, the first: ");
            for (Path p : new Path[] {fixture, rtn}) {
                DeviceDecoderCheck.speed(p, ops, prompt, "fixture-llama-14m");
            }
        } finally {
            ops.close();
        }
    }
}
