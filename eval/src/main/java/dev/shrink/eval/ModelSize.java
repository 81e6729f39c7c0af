package dev.shrink.eval;

import dev.shrink.core.ShrinkException;
import dev.shrink.core.model.ArchitectureSpec;
import dev.shrink.core.model.ModelDir;
import dev.shrink.core.safetensors.TensorInfo;
import dev.shrink.core.safetensors.WeightStore;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;

/**
 * Size of a model folder: bytes on disk and bits per weight against the parameters of the
 * uncompressed baseline (see {@link SizeResult}). Bits per weight divide by the baseline's
 * parameters, not the candidate's tensor elements, because packed tensors (qweight holds 8 codes
 * per int32) do not count weights.
 */
public final class ModelSize {
    private ModelSize() {
    }

    /** The size of {@code candidate} against the parameters of {@code baseline} (may be the same folder). */
    public static SizeResult of(Path candidate, Path baseline) {
        long weightBytes = 0, folderBytes = 0;
        for (Path f : files(candidate)) {
            long size = size(f);
            folderBytes += size;
            if (f.getFileName().toString().endsWith(".safetensors")) {
                weightBytes += size;
            }
        }
        long params = 0, linearParams = 0;
        try (ModelDir base = ModelDir.open(baseline)) {
            List<String> prefixes = linearPrefixes(base);
            for (String name : base.weights().names()) {
                long n = base.weights().info(name).numel();
                params += n;
                if (underAny(name, prefixes)) {
                    linearParams += n;
                }
            }
        }
        long linearBytes = 0;
        try (ModelDir cand = ModelDir.open(candidate)) {
            List<String> prefixes = linearPrefixes(cand);
            WeightStore w = cand.weights();
            for (String name : w.names()) {
                if (underAny(name, prefixes)) {
                    TensorInfo t = w.info(name);
                    linearBytes += t.byteLength();
                }
            }
        }
        return new SizeResult(weightBytes, folderBytes, params, params == 0 ? 0 : 8.0 * weightBytes / params,
                linearBytes, linearParams, linearParams == 0 ? 0 : 8.0 * linearBytes / linearParams);
    }

    /** "model.layers.3.self_attn.q_proj." for every decoder linear. */
    private static List<String> linearPrefixes(ModelDir dir) {
        ArchitectureSpec spec = dir.spec();
        List<String> out = new ArrayList<>();
        for (int i = 0; i < dir.config().layers(); i++) {
            for (ArchitectureSpec.Linear l : spec.linears()) {
                out.add(spec.layer(i, l.name()) + ".");
            }
        }
        return out;
    }

    private static boolean underAny(String name, List<String> prefixes) {
        for (String p : prefixes) {
            if (name.startsWith(p)) {
                return true;
            }
        }
        return false;
    }

    private static List<Path> files(Path dir) {
        try (Stream<Path> s = Files.walk(dir)) {
            return s.filter(Files::isRegularFile).sorted().toList();
        } catch (IOException e) {
            throw ShrinkException.at(dir, "cannot list the folder: " + e.getMessage(), e);
        }
    }

    private static long size(Path f) {
        try {
            return Files.size(f);
        } catch (IOException e) {
            throw ShrinkException.at(f, "cannot read its size: " + e.getMessage(), e);
        }
    }
}
