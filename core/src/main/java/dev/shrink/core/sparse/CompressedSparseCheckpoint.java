package dev.shrink.core.sparse;

import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.shrink.core.ShrinkException;
import dev.shrink.core.forward.FusedLinears;
import dev.shrink.core.model.ArchitectureSpec;
import dev.shrink.core.model.ModelDir;
import dev.shrink.core.safetensors.ModelFolderWriter;
import dev.shrink.core.safetensors.SafetensorsWriter;
import dev.shrink.core.safetensors.TensorData;
import dev.shrink.core.safetensors.TensorInfo;
import dev.shrink.core.safetensors.WeightStore;
import dev.shrink.core.sparse.CompressedSparse.Format;
import dev.shrink.core.tensor.DType;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.TreeSet;

/**
 * Writes a pruned model as a compressed-tensors sparse folder ({@code sparse-bitmask} or
 * {@code sparse-24-bitmask}; layout in {@link CompressedSparse}) that transformers (through
 * compressed-tensors' ModelCompressor, which decompresses on load) and Shrink's eval read.
 *
 * <p>For every tensor of the source, in the source's order: a weight named in {@code compress} is
 * replaced by {@code X.shape}, {@code X.compressed}, {@code X.bitmask} (and {@code X.row_offsets}
 * for sparse-bitmask), its values taken from {@code replaced} when there, else from the source, and
 * stored in the source tensor's dtype; a weight only in {@code replaced} is written dense in its
 * source dtype with the new values; every other tensor is copied byte for byte.
 *
 * <p>config.json is the source's with every key kept (including the {@code shrink} key the dense
 * pruner writes) plus, as compressed-tensors' {@code ModelCompressor.update_config} writes it for a
 * sparse-only model (keys sorted):
 * <pre>{@code
 * "quantization_config": {
 *   "quant_method": "compressed-tensors",
 *   "sparsity_config": {
 *     "format": "sparse-24-bitmask",           // or "sparse-bitmask"
 *     "global_sparsity": 0.4712,               // zeros / elements over every float tensor of the folder
 *     "ignore": ["lm_head", ...],              // the Linear modules not compressed
 *     "sparsity_structure": "2:4",             // "unstructured" unless every compressed weight is 2:4
 *     "targets": ["Linear"]
 *   }
 * }
 * }</pre>
 * (SparsityCompressionConfig in {@code src/compressed_tensors/config/base.py}; the optional
 * {@code version} and empty {@code transform_config} that update_config adds are left out: loaders read
 * them with defaults.) Which weights are compressed is also visible in the files: a loader decompresses
 * every {@code X} that has {@code X.compressed}/{@code X.bitmask}; targets/ignore say the same for
 * loaders that match modules ({@code match_named_modules}: "Linear" is the class name).
 *
 * <p>How readers recognise such a folder (from their source): transformers maps
 * {@code quant_method: "compressed-tensors"} to its CompressedTensorsHfQuantizer, whose
 * {@code is_sparsification_compressed} is true for a sparsity_config whose format is not "dense", and
 * decompresses through compressed-tensors' {@code ModelCompressor} ({@code parse_sparsity_config},
 * {@code BaseSparseCompressor.decompress}: every X with the format's tensors becomes {@code X.weight}).
 * vLLM's CompressedTensorsConfig reads the same sparsity_config ({@code _parse_sparsity_config}: targets
 * → scheme, ignore list); for unquantized (w16a16) 2:4 weights its CUTLASS 2:4 scheme is disabled in the
 * version read (it falls back to UnquantizedLinearMethod), and llm-compressor warns that sparse-only 2:4
 * folders are not supported by vLLM ≤ 0.7.0: this writer makes no claim about serving them in vLLM.
 *
 * <p>The folder appears atomically through {@link ModelFolderWriter}: everything is checked and encoded
 * first (a weight that is not 2:4 for sparse-24-bitmask is a {@link ShrinkException} naming it, and
 * nothing is written), then written to a temporary sibling and renamed into place.
 */
