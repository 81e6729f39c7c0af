package dev.shrink.eval;

import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.shrink.calib.SharedData;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/** The shared fixtures and the golden numbers computed with PyTorch (shared/golden/README.md). */
final class Golden {
    private Golden() {
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

    /** goldens-{model}.json: "fixture-llama-14m" or "stories260K". */
    static JsonNode numbers(String goldenName) {
        try {
            return new ObjectMapper().readTree(shared().resolve("golden/goldens-" + goldenName + ".json").toFile());
        } catch (IOException e) {
            throw new IllegalStateException(e);
        }
    }

    static double relErr(double a, double ref) {
        return Math.abs(a - ref) / Math.abs(ref);
    }
}
