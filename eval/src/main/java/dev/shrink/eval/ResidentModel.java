package dev.shrink.eval;

import dev.shrink.core.ShrinkException;
import dev.shrink.core.forward.ArrayTaps;
import dev.shrink.core.forward.BlockWeights;
import dev.shrink.core.forward.Forward;
import dev.shrink.core.forward.KvCacheType;
import dev.shrink.core.forward.NonFinite;
import dev.shrink.core.forward.WeightSource;
import dev.shrink.core.model.ArchitectureSpec;
import dev.shrink.core.model.ModelConfig;
import dev.shrink.core.model.ModelDir;
import dev.shrink.core.quant.GptqPacking;
import dev.shrink.core.quant.QuantizedLinear;
import dev.shrink.core.safetensors.TensorInfo;
import dev.shrink.core.safetensors.WeightStore;
import dev.shrink.core.tensor.DType;
import dev.shrink.core.tensor.Floats;
import dev.shrink.core.util.Progress;
import dev.shrink.kernels.cuda.CudaDevice;
import dev.shrink.kernels.cuda.CudaForwardOps;
import dev.shrink.kernels.cuda.CudaOps;
import dev.shrink.kernels.cuda.DeviceBlock;
import dev.shrink.kernels.cuda.DeviceBlock.Kind;
import dev.shrink.kernels.cuda.DeviceBuffer;
import dev.shrink.kernels.cuda.DeviceOps;
import dev.shrink.kernels.cuda.GemmMath;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * A model folder resident on the GPU for evaluation: every weight uploaded once, the one
 * {@link Forward} run over device buffers ({@link CudaForwardOps}), logits and the NLL of each next
 * token reduced on the device; only the per-token NLLs come back. Windows are batched up to
 * {@link #batchRows()} tokens.
 *
 * <p>How the linears are held depends on the GEMM arithmetic: in fp32 and tf32 every weight is
 * float32 (packed folders dequantized on the host while loading: the parity path); in fp16 dense
 * weights are fp16 (copied as they are from an F16 folder) and GPTQ-packed linears stay packed,
 * dequantized on the device into one reused fp16 buffer per use (AWQ's codes are repacked into
 * GPTQ's layout on the host, never dequantized there).
 */
public final class ResidentModel implements WindowScorer, AutoCloseable {
    private final ModelConfig cfg;
    private final CudaForwardOps ops;
    private final Forward<DeviceBuffer, DeviceBlock> forward;
    private final List<DeviceBlock> blocks;
    private final DeviceBuffer embed;     // float32 [V, C]
    private final DeviceBuffer finalNorm; // float32 [C]
    private final DeviceBlock.Linear head;
    private final String source;
    private final String weightsNote;
    private final long weightBytes;
    private final double loadSeconds;

    private ResidentModel(ModelConfig cfg, CudaForwardOps ops, Forward<DeviceBuffer, DeviceBlock> forward,
                          List<DeviceBlock> blocks, DeviceBuffer embed, DeviceBuffer finalNorm, DeviceBlock.Linear head,
                          String source, String weightsNote, long weightBytes, double loadSeconds) {
        this.cfg = cfg;
        this.ops = ops;
        this.forward = forward;
        this.blocks = blocks;
        this.embed = embed;
        this.finalNorm = finalNorm;
        this.head = head;
        this.source = source;
        this.weightsNote = weightsNote;
        this.weightBytes = weightBytes;
        this.loadSeconds = loadSeconds;
    }

    /** Uploads {@code dir}'s weights to {@code cuda}'s device; attention reads K and V through {@code kvCache}. */
    public static ResidentModel load(ModelDir dir, CudaOps cuda, KvCacheType kvCache, boolean quiet) {
        long t0 = System.nanoTime();
        ModelConfig cfg = dir.config();
        ArchitectureSpec spec = dir.spec();
        WeightSource src = WeightSources.forModel(dir);
        WeightStore store = dir.weights();
        DeviceOps d = cuda.deviceOps();
        CudaDevice dev = cuda.device();
        boolean half = cuda.math() == GemmMath.FP16;
        CudaForwardOps ops = new CudaForwardOps(cfg, d);
        List<DeviceBlock> blocks = new ArrayList<>();
        DeviceBuffer embed = null, norm = null;
        DeviceBlock.Linear head = null;
        long before = dev.allocatedBytes();
        int[] kinds = new int[Kind.values().length];
        try (Progress progress = new Progress("load " + dir.dir().getFileName(), cfg.layers() + 2L, "tensors", quiet)) {
            int C = cfg.hidden(), V = cfg.vocab();
            embed = upload(dev, WeightSource.checked(src, spec.embedTokens(), V, C));
            String headName = src.has(spec.lmHead()) ? spec.lmHead() : cfg.tiedEmbeddings() ? spec.embedTokens() : null;
            if (headName == null) {
                throw new ShrinkException(src.origin(spec.lmHead()) + ": the weights have no '" + spec.lmHead()
                        + "' and config.json does not set tie_word_embeddings: true");
            }
            head = dense(dev, src, store, headName, V, C, half);
            norm = upload(dev, spec.normWeight(WeightSource.checked(src, spec.finalNorm(), C)));
            progress.step(2);
            for (int l = 0; l < cfg.layers(); l++) {
                // norms as the multipliers the forward uses (Gemma's stored w as 1 + w), as BlockWeights reads them
                DeviceBlock b = new DeviceBlock(l, upload(dev, spec.normWeight(WeightSource.checked(src, spec.layer(l, spec.inputNorm()), C))),
                        upload(dev, spec.normWeight(WeightSource.checked(src, spec.layer(l, spec.postAttentionNorm()), C))));
                blocks.add(b);
                if (spec.qNorm() != null) {
                    b.setHeadNorms(upload(dev, spec.normWeight(WeightSource.checked(src, spec.layer(l, spec.qNorm()), cfg.headDim()))),
                            upload(dev, spec.normWeight(WeightSource.checked(src, spec.layer(l, spec.kNorm()), cfg.headDim()))));
                }
                if (spec.attentionOutputNorm() != null) {
                    b.setOutputNorms(upload(dev, spec.normWeight(WeightSource.checked(src, spec.layer(l, spec.attentionOutputNorm()), C))),
                            upload(dev, spec.normWeight(WeightSource.checked(src, spec.layer(l, spec.mlpOutputNorm()), C))));
                }
                java.util.Map<String, int[]> linears = new java.util.LinkedHashMap<>();
                boolean sparse = cfg.sparseLayer(l);
                for (ArchitectureSpec.Linear lin : spec.linears()) {
                    int[] nk = switch (lin.role()) {
                        case Q -> new int[] {cfg.qDim(), C};
                        case K, V -> new int[] {cfg.kvDim(), C};
                        case O -> new int[] {C, cfg.qDim()};
                        case GATE, UP -> sparse ? null : new int[] {cfg.intermediate(), C};
                        case DOWN -> sparse ? null : new int[] {C, cfg.intermediate()};
                    };
                    if (nk != null) { // a sparse block's MLP is its experts, as BlockWeights reads them
                        linears.put(lin.name(), nk);
                    }
                }
                if (sparse) {
                    linears.putAll(BlockWeights.moeLinears(cfg, spec));
                }
                for (var lin : linears.entrySet()) {
                    int[] nk = lin.getValue();
                    String base = spec.layer(l, lin.getKey());
                    // a mixture's router and shared-expert gate stay float32 in fp16 math: routing is a discrete choice
                    boolean gate = spec.moe() != null && (lin.getKey().equals(spec.moe().router())
                            || lin.getKey().equals(spec.moe().sharedExpertGate()));
                    DeviceBlock.Linear dl = half && src instanceof PackedWeightSource p && p.isQuantized(base)
                            ? packed(dev, p, base, nk[0], nk[1])
                            : dense(dev, src, store, base + ".weight", nk[0], nk[1], half && !gate);
                    if (dl.bias() == null && src.has(base + ".bias")) {
                        dl = new DeviceBlock.Linear(dl.kind(), dl.N(), dl.K(), dl.weight(), dl.qzeros(), dl.scales(),
                                dl.gIdx(), dl.groupSize(), dl.bits(), dl.v1Zeros(), upload(dev, WeightSource.checked(src, base + ".bias", nk[0])));
                    }
                    kinds[dl.kind().ordinal()]++;
                    b.put(lin.getKey(), dl);
                }
                progress.step(1);
            }
            dev.synchronize();
        } catch (RuntimeException | Error e) {
            blocks.forEach(DeviceBlock::close);
            for (AutoCloseable c : new AutoCloseable[] {embed, norm, head}) {
                if (c != null) {
                    try {
                        c.close();
                    } catch (Exception ignored) {
                        // the first failure is the one to report
                    }
                }
            }
            ops.close();
            throw e;
        }
        long bytes = dev.allocatedBytes() - before;
        String note = String.format(Locale.ROOT, "%d linears fp32, %d fp16, %d packed (dequantized on the GPU)",
                kinds[Kind.F32.ordinal()], kinds[Kind.F16.ordinal()], kinds[Kind.PACKED.ordinal()]);
        Forward<DeviceBuffer, DeviceBlock> forward = new Forward<>(cfg, spec, ops, kvCache, false);
        return new ResidentModel(cfg, ops, forward, blocks, embed, norm, head, dir.dir().toString(), note, bytes,
                (System.nanoTime() - t0) / 1e9);
    }

    private static DeviceBuffer upload(CudaDevice dev, float[] a) {
        DeviceBuffer b = dev.alloc(Math.max(4, a.length * 4L));
        dev.upload(MemorySegment.ofArray(a), b, 0);
        return b;
    }

    private static DeviceBuffer upload(CudaDevice dev, MemorySegment s) {
        DeviceBuffer b = dev.alloc(Math.max(4, s.byteSize()));
        dev.upload(s, b, 0);
        return b;
    }

    /** A dense [N, K] weight: fp16 (an F16 tensor copied as it is, others converted) or float32. */
    private static DeviceBlock.Linear dense(CudaDevice dev, WeightSource src, WeightStore store, String name, int N, int K,
                                            boolean half) {
        if (half && store.has(name) && store.info(name).dtype() == DType.F16
                && java.util.Arrays.equals(store.info(name).shape(), new long[] {N, K})) {
            return DeviceBlock.Linear.dense(Kind.F16, N, K, upload(dev, store.data(name)), null);
        }
        float[] w = WeightSource.checked(src, name, N, K);
        if (!half) {
            return DeviceBlock.Linear.dense(Kind.F32, N, K, upload(dev, w), null);
        }
        return DeviceBlock.Linear.dense(Kind.F16, N, K, upload(dev, MemorySegment.ofArray(Floats.toF16(w))), null);
    }

    /** A packed linear kept packed: GPTQ's tensors uploaded as stored, AWQ's codes repacked into GPTQ's layout. */
    private static DeviceBlock.Linear packed(CudaDevice dev, PackedWeightSource p, String base, int N, int K) {
        WeightStore store = p.store();
        if (p instanceof GptqWeightSource g) {
            GptqWeightSource.Packed t = g.packed(base);
            if ((t.bits() == 4 || t.bits() == 8) && t.N() == N && t.K() == K) {
                TensorInfo sc = store.info(t.scales());
                MemorySegment scales = sc.dtype() == DType.F16 ? store.data(t.scales())
                        : MemorySegment.ofArray(Floats.toF16(store.floats(t.scales())));
                return DeviceBlock.Linear.packed(N, K, upload(dev, store.data(t.qweight())),
                        upload(dev, store.data(t.qzeros())), upload(dev, scales),
                        t.gIdx() == null ? null : upload(dev, MemorySegment.ofArray(t.gIdx())), t.groupSize(), t.bits(),
                        t.v1(), t.bias() == null ? null : upload(dev, store.floats(t.bias())));
            }
        }
        QuantizedLinear q = p.linear(base);
        if ((q.bits() != 4 && q.bits() != 8) || q.N() != N || q.K() != K || (long) N * q.bits() % 32 != 0) {
            return DeviceBlock.Linear.dense(Kind.F16, N, K, upload(dev, MemorySegment.ofArray(Floats.toF16(q.dequantize()))),
                    q.bias() == null ? null : upload(dev, q.bias()));
        }
        int G = QuantizedLinear.groups(K, q.groupSize());
        boolean sequential = java.util.Arrays.equals(q.gIdx(), QuantizedLinear.sequentialGIdx(K, q.groupSize()));
        return DeviceBlock.Linear.packed(N, K,
                upload(dev, MemorySegment.ofArray(GptqPacking.packQweight(q.codes(), N, K, q.bits()))),
                upload(dev, MemorySegment.ofArray(GptqPacking.packQzeros(q.zeros(), G, N, q.bits(), false))),
                upload(dev, MemorySegment.ofArray(Floats.toF16(q.scales()))),
                sequential ? null : upload(dev, MemorySegment.ofArray(q.gIdx())), q.groupSize(), q.bits(), false,
                q.bias() == null ? null : upload(dev, q.bias()));
    }

    @Override
    public ModelConfig config() {
        return cfg;
    }

    @Override
    public String backend() {
        return ops.name();
    }

    /** 8192 tokens per forward: GEMMs of thousands of rows, activations of a few GB at 7B. */
    @Override
    public int batchRows() {
        return 8192;
    }

    @Override
    public double[] nll(int[] tokens, int B, int T) {
        return run(forward, tokens, B, T);
    }

    private double[] run(Forward<DeviceBuffer, DeviceBlock> f, int[] tokens, int B, int T) {
        int C = cfg.hidden(), V = cfg.vocab(), rows = B * T;
        if (tokens.length != rows) {
            throw new IllegalArgumentException("tokens.length " + tokens.length + " != B·T = " + rows);
        }
        for (int id : tokens) {
            if (id < 0 || id >= V) {
                throw new IllegalArgumentException("token id " + id + " outside the vocabulary of " + V);
            }
        }
        DeviceOps d = ops.deviceOps();
        CudaDevice dev = ops.device();
        int[] targets = new int[rows];
        for (int r = 0; r < rows; r++) {
            targets[r] = r % T == T - 1 ? -1 : tokens[r + 1];
        }
        DeviceBuffer ids = ops.alloc(rows), tg = ops.alloc(rows), x = ops.alloc((long) rows * C);
        DeviceBuffer nll = ops.alloc(2L * rows); // float64 [rows]
        try {
            d.upload(tokens, ids, 0);
            d.upload(targets, tg, 0);
            d.embed(embed.address(), ids.address(), rows, C, x.address());
            f.scaleEmbeddings(x, rows);
            for (DeviceBlock b : blocks) {
                f.block(b, x, B, T, null, ArrayTaps.none());
            }
            f.finalNorm(finalNorm, x, rows);
            int chunk = (int) Math.max(1, Math.min(rows, (256L << 20) / V));
            DeviceBuffer logits = ops.alloc((long) chunk * V);
            try {
                for (int r0 = 0; r0 < rows; r0 += chunk) {
                    int n = Math.min(chunk, rows - r0);
                    ops.project(head, x.floatAt((long) r0 * C), n, logits.address());
                    f.capLogits(logits, (long) n * V);
                    f.check(logits, (long) n * V, "the logits (lm_head)");
                    d.crossEntropy(logits.address(), tg.floatAt(r0), n, V, nll.floatAt(2L * r0));
                }
            } finally {
                ops.release(logits);
            }
            double[] out = new double[rows];
            dev.download(nll, 0, MemorySegment.ofArray(out));
            return out;
        } finally {
            ops.release(ids);
            ops.release(tg);
            ops.release(x);
            ops.release(nll);
        }
    }

    @Override
    public ShrinkException nonFinite(int[] tokens, int B, int T, String what) {
        String prefix = source + ": " + what + ": ";
        try {
            run(forward.checking(), tokens, B, T);
        } catch (NonFinite.OpException e) {
            return new ShrinkException(prefix + e.getMessage(), e);
        }
        return new ShrinkException(prefix + "the result is not finite (NaN or infinite), although no op of the "
                + "forward was when run again with checks");
    }

    /** How the linears are held, e.g. "224 linears fp32, 0 fp16, 0 packed ...". */
    public String weightsNote() {
        return weightsNote;
    }

    /** Device bytes of the weights. */
    public long weightBytes() {
        return weightBytes;
    }

    public double loadSeconds() {
        return loadSeconds;
    }

    /** The device's peak of bytes allocated through Shrink so far (weights, activations, scratch). */
    public long peakBytes() {
        return ops.device().peakAllocatedBytes();
    }

    @Override
    public void close() {
        blocks.forEach(DeviceBlock::close);
        embed.close();
        finalNorm.close();
        head.close();
        ops.close();
    }
}