public final class CompressedSparseCheckpoint {

    /** Default shard limit of the weight files: 4 GiB. */
    public static final long DEFAULT_MAX_SHARD_BYTES = 4L << 30;

    /** compressed-tensors' quant_method (DEFAULT_QUANTIZATION_METHOD). */
    public static final String QUANT_METHOD = "compressed-tensors";

    private static final ValueLayout.OfShort SHORT_LE = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfInt INT_LE = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private CompressedSparseCheckpoint() {
    }

    /**
     * What was written.
     *
     * @param dir            the folder
     * @param format         the sparse format
     * @param compressed     how many weights are stored compressed
     * @param globalSparsity zeros / elements over every float tensor written (as recorded in the config)
     * @param weightBytes    bytes of tensor data in the folder's safetensors files
     */
    public record Written(Path dir, Format format, int compressed, double globalSparsity, long weightBytes) {
    }

    /** {@link #write(ModelDir, Path, Map, Set, String, Object, boolean, long)} with 4 GiB shards. */
    public static Written write(ModelDir source, Path outDir, Map<String, float[]> replaced, Set<String> compress,
                                String format, Object report, boolean overwrite) {
        return write(source, outDir, replaced, compress, format, report, overwrite, DEFAULT_MAX_SHARD_BYTES);
    }

    /**
     * Writes the compressed sparse folder {@code outDir}.
     *
     * @param source        the model the tensors come from (kept open while writing)
     * @param replaced      "X.weight" → new values [N, K] (the pruned weight); may be empty
     * @param compress      the "X.weight" tensors to store compressed: linear weights of the decoder
     *                      blocks or the output head
     * @param format        "sparse-bitmask" or "sparse-24-bitmask"
     * @param report        serialized with Jackson to shrink-report.json; null for none
     * @param overwrite     replace a non-empty {@code outDir} (only once the new folder is complete)
     * @param maxShardBytes weight file size limit; larger models are sharded with an index
     * @throws IllegalArgumentException if a name is not a tensor of the source, a replaced tensor has the
     *                                  wrong number of values, or a compressed one is not a linear's
     *                                  float weight
     * @throws ShrinkException          for an unknown format, a source that is already quantized or
     *                                  compressed, a weight that is not 2:4 for sparse-24-bitmask, an
     *                                  existing non-empty outDir without overwrite, or a write error;
     *                                  nothing is left behind then
     */
    public static Written write(ModelDir source, Path outDir, Map<String, float[]> replaced, Set<String> compress,
                                String format, Object report, boolean overwrite, long maxShardBytes) {
        return write(source, outDir, replaced, compress, format, report, overwrite, maxShardBytes, null);
    }

