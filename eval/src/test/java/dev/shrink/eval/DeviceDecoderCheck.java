package dev.shrink.eval;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shrink.core.forward.CausalLM;
import dev.shrink.core.forward.KvCache;
import dev.shrink.core.forward.Taps;
import dev.shrink.core.model.ModelDir;
import dev.shrink.core.ops.Ops;
import dev.shrink.kernels.cuda.CudaOps;
import java.nio.file.Path;
import java.util.Locale;

/**
 * Shared by the stages' GPU tests (eval's test-jar): a folder decoded by the device-resident decoder
 * ({@link DeviceModel}, the cuda backend's speed path) against the CPU's CausalLM reading the same
 * folder (packed linears through the dequantizing reader). For a prompt and then greedy steps (both
 * fed the CPU's token), each step's logits must agree to max |diff| / max |logit| < 1e-2 and pick the
 * same token, and the decoder must describe its path as expected.
 */
public final class DeviceDecoderCheck {
    private DeviceDecoderCheck() {
    }

    /**
     * Runs the comparison; {@code pathStart}: what {@link DeviceModel#path()} must begin with.
     *
     * @return the worst max |diff| / max |logit| over the steps
     */
    public static double check(Path folder, Ops cpu, CudaOps gpu, int[] prompt, int steps, String pathStart) {
        try (ModelDir dir = ModelDir.open(folder);
             DeviceModel dm = DeviceModel.load(dir, gpu.device(), prompt.length + steps)) {
            assertTrue(dm.path().startsWith(pathStart), () -> folder.getFileName() + ": path " + dm.path());
            CausalLM lm = CausalLM.load(WeightSources.forModel(dir), dir.config(), dir.spec(), cpu);
            int V = dir.config().vocab();
            KvCache[] caches = {lm.newCache(prompt.length + steps)};
            float[] ref = lm.logits(lm.hidden(prompt, 1, prompt.length, caches, Taps.NONE), prompt.length - 1, 1);
            dm.reset();
            float[] got = null;
            for (int t : prompt) {
                got = dm.step(t);
            }
            double worst = 0;
            for (int s = 0; s < steps; s++) {
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
                    + " max|diff|/max|logit| %.2e, same tokens; %s%n", folder.getFileName(), prompt.length, steps, worst,
                    dm.path());
            return worst;
        }
    }

    /** A prompt of n tokens: BOS, then ids spread over the fixture's vocabulary. */
    public static int[] prompt(int n) {
        int[] p = new int[n];
        p[0] = 1;
        for (int i = 1; i < n; i++) {
            p[i] = 3 + (int) ((i * 2654435761L) % 8000);
        }
        return p;
    }

    /** Prints decode tok/s of {@code folder} through the device path as a RESULT|evalspeed line. */
    public static void speed(Path folder, CudaOps gpu, int[] prompt, String model) {
        try (DeviceModel dm = DeviceModel.load(folder, gpu.device(), prompt.length + 128)) {
            SpeedResult r = Speed.measure(dm, prompt, 128, 5, gpu.name());
            System.out.printf(Locale.ROOT, "RESULT|evalspeed|%s|%s|%.1f|%.1f|%.1f|%s%n", model, folder.getFileName(),
                    r.decodeTokensPerSecond(), r.decodeMin(), r.decodeMax(), r.path());
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
