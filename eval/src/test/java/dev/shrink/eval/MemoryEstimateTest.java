package dev.shrink.eval;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.shrink.core.ShrinkException;
import dev.shrink.core.model.ModelConfig;
import dev.shrink.core.safetensors.WeightStore;
import dev.shrink.eval.MemoryEstimate.Dims;
import dev.shrink.eval.MemoryEstimate.ElementType;
import dev.shrink.eval.MemoryEstimate.KvDtype;
import dev.shrink.eval.MemoryEstimate.Weights;
import dev.shrink.eval.MemoryEstimate.Workload;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Iterator;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;

/** {@link MemoryEstimate} against the seeds' example, hand arithmetic and the fixture's real files. */
class MemoryEstimateTest {

    private static final Dims SEEDS_20B = new Dims(48, 6144, null, null, null, null, null, false, "the seeds' 20B model");

    /** A 20B multi-head model, 48 layers of 6144, fp16 KV, batch 16, 512 + 32 tokens: about 10.3 GB of KV cache. */
    @Test
    void seedsExampleKvCacheIs10point3GB() {
        MemoryEstimate e = MemoryEstimate.estimate(SEEDS_20B, new Weights(40_000_000_000L, 0, "20e9 × 2 B"),
                new Workload(16, 512, 32), ElementType.FP16, false, null);
        long expected = 2L * 48 * 6144 * 2 * 16 * (512 + 32); // K and V · layers · hidden · fp16 bytes · batch · tokens
        assertEquals(expected, e.kvCache().bytes());
        assertEquals(10.3, e.kvCache().bytes() / 1e9, 0.05);
        assertEquals(2L * 48 * 6144 * 2, e.kvCache().bytesPerToken());
        assertEquals(16L * 544, e.kvCache().tokens());
        assertNull(e.gpu());
        assertNull(e.decode());
        assertEquals(e.weights().bytes() + e.kvCache().bytes() + e.activations().peakBytes(), e.totalBytes().longValue());

        // without the weights: the same KV cache, no total, fit or decode floor even with a GPU
        MemoryEstimate noWeights = MemoryEstimate.estimate(SEEDS_20B, null, new Workload(16, 512, 32), ElementType.FP16, false,
                Gpu.named("h100"));
        assertEquals(expected, noWeights.kvCache().bytes());
        assertNull(noWeights.totalBytes());
        assertNull(noWeights.fits());
        assertNull(noWeights.decode());
    }

    @Test
    void gqaDividesTheKvCacheByHeadsOverKvHeadsOnTheFixtureConfig() {
        Path cfg = Golden.model("fixture-llama-14m").resolve("config.json");
        ModelConfig c = ModelConfig.read(cfg);
        Dims gqa = Dims.fromConfigJson(cfg);
        assertEquals(Dims.of(c, cfg.toString()), gqa);
        Dims mha = new Dims(c.layers(), c.hidden(), c.heads(), c.heads(), c.headDim(), c.intermediate(), c.vocab(),
                c.tiedEmbeddings(), "fixture as MHA");
        Workload wl = new Workload(4, 256, 64);
        Weights w = new Weights(0, 0, "none");
        long kvGqa = MemoryEstimate.estimate(gqa, w, wl, ElementType.BF16, false, null).kvCache().bytes();
        long kvMha = MemoryEstimate.estimate(mha, w, wl, ElementType.BF16, false, null).kvCache().bytes();
        assertEquals(3, c.heads() / c.kvHeads());
        assertEquals(kvMha, kvGqa * c.heads() / c.kvHeads());
        assertEquals(2L * 6 * 2 * 64 * 2 * 4 * 320, kvGqa); // 2 · L 6 · Hkv 2 · D 64 · bf16 · B 4 · 320 tokens
        // fp8 halves it, fp32 doubles it
        assertEquals(kvGqa / 2, MemoryEstimate.estimate(gqa, w, wl, ElementType.FP8, false, null).kvCache().bytes());
        assertEquals(kvGqa * 2, MemoryEstimate.estimate(gqa, w, wl, ElementType.FP32, false, null).kvCache().bytes());
    }

