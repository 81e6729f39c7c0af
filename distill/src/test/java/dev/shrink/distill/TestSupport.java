package dev.shrink.distill;

import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.shrink.calib.SharedData;
import java.nio.file.Files;
import java.nio.file.Path;

/** The shared fixtures the distillation tests read. */
final class TestSupport {
    private TestSupport() {
    }

    static Path shared() {
        var root = SharedData.root();
        assumeTrue(root.isPresent(), "shared fixtures not found (set -Dshrink.shared or put ../shared beside the checkout)");
        return root.get();
    }

    static Path model(String name) {
        Path p = shared().resolve("models").resolve(name);
        assumeTrue(Files.isDirectory(p), "missing fixture " + p);
        return p;
    }

    /** The 14M LLaMA fixture (bf16, 6 layers, hidden 384, GQA 6/2, vocab 8192). */
    static Path fixture() {
        return model("fixture-llama-14m");
    }

    /** stories260K-hf (f32, 5 layers, hidden 64, GQA 8/4, vocab 512): fast. */
    static Path stories() {
        return model("stories260K-hf");
    }
}