    /**
     * {@link #write(ModelDir, Path, Map, Set, String, Object, boolean, long)}, also recording
     * {@code sparsity} under config.json's {@code shrink.sparsity} (null: the source's config as it is).
     */
    public static Written write(ModelDir source, Path outDir, Map<String, float[]> replaced, Set<String> compress,
                                String format, Object report, boolean overwrite, long maxShardBytes,
                                SparsityRecord sparsity) {
        Objects.requireNonNull(source, "source");
        Objects.requireNonNull(outDir, "outDir");
        Objects.requireNonNull(replaced, "replaced");
        Objects.requireNonNull(compress, "compress");
        if (maxShardBytes <= 0) {
            throw new IllegalArgumentException("maxShardBytes must be positive: " + maxShardBytes);
        }
        Format fmt = Format.fromConfigName(format);
        if (fmt == null) {
            throw new ShrinkException("unknown compressed-tensors sparse format '" + format + "' (known: "
                    + Format.names() + ")");
        }
        Path configFile = source.dir().resolve("config.json");
        if (source.config().raw().hasNonNull("quantization_config")) {
            throw ShrinkException.at(configFile, "the source model already has a quantization_config (quantized or "
                    + "compressed); compressed sparse formats are written from a dense model");
        }
        ModelFolderWriter.checkTarget(source.dir(), outDir, overwrite, "the compressed sparse model");
        WeightStore store = source.weights();
        // the parts of a fused linear (Phi-3's q/k/v, gate/up) go back into the tensor the checkpoint stores
        replaced = FusedLinears.fuseDense(source.spec(), source.config(), FusedLinears.of(source), replaced);
        compress = FusedLinears.fuseNames(source.spec(), source.config(), compress);
        Set<String> linears = linearWeights(source);
        check(store, replaced, compress, linears);

        // Encode everything before anything is written: a weight that is not 2:4 stops here.
        List<TensorData> tensors = new ArrayList<>();
        long zeros = 0, elements = 0;
        boolean allTwoFour = true;
        for (String name : store.names()) {
            TensorInfo info = store.info(name);
            if (compress.contains(name)) {
                float[] W = replaced.containsKey(name) ? replaced.get(name) : store.floats(name);
                int N = (int) info.shape()[0], K = (int) info.shape()[1];
                CompressedSparse.Encoded e;
                try {
                    e = CompressedSparse.encode(name, fmt, W, N, K, info.dtype());
                } catch (IllegalArgumentException ex) {
                    throw new ShrinkException("cannot write " + outDir + " as " + fmt.configName() + ": weight "
                            + ex.getMessage());
                }
                allTwoFour &= CompressedSparse.isTwoFour(W, N, K);
                tensors.addAll(e.tensors(prefixOf(name)));
                zeros += countZeros(W);
                elements += W.length;
            } else if (replaced.containsKey(name)) {
                float[] W = replaced.get(name);
                tensors.add(TensorData.ofFloats(name, info.shape(), W, info.dtype()));
                zeros += countZeros(W);
                elements += W.length;
            } else {
                MemorySegment data = store.data(name);
                tensors.add(new TensorData(name, info.dtype(), info.shape(), data));
                if (info.dtype().isFloating()) {
                    zeros += countZeros(data, info.dtype());
                    elements += info.numel();
                }
            }
        }
        double globalSparsity = elements == 0 ? 0 : (double) zeros / elements;
        String structure = fmt == Format.SPARSE_24_BITMASK || (allTwoFour && !compress.isEmpty()) ? "2:4" : "unstructured";
        ObjectNode qc = quantizationConfig(fmt, globalSparsity, structure, ignored(source, linears, compress));
        ObjectNode cfg = sparsity == null ? source.config().raw().deepCopy() : sparsity.writeInto(source.config().raw());
        cfg.set("quantization_config", qc);

        long bytes = 0;
        for (TensorData t : tensors) {
            bytes += t.data().byteSize();
        }
        ModelFolderWriter.write(source.dir(), outDir, overwrite, "the compressed sparse model", tmp -> {
            SafetensorsWriter.writeModel(tmp, tensors, maxShardBytes, null);
            ModelFolderWriter.writeJson(tmp.resolve("config.json"), cfg);
            if (report != null) {
                ModelFolderWriter.writeReport(tmp, report);
            }
            ModelFolderWriter.copyOtherFiles(source.dir(), tmp);
        });
        return new Written(outDir, fmt, compress.size(), globalSparsity, bytes);
    }

    /** config.json's quantization_config for a sparse-only compressed-tensors model. */
    static ObjectNode quantizationConfig(Format fmt, double globalSparsity, String structure, List<String> ignore) {
        JsonNodeFactory f = JsonNodeFactory.instance;
        ObjectNode sc = f.objectNode();
        sc.put("format", fmt.configName());
        sc.put("global_sparsity", globalSparsity);
        ArrayNode ig = sc.putArray("ignore");
        ignore.forEach(ig::add);
        sc.put("sparsity_structure", structure);
        sc.putArray("targets").add("Linear");
        ObjectNode qc = f.objectNode();
        qc.put("quant_method", QUANT_METHOD);
        qc.set("sparsity_config", sc);
        return qc;
    }

    /** "X" of "X.weight". */
    static String prefixOf(String weightName) {
        return weightName.substring(0, weightName.length() - ".weight".length());
    }