    /** The folder's weight bytes are the sum of its tensors' byte ranges, read here from the headers by hand. */
    @Test
    void folderWeightBytesAreTheSumOfItsTensorBytes() throws IOException {
        Path dir = Golden.model("fixture-llama-14m");
        long expected = 0;
        try (Stream<Path> files = Files.list(dir)) {
            for (Path f : files.filter(p -> p.toString().endsWith(".safetensors")).toList()) {
                expected += tensorBytesFromHeader(f);
            }
        }
        try (WeightStore store = WeightStore.open(dir)) {
            Weights w = MemoryEstimate.folderWeights(store);
            assertEquals(expected, w.bytes());
            assertEquals(0, w.embeddingBytes(), "tied embeddings: the table is read as the output head");
        }
        // and the LLaMA-family count from the config, at bf16, lands on the same bytes (no biases, tied)
        Dims d = Dims.fromConfigJson(dir.resolve("config.json"));
        assertEquals(expected, MemoryEstimate.computedWeights(d, ElementType.BF16, null, 128).bytes());
    }

    private static long tensorBytesFromHeader(Path file) throws IOException {
        try (InputStream in = Files.newInputStream(file)) {
            long n = ByteBuffer.wrap(in.readNBytes(8)).order(ByteOrder.LITTLE_ENDIAN).getLong();
            JsonNode h = new ObjectMapper().readTree(in.readNBytes((int) n));
            long total = 0;
            for (Iterator<Map.Entry<String, JsonNode>> it = h.fields(); it.hasNext(); ) {
                var e = it.next();
                if (!e.getKey().equals("__metadata__")) {
                    total += e.getValue().get("data_offsets").get(1).asLong() - e.getValue().get("data_offsets").get(0).asLong();
                }
            }
            return total;
        }
    }

    @Test
    void quantizedLinearsCountCodesScalesAndZeros() {
        // [8, 256] at 4 bits, groups of 128: 8·256·4/8 codes + 8·2 fp16 scales + 8·2 4-bit zeros
        assertEquals(1024 + 32 + 8, MemoryEstimate.quantizedBytes(8, 256, 4, 128));
        // one group per row
        assertEquals(1024 + 16 + 4, MemoryEstimate.quantizedBytes(8, 256, 4, -1));
        Dims d = new Dims(2, 256, 4, 2, 64, 512, 1000, false, "test");
        Weights w4 = MemoryEstimate.computedWeights(d, ElementType.FP16, 4, 128);
        Weights w16 = MemoryEstimate.computedWeights(d, ElementType.FP16, null, 128);
        long linearParams = 2L * (256 * 256 + 2 * 128 * 256 + 256 * 256 + 3 * 512 * 256);
        long other = 2L * 1000 * 256 + 2 * 2 * 256 + 256;
        assertEquals((linearParams + other) * 2, w16.bytes());
        assertEquals(1000L * 256 * 2, w16.embeddingBytes());
        long q4 = 2 * (MemoryEstimate.quantizedBytes(256, 256, 4, 128) * 2 + MemoryEstimate.quantizedBytes(128, 256, 4, 128) * 2
                + MemoryEstimate.quantizedBytes(512, 256, 4, 128) * 2 + MemoryEstimate.quantizedBytes(256, 512, 4, 128));
        assertEquals(q4 + other * 2, w4.bytes());
    }

    @Test
    void decodeFloorIsBytesReadOverBandwidth() {
        Gpu h100 = Gpu.named("H100");
        Weights w = new Weights(14_000_000_000L, 500_000_000L, "7B fp16, untied");
        Dims d = new Dims(32, 4096, 32, 8, 128, 14336, 32000, false, "test");
        Workload wl = new Workload(8, 1000, 24);
        MemoryEstimate e = MemoryEstimate.estimate(d, w, wl, ElementType.FP16, false, h100);
        long kv = 2L * 32 * 8 * 128 * 2 * 8 * 1024;
        assertEquals(kv, e.kvCache().bytes());
        double step = (14_000_000_000L - 500_000_000L + kv) / 3.35e12;
        assertEquals(step, e.decode().secondsPerStep(), 1e-15);
        assertEquals(8 / step, e.decode().tokensPerSecond(), 1e-6);
        assertTrue(e.fits());
        assertEquals(3.35e12, h100.bandwidth());
        assertEquals(80_000_000_000L, h100.memoryBytes());

        // the activation peak: MLP B·T·(3C + 3F)·2 beats attention here; plus B·V·4 logits
        assertEquals(8L * 1000 * (3 * 4096 + 3 * 14336) * 2, e.activations().mlpBytes());
        assertEquals(8L * 1000 * (3 * 4096 + 2 * 4096 + 2 * 1024) * 2, e.activations().attentionBytes());
        assertEquals(e.activations().mlpBytes() + 8L * 32000 * 4, e.activations().peakBytes());
        long eagerAttention = MemoryEstimate.estimate(d, w, wl, ElementType.FP16, true, h100).activations().attentionBytes();
        assertEquals(e.activations().attentionBytes() + 8L * 32 * 1000 * 1000 * 2, eagerAttention);

        MemoryEstimate big = MemoryEstimate.estimate(d, new Weights(140_000_000_000L, 0, "70B"), wl, ElementType.FP16, false,
                Gpu.named("l4"));
        assertFalse(big.fits());
    }

