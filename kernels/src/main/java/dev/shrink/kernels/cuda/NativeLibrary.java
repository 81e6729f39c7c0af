package dev.shrink.kernels.cuda;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.invoke.MethodHandle;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

/**
 * A shared library found by soname through {@link SymbolLookup#libraryLookup(String, Arena)}
 * (the dynamic loader's search path first, then the usual CUDA folders), kept loaded for the
 * life of the process, and the downcall handles made from its symbols.
 */
final class NativeLibrary {
    private static final Linker LINKER = Linker.nativeLinker();

    private final String soname;
    private final SymbolLookup lookup;

    private NativeLibrary(String soname, SymbolLookup lookup) {
        this.soname = soname;
        this.lookup = lookup;
    }

    /**
     * The first of {@code sonames} that loads, tried by name and then in $CUDA_HOME/lib64,
     * /usr/local/cuda/lib64 and /usr/local/cuda/targets/x86_64-linux/lib.
     *
     * @throws CudaException "CUDA not available: libcuda.so.1 not found" when none loads
     */
    static NativeLibrary open(String... sonames) {
        List<Path> dirs = new ArrayList<>();
        String home = System.getenv("CUDA_HOME");
        if (home != null && !home.isBlank()) {
            dirs.add(Path.of(home, "lib64"));
        }
        dirs.add(Path.of("/usr/local/cuda/lib64"));
        dirs.add(Path.of("/usr/local/cuda/targets/x86_64-linux/lib"));
        List<String> tried = new ArrayList<>();
        for (String name : sonames) {
            Optional<SymbolLookup> found = tryLoad(name);
            for (int i = 0; found.isEmpty() && i < dirs.size(); i++) {
                Path p = dirs.get(i).resolve(name);
                if (Files.exists(p)) {
                    found = tryLoad(p.toString());
                }
            }
            if (found.isPresent()) {
                return new NativeLibrary(name, found.get());
            }
            tried.add(name);
        }
        throw new CudaException("CUDA not available: " + String.join(", ", tried) + " not found");
    }

    private static Optional<SymbolLookup> tryLoad(String nameOrPath) {
        try {
            return Optional.of(SymbolLookup.libraryLookup(nameOrPath, Arena.global()));
        } catch (IllegalArgumentException | IllegalCallerException e) {
            return Optional.empty();
        }
    }

    String soname() {
        return soname;
    }

    /** A downcall handle for {@code symbol}; a missing symbol is an error naming the library. */
    MethodHandle function(String symbol, FunctionDescriptor fd, Linker.Option... options) {
        return LINKER.downcallHandle(address(symbol), fd, options);
    }

    /** The first of {@code symbols} that the library exports (versioned names first). */
    MethodHandle firstFunction(FunctionDescriptor fd, String... symbols) {
        for (String s : symbols) {
            Optional<MemorySegment> a = lookup.find(s);
            if (a.isPresent()) {
                return LINKER.downcallHandle(a.get(), fd);
            }
        }
        throw new CudaException(soname + ": none of the symbols " + String.join(", ", symbols) + " found");
    }

    /** A handle for an optional symbol, empty when the library lacks it. */
    Optional<MethodHandle> optionalFunction(String symbol, FunctionDescriptor fd) {
        return lookup.find(symbol).map(a -> LINKER.downcallHandle(a, fd));
    }

    private MemorySegment address(String symbol) {
        return lookup.find(symbol).orElseThrow(() -> new CudaException(soname + ": symbol " + symbol
                + " not found (a library older than this code needs?)"));
    }

    /** The C string at {@code p}, or {@code fallback} when p is NULL. */
    static String string(MemorySegment p, String fallback) {
        if (p == null || p.equals(MemorySegment.NULL)) {
            return fallback;
        }
        return p.reinterpret(Long.MAX_VALUE).getString(0);
    }
}
