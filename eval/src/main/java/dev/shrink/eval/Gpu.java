package dev.shrink.eval;

import dev.shrink.core.ShrinkException;
import java.util.List;
import java.util.Locale;
import java.util.stream.Collectors;

/**
 * A GPU's memory capacity, memory bandwidth and dense tensor-core FLOP/s, as its vendor's datasheet states them, for
 * {@link MemoryEstimate}. Capacities are the datasheet's nominal "GB" figure taken as 10^9 bytes (the
 * memory a framework can allocate is somewhat less: driver, CUDA context, allocator reserve);
 * bandwidths are the datasheet's peak in 10^9 bytes per second.
 *
 * @param id             the name {@code --gpu} takes ("h100")
 * @param name           the product as the datasheet names it
 * @param memoryBytes    capacity, bytes
 * @param bandwidth      peak memory bandwidth, bytes per second
 * @param memoryType     HBM3, GDDR6, ...
 * @param source         where both numbers come from
 * @param tensorFlops    dense fp16/bf16 tensor-core peak, FLOP/s (without structured sparsity; fp32
 *                       accumulation where the datasheet distinguishes it)
 * @param flopsSource    where that number comes from
 */
public record Gpu(String id, String name, long memoryBytes, double bandwidth, String memoryType, String source,
                  double tensorFlops, String flopsSource) {

    private static Gpu of(String id, String name, double gb, double gbPerSecond, String type, String source,
                          double teraFlops, String flopsSource) {
        return new Gpu(id, name, Math.round(gb * 1e9), gbPerSecond * 1e9, type, source, teraFlops * 1e12, flopsSource);
    }

    /** The known GPUs: vendor datasheet values (memory "GB", bandwidth "GB/s" or "TB/s"). */
    public static final List<Gpu> KNOWN = List.of(
            of("h100", "NVIDIA H100 SXM5 80GB", 80, 3350, "HBM3",
                    "NVIDIA H100 Tensor Core GPU datasheet, H100 SXM: 80GB, 3.35TB/s",
                    989.4, "H100 SXM datasheet: BF16 Tensor Core 1,979 TFLOPS with sparsity, half of it dense"),
            of("h100-pcie", "NVIDIA H100 PCIe 80GB", 80, 2000, "HBM2e",
                    "NVIDIA H100 Tensor Core GPU datasheet, H100 PCIe: 80GB, 2TB/s",
                    756.5, "H100 PCIe datasheet: BF16 Tensor Core 1,513 TFLOPS with sparsity, half of it dense"),
            of("h100-nvl", "NVIDIA H100 NVL 94GB", 94, 3900, "HBM3",
                    "NVIDIA H100 Tensor Core GPU datasheet, H100 NVL: 94GB, 3.9TB/s",
                    835.5, "H100 NVL datasheet: BF16 Tensor Core 1,671 TFLOPS with sparsity, half of it dense"),
            of("h200", "NVIDIA H200 SXM 141GB", 141, 4800, "HBM3e",
                    "NVIDIA H200 Tensor Core GPU datasheet, H200 SXM: 141GB, 4.8TB/s",
                    989.4, "H200 SXM datasheet: BF16 Tensor Core 1,979 TFLOPS with sparsity, half of it dense"),
            of("a100-80g", "NVIDIA A100 80GB SXM", 80, 2039, "HBM2e",
                    "NVIDIA A100 Tensor Core GPU datasheet, A100 80GB SXM: 80GB HBM2e, 2,039GB/s",
                    312, "A100 datasheet: BF16 Tensor Core 312 TFLOPS (624 with sparsity)"),
            of("a100-80g-pcie", "NVIDIA A100 80GB PCIe", 80, 1935, "HBM2e",
                    "NVIDIA A100 Tensor Core GPU datasheet, A100 80GB PCIe: 80GB HBM2e, 1,935GB/s",
                    312, "A100 datasheet: BF16 Tensor Core 312 TFLOPS (624 with sparsity)"),
            of("a100-40g", "NVIDIA A100 40GB", 40, 1555, "HBM2",
                    "NVIDIA A100 Tensor Core GPU datasheet, A100 40GB PCIe/SXM: 40GB HBM2, 1,555GB/s",
                    312, "A100 datasheet: BF16 Tensor Core 312 TFLOPS (624 with sparsity)"),
            of("l40s", "NVIDIA L40S", 48, 864, "GDDR6",
                    "NVIDIA L40S datasheet: 48GB GDDR6 with ECC, 864GB/s",
                    362.05, "L40S datasheet: BF16 Tensor Core 362.05 TFLOPS (733 with sparsity)"),
            of("l4", "NVIDIA L4", 24, 300, "GDDR6",
                    "NVIDIA L4 Tensor Core GPU datasheet: 24GB, 300GB/s",
                    121, "L4 datasheet: FP16 Tensor Core 242 TFLOPS with sparsity, half of it dense"),
            of("a10", "NVIDIA A10", 24, 600, "GDDR6",
                    "NVIDIA A10 Tensor Core GPU datasheet: 24GB GDDR6, 600GB/s",
                    125, "A10 datasheet: BF16 Tensor Core 125 TFLOPS (250 with sparsity)"),
            of("rtx4090", "NVIDIA GeForce RTX 4090", 24, 1008, "GDDR6X",
                    "NVIDIA Ada Lovelace GPU architecture whitepaper, GeForce RTX 4090: 24GB GDDR6X, 1008GB/s",
                    165.2, "Ada whitepaper, RTX 4090: FP16 Tensor with FP32 accumulate 165.2 TFLOPS dense"),
            of("rtx3090", "NVIDIA GeForce RTX 3090", 24, 936, "GDDR6X",
                    "NVIDIA Ampere GA102 GPU architecture whitepaper, GeForce RTX 3090: 24GB GDDR6X, 936GB/s",
                    71, "GA102 whitepaper, RTX 3090: FP16 Tensor with FP32 accumulate 71 TFLOPS dense"),
            of("v100-32g", "NVIDIA V100 SXM2 32GB", 32, 900, "HBM2",
                    "NVIDIA V100 Tensor Core GPU datasheet, V100 SXM2: 32GB HBM2, 900GB/s",
                    125, "V100 datasheet, SXM2: Tensor Performance 125 TFLOPS"),
            of("t4", "NVIDIA T4", 16, 320, "GDDR6",
                    "NVIDIA T4 Tensor Core GPU datasheet: 16GB GDDR6, 320+GB/s",
                    65, "T4 datasheet: Mixed Precision (FP16/FP32) 65 TFLOPS"),
            of("mi300x", "AMD Instinct MI300X", 192, 5300, "HBM3",
                    "AMD Instinct MI300X accelerator datasheet: 192GB HBM3, 5.3TB/s",
                    1307.4, "MI300X datasheet: FP16/BF16 1307.4 TFLOPS dense (2614.9 with sparsity)"));

    /** The ids of the known GPUs, comma separated. */
    public static String knownIds() {
        return KNOWN.stream().map(Gpu::id).collect(Collectors.joining(", "));
    }

    /**
     * The GPU with that id (case-insensitive).
     *
     * @throws ShrinkException naming the option and listing the known ones
     */
    public static Gpu named(String id) {
        String key = id.toLowerCase(Locale.ROOT).strip();
        for (Gpu g : KNOWN) {
            if (g.id.equals(key)) {
                return g;
            }
        }
        throw new ShrinkException("--gpu: unknown GPU '" + id + "' (known: " + knownIds() + ")");
    }

    /**
     * The known GPU a CUDA device name denotes ("NVIDIA H100 80GB HBM3" is the H100 SXM, "NVIDIA H200",
     * "NVIDIA A100-SXM4-80GB", "NVIDIA L40S" ...), or empty when it is none of them.
     */
    public static java.util.Optional<Gpu> forDeviceName(String deviceName) {
        String n = deviceName.toUpperCase(Locale.ROOT).replace('-', ' ');
        String id = null;
        if (n.contains("H200")) {
            id = "h200";
        } else if (n.contains("H100")) {
            id = n.contains("PCIE") ? "h100-pcie" : n.contains("NVL") ? "h100-nvl" : "h100";
        } else if (n.contains("A100")) {
            id = n.contains("40GB") ? "a100-40g" : n.contains("PCIE") ? "a100-80g-pcie" : "a100-80g";
        } else if (n.contains("L40S")) {
            id = "l40s";
        } else if (n.matches(".*\\bL4\\b.*")) {
            id = "l4";
        } else if (n.matches(".*\\bA10\\b.*")) {
            id = "a10";
        } else if (n.contains("4090")) {
            id = "rtx4090";
        } else if (n.contains("3090")) {
            id = "rtx3090";
        } else if (n.contains("V100")) {
            id = "v100-32g";
        } else if (n.matches(".*\\bT4\\b.*")) {
            id = "t4";
        }
        return id == null ? java.util.Optional.empty() : java.util.Optional.of(named(id));
    }
}