    @Test
    void badInputsAreClearErrors() {
        var gpu = assertThrows(ShrinkException.class, () -> Gpu.named("gtx1080"));
        assertTrue(gpu.getMessage().contains("--gpu: unknown GPU 'gtx1080' (known: h100, h100-pcie"), gpu.getMessage());
        assertTrue(gpu.getMessage().contains("a100-80g") && gpu.getMessage().contains("rtx4090"), gpu.getMessage());
        var dims = assertThrows(ShrinkException.class, () -> MemoryEstimate.computedWeights(SEEDS_20B, ElementType.FP16, null, 128));
        assertTrue(dims.getMessage().contains("cannot be sized without the intermediate size; give --params N, or --intermediate and --vocab"),
                dims.getMessage());
        var eager = assertThrows(ShrinkException.class, () -> MemoryEstimate.estimate(SEEDS_20B, new Weights(1, 0, "x"),
                new Workload(1, 1, 1), ElementType.FP16, true, null));
        assertTrue(eager.getMessage().contains("--eager-attention needs the number of heads"), eager.getMessage());
        var type = assertThrows(ShrinkException.class, () -> ElementType.parse("fp4", "--kv-dtype"));
        assertEquals("--kv-dtype: unknown type 'fp4' (fp32, fp16, bf16, fp8, int8)", type.getMessage());
    }

    @Test
    void configWithoutLayersIsRefusedNamingTheFile(@org.junit.jupiter.api.io.TempDir Path tmp) throws IOException {
        Path cfg = tmp.resolve("config.json");
        Files.writeString(cfg, "{\"hidden_size\": 512, \"num_attention_heads\": 8}");
        var e = assertThrows(ShrinkException.class, () -> Dims.fromConfigJson(cfg));
        assertEquals(cfg + ": has no num_hidden_layers: the estimate needs the number of layers and the hidden size", e.getMessage());
        Files.writeString(cfg, "{\"hidden_size\": 512, \"num_hidden_layers\": \"many\"}");
        e = assertThrows(ShrinkException.class, () -> Dims.fromConfigJson(cfg));
        assertTrue(e.getMessage().contains("num_hidden_layers is \"many\", not a positive integer"), e.getMessage());
    }

    /** The seeds' example with a quantized cache: int8 is half of fp16 plus an fp16 scale and zero per token and head. */
    @Test
    void seedsExampleInt8AndInt4CachesAddTheirScales() {
        Workload wl = new Workload(16, 512, 32);
        long fp16 = MemoryEstimate.estimate(SEEDS_20B, null, wl, KvDtype.FP16, false, null).kvCache().bytes();
        assertEquals(10_267_656_192L, fp16);
        // no heads given: scale groups of 128 → 6144 / 128 = 48 per layer; 2 (K, V) × 48 layers × 48 × 4 B per token
        long scales = 2L * 48 * 48 * 4 * 16 * 544;
        MemoryEstimate int8 = MemoryEstimate.estimate(SEEDS_20B, null, wl, KvDtype.INT8, false, null);
        assertEquals(fp16 / 2 + scales, int8.kvCache().bytes());
        assertEquals(5_294_260_224L, int8.kvCache().bytes());
        assertEquals(2L * 48 * 48 * 4, int8.kvCache().scaleBytesPerToken());
        assertTrue(int8.activations().assumptions().stream().anyMatch(a -> a.contains("per head of 128")),
                int8.activations().assumptions().toString());
        assertEquals(fp16 / 4 + scales, MemoryEstimate.estimate(SEEDS_20B, null, wl, KvDtype.INT4, false, null).kvCache().bytes());
        assertEquals(KvDtype.INT4, KvDtype.parse("int4", "--kv-dtype"));
        assertEquals(KvDtype.BF16, KvDtype.parse("bfloat16", "--kv-dtype"));
        assertThrows(ShrinkException.class, () -> KvDtype.parse("int2", "--kv-dtype"));
    }

