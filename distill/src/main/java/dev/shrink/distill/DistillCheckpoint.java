package dev.shrink.distill;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.shrink.core.ShrinkException;
import dev.shrink.core.safetensors.SafetensorsFile;
import dev.shrink.core.safetensors.SafetensorsWriter;
import dev.shrink.core.safetensors.TensorData;
import dev.shrink.core.safetensors.TensorInfo;
import dev.shrink.core.tensor.DType;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A resumable training state in one safetensors file, {@code <dir>/checkpoint.safetensors}:
 * {@code param.<name>}, {@code adam_m.<name>} and {@code adam_v.<name>} (float32, every trainable
 * tensor by its Hugging Face name) and, in the header's {@code __metadata__} under
 * {@value #META_KEY}, the {@link State} as JSON: steps done, windows drawn (the data position; with
 * the seed it is the whole state of the window generator), what the run was started with, and the
 * loss curve so far. Together that is everything an uninterrupted run would hold after the same
 * step, so a resumed run continues bit for bit.
 *
 * <p>Written atomically: a temporary file in the same folder, forced to disk, renamed over the old
 * checkpoint ({@link SafetensorsWriter#write}); a failure (a full disk) leaves the previous
 * checkpoint as it was and names the file.
 */
public final class DistillCheckpoint {
    /** The file name inside the checkpoint folder. */
    public static final String FILE = "checkpoint.safetensors";
    /** The __metadata__ key holding the state. */
    static final String META_KEY = "shrink_distill_checkpoint";
    /** Bumped when the layout changes. */
    static final int FORMAT = 1;

    private static final ObjectMapper JSON = new ObjectMapper()
            .configure(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES, false);

    private DistillCheckpoint() {
    }

    /**
     * The state besides the tensors.
     *
     * @param format       {@link #FORMAT}
     * @param step         optimizer steps completed
     * @param windowsDrawn training windows drawn so far
     * @param run          what must match to resume: options, data, student and teacher fingerprints
     * @param curve        one record per completed step
     * @param seconds      training wall time so far
     */
    public record State(int format, int step, long windowsDrawn, Map<String, Object> run, List<DistillStage.StepRecord> curve,
                        double seconds) {
    }

    /** What a checkpoint file holds. */
    public record Loaded(State state, Map<String, float[]> params, Map<String, float[]> m, Map<String, float[]> v) {
    }

    public static Path file(Path dir) {
        return dir.resolve(FILE);
    }

    public static boolean exists(Path dir) {
        return Files.isRegularFile(file(dir));
    }

    /**
     * Writes the checkpoint atomically (replacing an older one only once the new one is on disk).
     *
     * @param tensors name → (param, m, v), float32 copies or the live arrays (they are copied)
     * @throws ShrinkException naming the file on any write error; the old checkpoint is untouched then
     */
    public static void write(Path dir, State state, Map<String, float[][]> tensors) {
        try {
            Files.createDirectories(dir);
        } catch (java.io.IOException e) {
            throw ShrinkException.at(dir, "cannot create the checkpoint folder: " + e.getMessage(), e);
        }
        List<TensorData> list = new ArrayList<>();
        for (Map.Entry<String, float[][]> e : tensors.entrySet()) {
            float[][] pmv = e.getValue();
            long[] shape = {pmv[0].length};
            list.add(TensorData.ofFloats("param." + e.getKey(), shape, pmv[0], DType.F32));
            list.add(TensorData.ofFloats("adam_m." + e.getKey(), shape, pmv[1], DType.F32));
            list.add(TensorData.ofFloats("adam_v." + e.getKey(), shape, pmv[2], DType.F32));
        }
        String json;
        try {
            json = JSON.writeValueAsString(state);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException("cannot serialize the checkpoint state", e);
        }
        SafetensorsWriter.write(file(dir), list, Map.of(META_KEY, json));
    }

    /**
     * Reads a checkpoint.
     *
     * @param names the trainable tensors expected, with their sizes
     * @throws ShrinkException naming the file if it is unreadable, not a distillation checkpoint, of
     *                         another format, or lacks a tensor or has one of the wrong size
     */
    public static Loaded read(Path dir, Map<String, Integer> names) {
        Path f = file(dir);
        try (SafetensorsFile st = SafetensorsFile.open(f)) {
            String json = st.metadata().get(META_KEY);
            if (json == null) {
                throw ShrinkException.at(f, "not a distillation checkpoint (no " + META_KEY + " metadata)");
            }
            State state;
            try {
                state = JSON.readValue(json, State.class);
            } catch (JsonProcessingException e) {
                throw ShrinkException.at(f, "the checkpoint state is not readable: " + e.getOriginalMessage(), e);
            }
            if (state.format() != FORMAT) {
                throw ShrinkException.at(f, "checkpoint format " + state.format() + ", this version reads " + FORMAT);
            }
            Map<String, float[]> p = new LinkedHashMap<>(), m = new LinkedHashMap<>(), v = new LinkedHashMap<>();
            for (Map.Entry<String, Integer> e : names.entrySet()) {
                p.put(e.getKey(), tensor(st, f, "param." + e.getKey(), e.getValue()));
                m.put(e.getKey(), tensor(st, f, "adam_m." + e.getKey(), e.getValue()));
                v.put(e.getKey(), tensor(st, f, "adam_v." + e.getKey(), e.getValue()));
            }
            int expected = 3 * names.size();
            if (st.tensors().size() != expected) {
                throw ShrinkException.at(f, "holds " + st.tensors().size() + " tensors; this student has "
                        + names.size() + " trainable tensors (" + expected + " expected)");
            }
            return new Loaded(state, p, m, v);
        }
    }

    private static float[] tensor(SafetensorsFile st, Path f, String name, int size) {
        TensorInfo info = st.info(name).orElseThrow(() -> ShrinkException.at(f,
                "has no tensor '" + name + "': the checkpoint is of another student"));
        if (info.dtype() != DType.F32 || info.numel() != size) {
            throw ShrinkException.at(f, "tensor '" + name + "' is " + info.dtype().safetensorsName() + " "
                    + Arrays.toString(info.shape()) + "; expected F32 [" + size + "]: the checkpoint is of another student");
        }
        return st.readFloats(name);
    }
}
