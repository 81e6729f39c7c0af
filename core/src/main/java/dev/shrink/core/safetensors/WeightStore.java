package dev.shrink.core.safetensors;

import com.fasterxml.jackson.core.JacksonException;
import com.fasterxml.jackson.databind.JsonNode;
import dev.shrink.core.ShrinkException;
import dev.shrink.core.util.InputFiles;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;

/**
 * The weights of a model folder, opened as one name → tensor map.
 *
 * <p>Which files are read:
 * <ul>
 *   <li>if {@code model.safetensors.index.json} exists: the shard files named by its
 *       {@code weight_map} (each must be a plain file name in the folder and must exist; every
 *       tensor it lists must be present in its shard);</li>
 *   <li>otherwise every regular {@code *.safetensors} file in the folder (usually just
 *       {@code model.safetensors}).</li>
 * </ul>
 * Files are opened in file-name order; {@link #names()} lists tensors file by file in header
 * order. A tensor name present in two files is an error. Tensors present in a shard but not listed
 * in the index are included, as the Hugging Face loaders do.
 *
 * <p>All files stay memory-mapped until {@link #close()}.
 */
public final class WeightStore implements AutoCloseable {

    /** Name of the shard index of a sharded model. */
    public static final String INDEX_FILE = "model.safetensors.index.json";

    private final Path dir;
    private final List<SafetensorsFile> files;
    private final Map<String, SafetensorsFile> fileByName;
    private final Set<String> names;
    private final long totalBytes;

    private WeightStore(Path dir, List<SafetensorsFile> files, Map<String, SafetensorsFile> fileByName,
                        Set<String> names) {
        this.dir = dir;
        this.files = List.copyOf(files);
        this.fileByName = fileByName;
        this.names = Collections.unmodifiableSet(names);
        long total = 0;
        for (SafetensorsFile f : files) {
            for (TensorInfo t : f.tensors()) {
                total += t.byteLength();
            }
        }
        this.totalBytes = total;
    }

    /**
     * Opens the weights of the model folder {@code dir}.
     *
     * @throws ShrinkException if the folder does not exist, holds no safetensors weights, the
     *                         index is invalid, or any weight file is invalid
     */
    public static WeightStore open(Path dir) {
        if (!Files.isDirectory(dir)) {
            throw ShrinkException.at(dir, Files.exists(dir) ? "not a folder" : "folder not found");
        }
        Path index = dir.resolve(INDEX_FILE);
        List<Path> paths;
        Map<String, String> weightMap = null;
        if (Files.exists(index)) {
            weightMap = readIndex(index);
            Set<String> shardNames = new TreeSet<>(weightMap.values());
            paths = new ArrayList<>();
            for (String shard : shardNames) {
                Path p = dir.resolve(shard);
                if (!Files.isRegularFile(p)) {
                    throw ShrinkException.at(index, "weight_map names '" + shard
                            + "', which does not exist in the folder");
                }
                paths.add(p);
            }
        } else {
            paths = listSafetensors(dir);
        }
        if (paths.isEmpty()) {
            throw ShrinkException.at(dir, "no *.safetensors weights found");
        }

        List<SafetensorsFile> opened = new ArrayList<>();
        try {
            Map<String, SafetensorsFile> fileByName = new HashMap<>();
            Set<String> names = new LinkedHashSet<>();
            for (Path p : paths) {
                SafetensorsFile f = SafetensorsFile.open(p);
                opened.add(f);
                for (TensorInfo t : f.tensors()) {
                    SafetensorsFile other = fileByName.putIfAbsent(t.name(), f);
                    if (other != null) {
                        throw ShrinkException.at(dir, "tensor '" + t.name() + "' is in both "
                                + other.path().getFileName() + " and " + p.getFileName());
                    }
                    names.add(t.name());
                }
            }
            if (weightMap != null) {
                for (Map.Entry<String, String> e : weightMap.entrySet()) {
                    SafetensorsFile f = fileByName.get(e.getKey());
                    if (f == null || !f.path().getFileName().toString().equals(e.getValue())) {
                        throw ShrinkException.at(index, "weight_map puts tensor '" + e.getKey() + "' in "
                                + e.getValue() + ", but that file has no such tensor");
                    }
                }
            }
            return new WeightStore(dir, opened, fileByName, names);
        } catch (RuntimeException e) {
            for (SafetensorsFile f : opened) {
                f.close();
            }
            throw e;
        }
    }