    /** FLOPs, latencies, throughput and the largest batches of a small GQA shape, against the formulas worked by hand. */
    @Test
    void computeAndLargestBatchMatchHandArithmetic() {
        // L 2, C 64, H 4, Hkv 2, D 16, F 128, V 100, untied; B 2, T 8, n 4 on an H100
        Dims d = new Dims(2, 64, 4, 2, 16, 128, 100, false, "small");
        Weights w = new Weights(1_000_000, 12_800, "given");
        Workload wl = new Workload(2, 8, 4);
        Gpu h100 = Gpu.named("h100");
        MemoryEstimate e = MemoryEstimate.estimate(d, w, wl, KvDtype.FP16, false, h100);
        var c = e.compute();
        // per layer: q 64·64 + k, v 2·32·64 + o 64·64 + gate, up, down 3·128·64 = 36,864; head 100·64 = 6,400
        double linear = 2.0 * (2 * 36_864 + 6_400);                       // 160,256
        assertEquals(160_256, linear);
        double meanContext = 8 + (4 + 1) / 2.0;                           // 10.5
        assertEquals(linear + 4.0 * 2 * 64 * meanContext, c.decodeFlopsPerToken(), 1e-6);
        // prefill: B·(T·(linear − head) + head + attention Σ_{p=1..8} 4·L·H·D·p = 2·2·64·8·9)
        double prefill = 2 * (8 * (160_256 - 12_800) + 12_800 + 2.0 * 2 * 64 * 8 * 9);
        assertEquals(2_421_760, prefill);
        assertEquals(prefill, c.prefillFlops(), 1e-6);
        assertEquals(prefill / 16, c.prefillFlopsPerToken(), 1e-9);
        double weightRead = 1_000_000 - 12_800;
        // tiny: reading the weights takes longer than the FLOPs, so both are memory-bound
        assertEquals(Math.max(prefill / 989.4e12, weightRead / 3.35e12), c.prefillSeconds(), 1e-18);
        assertEquals("memory", c.prefillBound());
        long kvPerToken = 2L * 2 * 2 * 16 * 2;                             // 256 B
        double step = (weightRead + kvPerToken * 2 * meanContext) / 3.35e12;
        assertEquals(step, c.decodeSecondsPerStep(), 1e-18);
        assertEquals("memory", c.decodeBound());
        assertEquals(2 / step, c.decodeTokensPerSecond(), 1e-3);
        assertEquals(1 / step, c.decodeTokensPerSecondPerSequence(), 1e-3);
        assertEquals(16 / c.prefillSeconds(), c.prefillTokensPerSecond(), 1e-3);
        assertEquals(2 * 4 / (c.prefillSeconds() + 4 * step), c.throughput(), 1e-3);

        // one sequence's activations: max(attention 8·(3·64 + 2·64 + 2·32)·2, MLP 8·(3·64 + 3·128)·2) + logits 100·4
        long act = Math.max(8L * (192 + 128 + 64) * 2, 8L * (192 + 384) * 2) + 400;
        assertEquals(9_616, act);
        long free = 80_000_000_000L - 1_000_000;
        var fits = e.maxBatch();
        assertEquals(6, fits.size());
        // bytes per token: fp16 256; int8 2·2·(32 + 2·4) = 160; int4 2·2·(16 + 8) = 96; fp8 128; fp32 512
        long[] perToken = {512, 256, 256, 128, 160, 96};
        String[] ids = {"fp32", "fp16", "bf16", "fp8", "int8", "int4"};
        for (int i = 0; i < 6; i++) {
            assertEquals(ids[i], fits.get(i).kvDtype());
            assertEquals(perToken[i], fits.get(i).kvBytesPerToken());
            assertEquals(free / (perToken[i] * 12 + act), fits.get(i).maxBatch(), ids[i]);
        }
        assertTrue(fits.get(5).maxBatch() > fits.get(4).maxBatch() && fits.get(4).maxBatch() > fits.get(1).maxBatch());

        // a large batch turns the decode step compute-bound: B·FLOPs / tensor FLOP/s beats the bytes
        // (a wide MLP and one KV head, so that the weights' FLOPs outgrow the KV bytes read per sequence)
        Dims wide = new Dims(2, 64, 4, 1, 16, 4096, 100, false, "wide");
        var cb = MemoryEstimate.estimate(wide, w, new Workload(100_000, 1, 1), KvDtype.INT4, false, h100).compute();
        double wideLinear = 2.0 * (2 * (64 * 64 + 2 * 16 * 64 + 64 * 64 + 3 * 4096 * 64) + 6_400);
        assertEquals("compute", cb.decodeBound());
        assertEquals(100_000 * (wideLinear + 4.0 * 2 * 64 * 2) / 989.4e12, cb.decodeSecondsPerStep(), 1e-15);
    }
}
