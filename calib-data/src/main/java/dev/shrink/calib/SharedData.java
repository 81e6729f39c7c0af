package dev.shrink.calib;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

/**
 * Finds the project's shared data folder (datasets, models, golden numbers), which lives beside
 * the checkout as {@code ../shared}. Looked up in order: the system property {@code shrink.shared},
 * the environment variable {@code SHRINK_SHARED}, {@code <shrink.home>/../shared} (the launcher
 * sets shrink.home to the repository root), then {@code ./../shared} and {@code ./shared}.
 */
public final class SharedData {
    private SharedData() {
    }

    public static Optional<Path> root() {
        List<Path> candidates = new ArrayList<>();
        String prop = System.getProperty("shrink.shared");
        if (prop != null && !prop.isBlank()) {
            candidates.add(Path.of(prop));
        }
        String env = System.getenv("SHRINK_SHARED");
        if (env != null && !env.isBlank()) {
            candidates.add(Path.of(env));
        }
        String home = System.getProperty("shrink.home");
        if (home != null && !home.isBlank()) {
            candidates.add(Path.of(home).resolve("../shared"));
        }
        candidates.add(Path.of("..", "shared"));
        candidates.add(Path.of("shared"));
        for (Path p : candidates) {
            if (Files.isDirectory(p.resolve("datasets")) || Files.isDirectory(p.resolve("models"))) {
                return Optional.of(p.toAbsolutePath().normalize());
            }
        }
        return Optional.empty();
    }
}