    /** Reads and checks the index: returns its weight_map (tensor → shard file name). */
    private static Map<String, String> readIndex(Path index) {
        JsonNode root;
        try {
            root = SafetensorsFile.JSON.readTree(InputFiles.readBytes(index, InputFiles.JSON_MAX_BYTES));
        } catch (JacksonException e) {
            throw ShrinkException.at(index, "not valid JSON: " + SafetensorsFile.oneLine(e), e);
        } catch (IOException e) {
            throw SafetensorsFile.readError(index, e);
        }
        if (root == null || !root.isObject()) {
            throw ShrinkException.at(index, "not a JSON object");
        }
        JsonNode wm = root.get("weight_map");
        if (wm == null || !wm.isObject()) {
            throw ShrinkException.at(index, "has no \"weight_map\" object");
        }
        Map<String, String> out = new LinkedHashMap<>();
        for (Map.Entry<String, JsonNode> e : wm.properties()) {
            JsonNode v = e.getValue();
            if (!v.isTextual()) {
                throw ShrinkException.at(index, "weight_map value for '" + e.getKey() + "' is not a string: " + v);
            }
            String file = v.textValue();
            if (!isPlainFileName(file)) {
                throw ShrinkException.at(index, "weight_map puts tensor '" + e.getKey() + "' in '" + file
                        + "', which is not a plain file name in the same folder");
            }
            out.put(e.getKey(), file);
        }
        return out;
    }

    /** A bare file name: no separators, not "." or "..", not absolute, no NUL. */
    static boolean isPlainFileName(String name) {
        if (name.isEmpty() || name.equals(".") || name.equals("..")
                || name.indexOf('/') >= 0 || name.indexOf('\\') >= 0 || name.indexOf('\0') >= 0
                || name.indexOf(':') >= 0) {
            return false;
        }
        try {
            Path p = Path.of(name);
            return !p.isAbsolute() && p.getNameCount() == 1 && p.getFileName().toString().equals(name);
        } catch (RuntimeException e) {
            return false;
        }
    }

    private static List<Path> listSafetensors(Path dir) {
        List<Path> out = new ArrayList<>();
        try (DirectoryStream<Path> ds = Files.newDirectoryStream(dir, "*.safetensors")) {
            for (Path p : ds) {
                if (Files.isRegularFile(p)) {
                    out.add(p);
                }
            }
        } catch (NoSuchFileException e) {
            throw ShrinkException.at(dir, "folder not found", e);
        } catch (IOException e) {
            throw ShrinkException.at(dir, "cannot list the folder: " + SafetensorsFile.oneLine(e), e);
        }
        out.sort(null);
        return out;
    }

    /** The model folder as given to {@link #open}. */
    public Path dir() {
        return dir;
    }

    /** All tensor names, file by file in header order (unmodifiable). */
    public Set<String> names() {
        return names;
    }

    /** Whether a tensor of that name exists. */
    public boolean has(String name) {
        return fileByName.containsKey(name);
    }

    private SafetensorsFile fileFor(String name) {
        SafetensorsFile f = fileByName.get(name);
        if (f == null) {
            throw ShrinkException.at(dir, "no tensor '" + name + "' in the weights");
        }
        return f;
    }

    /**
     * The header entry of a tensor.
     *
     * @throws ShrinkException "DIR: no tensor 'x' in the weights" if absent
     */
    public TensorInfo info(String name) {
        return fileFor(name).info(name).orElseThrow();
    }

    /** The file that holds a tensor. */
    public Path fileOf(String name) {
        return fileFor(name).path();
    }

    /** The raw little-endian bytes of a tensor (read-only, valid until {@link #close()}). */
    public MemorySegment data(String name) {
        return fileFor(name).data(name);
    }

    /** A floating-point tensor as float[]; see {@link SafetensorsFile#readFloats}. */
    public float[] floats(String name) {
        return fileFor(name).readFloats(name);
    }

    /** An integer tensor as int[]; see {@link SafetensorsFile#readInts}. */
    public int[] ints(String name) {
        return fileFor(name).readInts(name);
    }

    /** The opened files, in the order their tensors appear in {@link #names()}. */
    public List<SafetensorsFile> files() {
        return files;
    }

    /** Sum of the byte lengths of all tensors. */
    public long totalBytes() {
        return totalBytes;
    }

    /** Unmaps every file. Idempotent. */
    @Override
    public void close() {
        for (SafetensorsFile f : files) {
            f.close();
        }
    }

    @Override
    public String toString() {
        return "WeightStore[" + dir + ", " + files.size() + " files, " + names.size() + " tensors]";
    }
}
