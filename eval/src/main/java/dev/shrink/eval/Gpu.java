package dev.shrink.eval;

import dev.shrink.core.ShrinkException;
import java.util.List;
import java.util.Locale;
import java.util.stream.Collectors;

/**
 * A GPU's memory capacity and memory bandwidth, as its vendor's datasheet states them, for
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
 */
public record Gpu(String id, String name, long memoryBytes, double bandwidth, String memoryType, String source) {

    private static Gpu of(String id, String name, double gb, double gbPerSecond, String type, String source) {
        return new Gpu(id, name, Math.round(gb * 1e9), gbPerSecond * 1e9, type, source);
    }

    /** The known GPUs: vendor datasheet values (memory "GB", bandwidth "GB/s" or "TB/s"). */
    public static final List<Gpu> KNOWN = List.of(
            of("h100", "NVIDIA H100 SXM5 80GB", 80, 3350, "HBM3",
                    "NVIDIA H100 Tensor Core GPU datasheet, H100 SXM: 80GB, 3.35TB/s"),
            of("h100-pcie", "NVIDIA H100 PCIe 80GB", 80, 2000, "HBM2e",
                    "NVIDIA H100 Tensor Core GPU datasheet, H100 PCIe: 80GB, 2TB/s"),
            of("h100-nvl", "NVIDIA H100 NVL 94GB", 94, 3900, "HBM3",
                    "NVIDIA H100 Tensor Core GPU datasheet, H100 NVL: 94GB, 3.9TB/s"),
            of("h200", "NVIDIA H200 SXM 141GB", 141, 4800, "HBM3e",
                    "NVIDIA H200 Tensor Core GPU datasheet, H200 SXM: 141GB, 4.8TB/s"),
            of("a100-80g", "NVIDIA A100 80GB SXM", 80, 2039, "HBM2e",
                    "NVIDIA A100 Tensor Core GPU datasheet, A100 80GB SXM: 80GB HBM2e, 2,039GB/s"),
            of("a100-80g-pcie", "NVIDIA A100 80GB PCIe", 80, 1935, "HBM2e",
                    "NVIDIA A100 Tensor Core GPU datasheet, A100 80GB PCIe: 80GB HBM2e, 1,935GB/s"),
            of("a100-40g", "NVIDIA A100 40GB", 40, 1555, "HBM2",
                    "NVIDIA A100 Tensor Core GPU datasheet, A100 40GB PCIe/SXM: 40GB HBM2, 1,555GB/s"),
            of("l40s", "NVIDIA L40S", 48, 864, "GDDR6",
                    "NVIDIA L40S datasheet: 48GB GDDR6 with ECC, 864GB/s"),
            of("l4", "NVIDIA L4", 24, 300, "GDDR6",
                    "NVIDIA L4 Tensor Core GPU datasheet: 24GB, 300GB/s"),
            of("a10", "NVIDIA A10", 24, 600, "GDDR6",
                    "NVIDIA A10 Tensor Core GPU datasheet: 24GB GDDR6, 600GB/s"),
            of("rtx4090", "NVIDIA GeForce RTX 4090", 24, 1008, "GDDR6X",
                    "NVIDIA Ada Lovelace GPU architecture whitepaper, GeForce RTX 4090: 24GB GDDR6X, 1008GB/s"),
            of("rtx3090", "NVIDIA GeForce RTX 3090", 24, 936, "GDDR6X",
                    "NVIDIA Ampere GA102 GPU architecture whitepaper, GeForce RTX 3090: 24GB GDDR6X, 936GB/s"),
            of("v100-32g", "NVIDIA V100 SXM2 32GB", 32, 900, "HBM2",
                    "NVIDIA V100 Tensor Core GPU datasheet, V100 SXM2: 32GB HBM2, 900GB/s"),
            of("t4", "NVIDIA T4", 16, 320, "GDDR6",
                    "NVIDIA T4 Tensor Core GPU datasheet: 16GB GDDR6, 320+GB/s"),
            of("mi300x", "AMD Instinct MI300X", 192, 5300, "HBM3",
                    "AMD Instinct MI300X accelerator datasheet: 192GB HBM3, 5.3TB/s"));

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
}
