package dev.shrink.gptq;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.shrink.core.forward.CausalLM;
import dev.shrink.core.forward.KvCache;
import dev.shrink.core.forward.Taps;
import dev.shrink.core.model.ModelDir;
import dev.shrink.core.ops.Backends;
import dev.shrink.core.ops.Ops;
import dev.shrink.core.ops.OpsProvider;
import dev.shrink.eval.DeviceModel;
import dev.shrink.eval.Speed;
import dev.shrink.eval.SpeedResult;
import dev.shrink.eval.WeightSources;
import dev.shrink.kernels.cuda.CudaOps;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Locale;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The device-resident decoder (eval's {@link DeviceModel}, the cuda backend's speed path) against the
 * CPU's CausalLM on fixture-llama-14m: dense (bf16 → fp16 on the GPU), a GPTQ w4 g128 folder made
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
        int[] prompt = new int[PROMPT];
        prompt[0] = 1;
        for (int i = 1; i < PROMPT; i++) {
            prompt[i] = 3 + (int) ((i * 2654435761L) % 8000);
        }
        CudaOps ops = (CudaOps) Backends.select("cuda", 0);
        try {
            check(fixture, cpu, ops, prompt, "device-resident fp16 cuBLAS GEMV");
            check(rtn, cpu, ops, prompt, "device-resident W4A16 GEMV (GPTQ; 24 of 24 fused linears W4A16)");
            check(act, cpu, ops, prompt, "device-resident fp16 cuBLAS GEMV (24 packed fused linears dequantized to fp16, the first: ");
            for (Path p : new Path[] {fixture, rtn}) {
                try (DeviceModel dm = DeviceModel.load(p, ops.device(), PROMPT + 128)) {
                    SpeedResult r = Speed.measure(dm, prompt, 128, 5, ops.name());
                    System.out.printf(Locale.ROOT, "RESULT|evalspeed|fixture-llama-14m|%s|%.1f|%.1f|%.1f|%s%n",
                            p.getFileName(), r.decodeTokensPerSecond(), r.decodeMin(), r.decodeMax(), r.path());
                }
            }
        } finally {
            ops.close();
        }
    }

    private static void check(Path folder, Ops cpu, CudaOps gpu, int[] prompt, String pathStart) {
        try (ModelDir dir = ModelDir.open(folder);
             DeviceModel dm = DeviceModel.load(dir, gpu.device(), PROMPT + STEPS)) {
            assertTrue(dm.path().startsWith(pathStart), () -> folder.getFileName() + ": path " + dm.path());
            CausalLM lm = CausalLM.load(WeightSources.forModel(dir), dir.config(), dir.spec(), cpu);
            int V = dir.config().vocab();
            KvCache[] caches = {lm.newCache(PROMPT + STEPS)};
            float[] ref = lm.logits(lm.hidden(prompt, 1, PROMPT, caches, Taps.NONE), PROMPT - 1, 1);
            dm.reset();
            float[] got = null;
            for (int t : prompt) {
                got = dm.step(t);
            }
            double worst = 0;
            for (int s = 0; s < STEPS; s++) {
                double maxDiff = 0, maxAbs = 0;
                for (int v = 0; v < V; v++) {
                    maxDiff = Math.max(maxDiff, Math.abs(ref[v] - got[v]));
                    maxAbs = Math.max(maxAbs, Math.abs(ref[v]));
                }
                double rel = maxDiff / maxAbs, md = maxDiff, ma = maxAbs;
                worst = Math.max(worst, rel);
                int want = argmax(ref), have = argmax(got);
                int step = s;
                assertTrue(rel < 1e-2, () -> folder.getFileName() + " step " + step + ": max |diff| " + md
                        + " / max |logit| " + ma);
                assertEquals(want, have, () -> folder.getFileName() + " step " + step + ": greedy token");
                ref = lm.logits(lm.hidden(new int[] {want}, 1, 1, caches, Taps.NONE), 0, 1);
                got = dm.step(want);
            }
            System.out.printf(Locale.ROOT, "%s: device decoder vs CPU CausalLM, %d prompt tokens + %d greedy steps: worst"
                    + " max|diff|/max|logit| %.2e, same tokens; %s%n", folder.getFileName(), PROMPT, STEPS, worst, dm.path());
        }
    }

    private static int argmax(float[] x) {
        int b = 0;
        for (int i = 1; i < x.length; i++) {
            if (x[i] > x[b]) {
                b = i;
            }
        }
        return b;
    }
}
