package dev.shrink.eval;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.shrink.core.forward.KvCacheType;
import dev.shrink.core.model.ModelDir;
import java.util.Optional;
import org.junit.jupiter.api.Test;

/** The GPU a CUDA device name denotes, and the decode floor set beside a measured speed. */
class SpeedEstimateTest {

    @Test
    void deviceNamesMapToDatasheets() {
        assertEquals("h100", Gpu.forDeviceName("NVIDIA H100 80GB HBM3").orElseThrow().id());
        assertEquals("h100-pcie", Gpu.forDeviceName("NVIDIA H100 PCIe").orElseThrow().id());
        assertEquals("h100-nvl", Gpu.forDeviceName("NVIDIA H100 NVL").orElseThrow().id());
        assertEquals("h200", Gpu.forDeviceName("NVIDIA H200").orElseThrow().id());
        assertEquals("a100-80g", Gpu.forDeviceName("NVIDIA A100-SXM4-80GB").orElseThrow().id());
        assertEquals("a100-40g", Gpu.forDeviceName("NVIDIA A100-PCIE-40GB").orElseThrow().id());
        assertEquals("l40s", Gpu.forDeviceName("NVIDIA L40S").orElseThrow().id());
        assertEquals("l4", Gpu.forDeviceName("NVIDIA L4").orElseThrow().id());
        assertEquals("t4", Gpu.forDeviceName("Tesla T4").orElseThrow().id());
        assertEquals(Optional.empty(), Gpu.forDeviceName("NVIDIA GeForce GTX 1080"));
    }

    @Test
    void decodeFloorIsWeightsAndCacheOverBandwidth() {
        try (ModelDir dir = ModelDir.open(Golden.model("fixture-llama-14m"))) {
            SpeedEstimate e = SpeedEstimate.of(dir, "NVIDIA H100 80GB HBM3", KvCacheType.FP16, 128, 32).orElseThrow();
            var c = dir.config();
            long embed = dir.weights().has("lm_head.weight") ? dir.weights().info("model.embed_tokens.weight").byteLength() : 0;
            long weights = dir.weights().totalBytes() - embed;
            long kv = 2L * c.layers() * c.kvHeads() * c.headDim() * 2 * (128 + 32);
            double expected = 3.35e12 / (weights + kv);
            assertEquals("h100", e.gpu());
            assertEquals(expected, e.decodeTokensPerSecond(), expected * 1e-9);
            assertTrue(e.versus(expected / 2).startsWith("decode is 50% of the h100 estimate"), e.versus(expected / 2));
        }
    }
}
