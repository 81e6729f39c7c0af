package dev.shrink.kernels.cuda;

import static java.lang.foreign.ValueLayout.ADDRESS;

import dev.shrink.core.io.SafeFiles;
import java.io.IOException;
import java.io.InputStream;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.List;

/**
 * Kernel sources (.cu resources under {@code dev/shrink/kernels/cuda/}) compiled by NVRTC for the
 * GPU found, with the cubin cached on disk as
 * {@code ~/.cache/shrink/cubin/<sha256(source, arch, NVRTC version, options)>.cubin}
 * (the folder can be moved with {@code -Dshrink.cubin.cache=DIR}). A cache entry the driver
 * rejects is compiled again and replaced; a cache that cannot be written is skipped.
 */
final class CubinCache {
    private static final String RESOURCES = "/dev/shrink/kernels/cuda/";

    private CubinCache() {
    }

    static Path dir() {
        String prop = System.getProperty("shrink.cubin.cache");
        if (prop != null && !prop.isBlank()) {
            return Path.of(prop);
        }
        return Path.of(System.getProperty("user.home"), ".cache", "shrink", "cubin");
    }

    static List<String> options(String arch) {
        return List.of("--gpu-architecture=" + arch, "--std=c++17");
    }

    /** Hex SHA-256 of everything that changes the cubin. */
    static String key(String source, String arch, String nvrtcVersion, List<String> options) {
        try {
            MessageDigest sha = MessageDigest.getInstance("SHA-256");
            String id = source + "\u0000" + arch + "\u0000" + nvrtcVersion + "\u0000" + String.join(" ", options);
            return HexFormat.of().formatHex(sha.digest(id.getBytes(StandardCharsets.UTF_8)));
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("SHA-256 is missing from this JDK", e);
        }
    }

    static String source(String name) {
        try (InputStream in = CubinCache.class.getResourceAsStream(RESOURCES + name)) {
            if (in == null) {
                throw new CudaException("kernel source " + RESOURCES + name + " is missing from the class path");
            }
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new CudaException("kernel source " + RESOURCES + name + ": " + e.getMessage(), e);
        }
    }

    /** The module of resource {@code name} on {@code device}, from the cache or freshly compiled. */
    static CudaModule load(CudaDevice device, String name) {
        String source = source(name);
        String arch = device.arch();
        List<String> options = options(arch);
        Path file = dir().resolve(key(source, arch, device.cuda.nvrtc.version(), options) + ".cubin");
        if (Files.isRegularFile(file)) {
            try {
                byte[] cubin = Files.readAllBytes(file);
                MemorySegment m = tryLoad(device, cubin);
                if (m != null) {
                    return new CudaModule(device, name, m, true, 0);
                }
            } catch (IOException e) {
                // unreadable cache entry: compile below and replace it
            }
        }
        long t0 = System.nanoTime();
        byte[] cubin = device.cuda.nvrtc.compile(source, name, options);
        double ms = (System.nanoTime() - t0) / 1e6;
        store(file, cubin);
        MemorySegment m = tryLoad(device, cubin);
        if (m == null) {
            // load again to report the driver's error for a fresh cubin
            try (Arena a = Arena.ofConfined()) {
                MemorySegment out = a.allocate(ADDRESS);
                device.cuda.driver.check(device.cuda.driver.moduleLoadData(out, a.allocateFrom(
                        java.lang.foreign.ValueLayout.JAVA_BYTE, cubin)), "cuModuleLoadData(" + name + ", " + arch + ")");
            }
            throw new CudaException("cuModuleLoadData(" + name + ") failed");
        }
        return new CudaModule(device, name, m, false, ms);
    }

    private static MemorySegment tryLoad(CudaDevice device, byte[] cubin) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment out = a.allocate(ADDRESS);
            MemorySegment image = a.allocateFrom(java.lang.foreign.ValueLayout.JAVA_BYTE, cubin);
            int r = device.cuda.driver.moduleLoadData(out, image);
            return r == 0 ? out.get(ADDRESS, 0) : null;
        }
    }

    /** Writes the cubin atomically ({@link SafeFiles#write(Path, byte[])}); a read-only home is no error. */
    private static void store(Path file, byte[] cubin) {
        try {
            Files.createDirectories(file.getParent());
            SafeFiles.write(file, cubin);
        } catch (IOException | RuntimeException e) {
            // no cache this time: the next run compiles again
        }
    }
}
