package dev.shrink.cli;

import dev.shrink.core.model.ModelConfig;
import dev.shrink.core.model.ModelDir;
import dev.shrink.core.safetensors.TensorInfo;
import dev.shrink.core.safetensors.WeightStore;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Model.CommandSpec;

@Command(name = "inspect", mixinStandardHelpOptions = true,
        description = "Print a model folder's configuration, tensors (dtype, shape, size, file) and totals.",
        footer = {"", "Example:", "  shrink inspect ../shared/models/fixture-llama-14m"})
final class InspectCommand implements Callable<Integer> {
    @Spec
    CommandSpec spec;

    @Mixin
    CommonOptions common;

    @Mixin
    HubOptions hub;

    @Mixin
    ModelOption modelArg;

    Path model;

    /** One tensor row of the listing. */
    record TensorRow(String name, String dtype, long[] shape, long bytes, String file) {
    }

    @Override
    public Integer call() {
        model = hub.resolve(modelArg.required("inspect"), common.quiet);
        PrintWriter out = spec.commandLine().getOut();
        try (ModelDir dir = ModelDir.open(model)) {
            ModelConfig c = dir.config();
            WeightStore w = dir.weights();
            List<TensorRow> rows = new ArrayList<>();
            Map<String, Long> paramsByDtype = new TreeMap<>();
            long params = 0;
            for (String n : w.names()) {
                TensorInfo t = w.info(n);
                rows.add(new TensorRow(n, t.dtype().safetensorsName(), t.shape(), t.byteLength(),
                        w.fileOf(n).getFileName().toString()));
                params += t.numel();
                paramsByDtype.merge(t.dtype().safetensorsName(), t.numel(), Long::sum);
            }
            if (common.json) {
                Map<String, Object> doc = new LinkedHashMap<>();
                doc.put("model", dir.dir().toAbsolutePath().normalize().toString());
                doc.put("config", c.raw());
                doc.put("family", dir.spec().family());
                doc.put("tensors", rows);
                doc.put("tensor_elements", params);
                doc.put("bytes", w.totalBytes());
                out.println(Json.write(doc));
                return 0;
            }
            out.printf(Locale.ROOT, "%s: %s (%s family)%n", dir.dir(), c.architecture(), dir.spec().family());
            out.printf(Locale.ROOT, "  hidden %d, intermediate %d, layers %d, heads %d, kv heads %d%s, head dim %d%n",
                    c.hidden(), c.intermediate(), c.layers(), c.heads(), c.kvHeads(),
                    c.kvHeads() < c.heads() ? " (GQA)" : "", c.headDim());
            out.printf(Locale.ROOT, "  vocab %d, max positions %d, rms eps %g, rope %s theta %.0f, tied embeddings %s, dtype %s%n",
                    c.vocab(), c.maxPositions(), c.rmsNormEps(), c.rope().type(), c.rope().theta(),
                    c.tiedEmbeddings(), c.torchDtype());
            if (c.moe() != null) {
                var m = c.moe();
                int sparse = (int) java.util.stream.IntStream.range(0, c.layers()).filter(c::sparseLayer).count();
                out.printf(Locale.ROOT, "  mixture of experts: %d experts of width %d, %d per token%s%s, %d of %d blocks sparse%n",
                        m.experts(), m.expertIntermediate(), m.topK(), m.normTopK() ? " (renormalised)" : "",
                        m.sharedExpert() ? ", a shared expert of width " + m.sharedIntermediate() : "", sparse, c.layers());
            }
            var qc = c.raw().get("quantization_config");
            if (qc != null && !qc.isNull()) {
                out.println("  quantization_config: " + qc);
            }
            out.println();
            int width = rows.stream().mapToInt(r -> r.name().length()).max().orElse(10);
            out.printf(Locale.ROOT, "  %-" + width + "s  %-7s %-16s %12s  %s%n", "tensor", "dtype", "shape", "bytes", "file");
            for (TensorRow r : rows) {
                out.printf(Locale.ROOT, "  %-" + width + "s  %-7s %-16s %12d  %s%n", r.name(), r.dtype(),
                        Arrays.toString(r.shape()), r.bytes(), r.file());
            }
            out.println();
            out.printf(Locale.ROOT, "  %d tensors, %,d elements (%s), %s of weights%n", rows.size(), params,
                    paramsByDtype, human(w.totalBytes()));
        }
        return 0;
    }

    static String human(long bytes) {
        if (bytes < 1024) {
            return bytes + " B";
        }
        String[] u = {"KiB", "MiB", "GiB", "TiB"};
        double v = bytes;
        int i = -1;
        while (v >= 1024 && i < u.length - 1) {
            v /= 1024;
            i++;
        }
        return String.format(Locale.ROOT, "%.2f %s", v, u[i]);
    }
}
