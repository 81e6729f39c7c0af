package dev.shrink.calib;

import dev.shrink.core.ShrinkException;
import java.nio.file.Path;
import java.util.List;
import java.util.Optional;
import org.apache.arrow.dataset.file.FileFormat;
import org.apache.arrow.dataset.file.FileSystemDatasetFactory;
import org.apache.arrow.dataset.jni.NativeMemoryPool;
import org.apache.arrow.dataset.scanner.ScanOptions;
import org.apache.arrow.dataset.scanner.Scanner;
import org.apache.arrow.dataset.source.Dataset;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.vector.ipc.ArrowReader;
import org.apache.arrow.vector.types.pojo.Schema;

/**
 * Reads the string column of a Parquet file through Arrow's dataset module (the C++ Parquet
 * reader pyarrow uses, over JNI). Only {@link CalibSource} refers to this class, and only for a
 * {@code .parquet} source, so the dataset classes and their native library (a 76 MB .so copied to
 * {@code java.io.tmpdir} when first loaded) cost nothing to runs that read no Parquet.
 */
final class ParquetSource {
    private static final long BATCH_ROWS = 32_768;

    private ParquetSource() {
    }

    /** {@code file} is readable (the caller, {@link CalibSource}, has checked it and that the reader is there). */
    static List<String> read(Path file, String field) {
        String uri = file.toAbsolutePath().normalize().toUri().toString();
        try (BufferAllocator alloc = new RootAllocator()) {
            FileSystemDatasetFactory factory;
            try {
                factory = new FileSystemDatasetFactory(alloc, NativeMemoryPool.getDefault(), FileFormat.PARQUET, uri);
            } catch (LinkageError e) {
                // ExceptionInInitializerError, UnsatisfiedLinkError: the .so could not be copied or loaded.
                throw ShrinkException.at(file, "cannot load the native Parquet reader (Arrow dataset JNI; "
                        + "java.io.tmpdir must be writable and allow executables, glibc 2.17+): "
                        + CalibSource.firstLine(String.valueOf(e.getMessage())), e);
            }
            try {
                Schema schema = factory.inspect();
                ArrowSource.checkStringColumn(file, schema, field);
                ScanOptions options = new ScanOptions(BATCH_ROWS, Optional.of(new String[] {field}));
                try (Dataset dataset = factory.finish();
                     Scanner scanner = dataset.newScan(options);
                     ArrowReader reader = scanner.scanBatches()) {
                    return ArrowSource.drain(file, reader, field);
                }
            } finally {
                factory.close();
            }
        } catch (ShrinkException e) {
            throw e;
        } catch (Exception e) {
            // The native reader reports a bad file as a RuntimeException with Arrow's status message.
            throw ShrinkException.at(file, "cannot read as Parquet: " + CalibSource.firstLine(e.getMessage()), e);
        }
    }
}
