package dev.shrink.core.model;

import dev.shrink.core.ShrinkException;
import dev.shrink.core.safetensors.WeightStore;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.stream.Stream;

/**
 * A Hugging Face model folder: config.json, safetensors weights (mapped, read lazily), tokenizer.
 * Pickle checkpoints ({@code .bin}, {@code .pt}, {@code .pth}) are refused: unpickling runs
 * arbitrary code from the file, so a model downloaded from anywhere could take over the machine.
 */
public final class ModelDir implements AutoCloseable {
    private final Path dir;
    private final ModelConfig config;
    private final ArchitectureSpec spec;
    private final WeightStore weights;

    private ModelDir(Path dir, ModelConfig config, ArchitectureSpec spec, WeightStore weights) {
        this.dir = dir;
        this.config = config;
        this.spec = spec;
        this.weights = weights;
    }

    public static ModelDir open(Path dir) {
        if (Files.isRegularFile(dir)) {
            refusePickle(dir);
            throw ShrinkException.at(dir, "is a file; --model takes a Hugging Face model folder (config.json + *.safetensors)");
        }
        if (!Files.isDirectory(dir)) {
            throw ShrinkException.at(dir, "no such model folder");
        }
        ModelConfig config = ModelConfig.read(dir.resolve("config.json"));
        checkTokenIds(config, dir.resolve("config.json"));
        ArchitectureSpec spec = ArchitectureSpec.forArchitecture(config.architecture(), dir.resolve("config.json"));
        if (!hasSafetensors(dir)) {
            for (Path p : listFiles(dir)) {
                refusePickle(p);
            }
        }
        WeightStore weights = WeightStore.open(dir);
        return new ModelDir(dir, config, spec, weights);
    }

    /** The BOS id goes into every sequence: it must be a row of the embedding. */
    private static void checkTokenIds(ModelConfig config, Path file) {
        Integer bos = config.bosTokenId();
        if (bos != null && (bos < 0 || bos >= config.vocab())) {
            throw ShrinkException.at(file, "bos_token_id " + bos + " is outside the vocabulary (vocab_size "
                    + config.vocab() + ": ids 0.." + (config.vocab() - 1) + ")");
        }
    }

    private static boolean hasSafetensors(Path dir) {
        return listFiles(dir).stream().anyMatch(p -> p.getFileName().toString().endsWith(".safetensors"));
    }

    private static List<Path> listFiles(Path dir) {
        try (Stream<Path> s = Files.list(dir)) {
            return s.sorted().toList();
        } catch (IOException e) {
            throw ShrinkException.at(dir, "cannot list folder: " + e.getMessage(), e);
        }
    }

    /** Throws for a pickle checkpoint, saying why Shrink never reads one. */
    public static void refusePickle(Path file) {
        String n = file.getFileName().toString().toLowerCase(Locale.ROOT);
        if (n.endsWith(".bin") || n.endsWith(".pt") || n.endsWith(".pth") || n.endsWith(".ckpt") || n.endsWith(".pkl")) {
            throw ShrinkException.at(file, "is a pickle checkpoint; Shrink reads only safetensors, because loading a pickle "
                    + "runs code stored in the file. Convert it where you trust it (e.g. transformers' save_pretrained(..., safe_serialization=True))");
        }
    }

    public Path dir() {
        return dir;
    }

    public ModelConfig config() {
        return config;
    }

    public ArchitectureSpec spec() {
        return spec;
    }

    public WeightStore weights() {
        return weights;
    }

    public Path tokenizerFile() {
        return dir.resolve("tokenizer.json");
    }

    /**
     * Loads tokenizer.json, checked against the config's vocab_size; an error naming the file when it
     * is missing or can produce ids outside the vocabulary.
     */
    public Tokenizer tokenizer() {
        return Tokenizer.load(tokenizerFile(), config.vocab(), dir.resolve("config.json"));
    }

    @Override
    public void close() {
        weights.close();
    }
}