    /** The weights of every Linear module: the decoder blocks' linears and the output head (when stored). */
    private static Set<String> linearWeights(ModelDir source) {
        ArchitectureSpec spec = source.spec();
        Set<String> out = new LinkedHashSet<>();
        for (int i = 0; i < source.config().layers(); i++) {
            for (ArchitectureSpec.Linear l : spec.linears()) {
                out.add(spec.layer(i, l.name()) + ".weight");
            }
        }
        if (source.weights().has(spec.lmHead())) {
            out.add(spec.lmHead());
        }
        return FusedLinears.fuseNames(spec, source.config(), out);
    }

    /**
     * The Linear modules that keep a dense weight, sorted: every decoder linear and the output head
     * not compressed. The head is listed even with tied embeddings (no lm_head.weight): the model still
     * has the Linear module, and the "Linear" target would match it.
     */
    private static List<String> ignored(ModelDir source, Set<String> linears, Set<String> compress) {
        Set<String> out = new TreeSet<>();
        for (String w : linears) {
            if (!compress.contains(w)) {
                out.add(prefixOf(w));
            }
        }
        String head = source.spec().lmHead();
        if (!compress.contains(head)) {
            out.add(prefixOf(head));
        }
        return List.copyOf(out);
    }

    private static void check(WeightStore store, Map<String, float[]> replaced, Set<String> compress, Set<String> linears) {
        for (Map.Entry<String, float[]> e : replaced.entrySet()) {
            String name = e.getKey();
            if (!store.has(name)) {
                throw new IllegalArgumentException("replaced tensor '" + name + "' is not in the source model");
            }
            TensorInfo info = store.info(name);
            checkFloat(info);
            float[] v = Objects.requireNonNull(e.getValue(), name);
            if (v.length != info.numel()) {
                throw new IllegalArgumentException("replaced tensor '" + name + "' has " + v.length + " values; the source's "
                        + java.util.Arrays.toString(info.shape()) + " has " + info.numel());
            }
        }
        for (String name : compress) {
            if (!store.has(name)) {
                throw new IllegalArgumentException("tensor '" + name + "' to compress is not in the source model");
            }
            if (!linears.contains(name)) {
                throw new IllegalArgumentException("tensor '" + name + "' is not the weight of a Linear module "
                        + "(a decoder block's linear or lm_head); compressed-tensors sparsity targets Linear layers");
            }
            TensorInfo info = store.info(name);
            checkFloat(info);
            if (info.rank() != 2) {
                throw new IllegalArgumentException("tensor '" + name + "' has shape " + java.util.Arrays.toString(info.shape())
                        + "; a compressed weight is [N, K]");
            }
        }
    }

    private static void checkFloat(TensorInfo info) {
        DType d = info.dtype();
        if (d != DType.F32 && d != DType.F16 && d != DType.BF16) {
            throw new IllegalArgumentException("tensor '" + info.name() + "' is " + d.safetensorsName()
                    + "; only F32, F16 and BF16 weights can be replaced or compressed");
        }
    }

    private static long countZeros(float[] W) {
        long z = 0;
        for (float w : W) {
            if (w == 0f) {
                z++;
            }
        }
        return z;
    }

    /** Zeros (either sign) of a float tensor's raw data; other float dtypes (F64, F8) count as dense. */
    private static long countZeros(MemorySegment data, DType dtype) {
        long z = 0;
        switch (dtype) {
            case F16, BF16 -> {
                long n = data.byteSize() / 2;
                for (long i = 0; i < n; i++) {
                    if ((data.get(SHORT_LE, 2 * i) & 0x7FFF) == 0) {
                        z++;
                    }
                }
            }
            case F32 -> {
                long n = data.byteSize() / 4;
                for (long i = 0; i < n; i++) {
                    if ((data.get(INT_LE, 4 * i) & 0x7FFFFFFF) == 0) {
                        z++;
                    }
                }
            }
            default -> {
            }
        }
        return z;
    }
}
