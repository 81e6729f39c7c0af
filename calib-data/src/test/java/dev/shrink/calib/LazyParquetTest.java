package dev.shrink.calib;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.reflect.Method;
import java.net.URL;
import java.net.URLClassLoader;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The Parquet reader (and the 76 MB native library behind it) must load only when a .parquet
 * source is read. CalibSource is loaded afresh in a class loader of its own, so that what it
 * loads can be seen.
 */
class LazyParquetTest {
    @TempDir
    Path dir;

    /** Loads dev.shrink.calib classes itself (child first); everything else from the parent. */
    private static final class CalibLoader extends URLClassLoader {
        CalibLoader(URL classes, ClassLoader parent) {
            super(new URL[] {classes}, parent);
        }

        @Override
        protected Class<?> loadClass(String name, boolean resolve) throws ClassNotFoundException {
            if (!name.startsWith("dev.shrink.calib.")) {
                return super.loadClass(name, resolve);
            }
            synchronized (getClassLoadingLock(name)) {
                Class<?> c = findLoadedClass(name);
                if (c == null) {
                    c = findClass(name);
                }
                return c;
            }
        }

        boolean loaded(String name) {
            return findLoadedClass(name) != null;
        }
    }

    @Test
    void parquetClassesLoadOnlyForParquetSources() throws Exception {
        Path jsonl = dir.resolve("docs.jsonl");
        Files.writeString(jsonl, "{\"text\": \"hello\"}\n");
        Path arrow = dir.resolve("docs.arrow");
        TestData.writeArrow(arrow, "text", List.of("from arrow"), 10, false, false, false);
        Path parquet = TestData.writeParquet(dir, "docs.parquet", "text", List.of("from parquet"), false);

        URL classes = CalibSource.class.getProtectionDomain().getCodeSource().getLocation();
        try (CalibLoader loader = new CalibLoader(classes, CalibSource.class.getClassLoader())) {
            Class<?> source = loader.loadClass("dev.shrink.calib.CalibSource");
            assertEquals(loader, source.getClassLoader(), "CalibSource loaded afresh");
            Method load = source.getMethod("load", String.class, String.class);

            assertEquals(List.of("hello"), load.invoke(null, jsonl.toString(), "text"));
            assertEquals(List.of("from arrow"), load.invoke(null, arrow.toString(), "text"));
            assertFalse(loader.loaded("dev.shrink.calib.ParquetSource"),
                    "ParquetSource loaded before any .parquet source was read");

            assertEquals(List.of("from parquet"), load.invoke(null, parquet.toString(), "text"));
            assertTrue(loader.loaded("dev.shrink.calib.ParquetSource"),
                    "the check can see ParquetSource once it is used");
        }
    }
}
