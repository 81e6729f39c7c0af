package dev.shrink.kernels.cuda;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_FLOAT;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;
import java.lang.invoke.MethodHandle;

/**
 * FFM bindings to the CUDA driver API (libcuda.so.1): the calls Shrink makes, each checked. A
 * non-zero CUresult becomes a {@link CudaException} naming the call and the driver's error name
 * and text, e.g. "cuMemAlloc_v2(4294967296 bytes) failed: CUDA_ERROR_OUT_OF_MEMORY (out of memory)".
 *
 * <p>Handles (CUcontext, CUstream, CUmodule, CUfunction, CUevent) are pointers and device
 * addresses (CUdeviceptr) 64-bit integers; both are passed around as {@code long}/segments here
 * and wrapped by {@link CudaDevice}, {@link DeviceBuffer}, {@link CudaModule} and {@link CudaEvent}.
 */
final class Driver {
    /** CU_DEVICE_ATTRIBUTE_* values used here. */
    static final int ATTR_MULTIPROCESSOR_COUNT = 16;
    static final int ATTR_COMPUTE_CAPABILITY_MAJOR = 75;
    static final int ATTR_COMPUTE_CAPABILITY_MINOR = 76;
    static final int ATTR_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN = 97;
    /** CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES. */
    static final int FUNC_ATTR_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8;

    final NativeLibrary lib;
    private final MethodHandle cuInit, cuDriverGetVersion, cuDeviceGetCount, cuDeviceGet, cuDeviceGetName;
    private final MethodHandle cuDeviceGetAttribute, cuDeviceTotalMem, cuDevicePrimaryCtxRetain;
    private final MethodHandle cuDevicePrimaryCtxRelease, cuCtxSetCurrent, cuCtxSynchronize;
    private final MethodHandle cuStreamCreate, cuStreamDestroy, cuStreamSynchronize;
    private final MethodHandle cuEventCreate, cuEventRecord, cuEventSynchronize, cuEventElapsedTime, cuEventDestroy;
    private final MethodHandle cuMemAlloc, cuMemFree, cuMemGetInfo, cuMemAllocHost, cuMemFreeHost;
    private final MethodHandle cuMemcpyHtoDAsync, cuMemcpyDtoHAsync, cuMemcpyDtoDAsync, cuMemsetD32Async;
    private final MethodHandle cuModuleLoadData, cuModuleGetFunction, cuModuleUnload, cuFuncSetAttribute;
    private final MethodHandle cuLaunchKernel, cuGetErrorName, cuGetErrorString;
    private final MethodHandle cuStreamBeginCapture, cuStreamEndCapture, cuGraphInstantiate, cuGraphLaunch;
    private final MethodHandle cuGraphExecDestroy, cuGraphDestroy;
    /** cuLaunchKernelEx (CUDA 12.0+), null when the driver lacks it. */
    private final MethodHandle cuLaunchKernelEx;

    /** @throws CudaException "CUDA not available: libcuda.so.1 not found" without a driver */
    Driver() {
        lib = NativeLibrary.open("libcuda.so.1", "libcuda.so");
        FunctionDescriptor iP = FunctionDescriptor.of(JAVA_INT, ADDRESS);
        FunctionDescriptor iI = FunctionDescriptor.of(JAVA_INT, JAVA_INT);
        FunctionDescriptor iL = FunctionDescriptor.of(JAVA_INT, JAVA_LONG);
        FunctionDescriptor iV = FunctionDescriptor.of(JAVA_INT);
        cuInit = lib.function("cuInit", iI);
        cuDriverGetVersion = lib.function("cuDriverGetVersion", iP);
        cuDeviceGetCount = lib.function("cuDeviceGetCount", iP);
        cuDeviceGet = lib.function("cuDeviceGet", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT));
        cuDeviceGetName = lib.function("cuDeviceGetName", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT));
        cuDeviceGetAttribute = lib.function("cuDeviceGetAttribute",
                FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT));
        cuDeviceTotalMem = lib.function("cuDeviceTotalMem_v2", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT));
        cuDevicePrimaryCtxRetain = lib.function("cuDevicePrimaryCtxRetain",
                FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT));
        cuDevicePrimaryCtxRelease = lib.firstFunction(iI, "cuDevicePrimaryCtxRelease_v2", "cuDevicePrimaryCtxRelease");
        cuCtxSetCurrent = lib.function("cuCtxSetCurrent", iP);
        cuCtxSynchronize = lib.function("cuCtxSynchronize", iV);
        cuStreamCreate = lib.function("cuStreamCreate", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT));
        cuStreamDestroy = lib.firstFunction(iP, "cuStreamDestroy_v2", "cuStreamDestroy");
        cuStreamSynchronize = lib.function("cuStreamSynchronize", iP);
        cuEventCreate = lib.function("cuEventCreate", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT));
        cuEventRecord = lib.function("cuEventRecord", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS));
        cuEventSynchronize = lib.function("cuEventSynchronize", iP);
        cuEventElapsedTime = lib.firstFunction(FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS, ADDRESS),
                "cuEventElapsedTime_v2", "cuEventElapsedTime");
        cuEventDestroy = lib.firstFunction(iP, "cuEventDestroy_v2", "cuEventDestroy");
        cuMemAlloc = lib.function("cuMemAlloc_v2", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_LONG));
        cuMemFree = lib.function("cuMemFree_v2", iL);
        cuMemGetInfo = lib.function("cuMemGetInfo_v2", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS));
        cuMemAllocHost = lib.firstFunction(FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_LONG), "cuMemAllocHost_v2",
                "cuMemAllocHost");
        cuMemFreeHost = lib.function("cuMemFreeHost", iP);
        // Host pointers may be Java heap arrays: critical(true) lets a downcall take a heap
        // segment. The async copies return only once a pageable source has been staged
        // (host → device) or the copy has completed (device → host), so the array is not read
        // or written after the call returns (CUDA's "API synchronization behavior").
        Linker.Option heap = Linker.Option.critical(true);
        cuMemcpyHtoDAsync = lib.function("cuMemcpyHtoDAsync_v2",
                FunctionDescriptor.of(JAVA_INT, JAVA_LONG, ADDRESS, JAVA_LONG, ADDRESS), heap);
        cuMemcpyDtoHAsync = lib.function("cuMemcpyDtoHAsync_v2",
                FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_LONG, JAVA_LONG, ADDRESS), heap);
        cuMemcpyDtoDAsync = lib.function("cuMemcpyDtoDAsync_v2",
                FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG, ADDRESS));
        cuMemsetD32Async = lib.function("cuMemsetD32Async",
                FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_INT, JAVA_LONG, ADDRESS));
        cuModuleLoadData = lib.function("cuModuleLoadData", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS));
        cuModuleGetFunction = lib.function("cuModuleGetFunction",
                FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS, ADDRESS));
        cuModuleUnload = lib.function("cuModuleUnload", iP);
        cuFuncSetAttribute = lib.function("cuFuncSetAttribute",
                FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT));
        cuLaunchKernel = lib.function("cuLaunchKernel", FunctionDescriptor.of(JAVA_INT, ADDRESS,
                JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT, ADDRESS, ADDRESS, ADDRESS));
        // CUDA graphs (stream capture): cuStreamBeginCapture_v2(stream, mode), cuStreamEndCapture(stream, *graph),
        // cuGraphInstantiateWithFlags(*exec, graph, flags), cuGraphLaunch(exec, stream)
        cuStreamBeginCapture = lib.firstFunction(FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT),
                "cuStreamBeginCapture_v2", "cuStreamBeginCapture");
        cuStreamEndCapture = lib.function("cuStreamEndCapture", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS));
        cuGraphInstantiate = lib.function("cuGraphInstantiateWithFlags",
                FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS, JAVA_LONG));
        cuGraphLaunch = lib.function("cuGraphLaunch", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS));
        cuGraphExecDestroy = lib.function("cuGraphExecDestroy", iP);
        cuGraphDestroy = lib.function("cuGraphDestroy", iP);
        // cuLaunchKernelEx(const CUlaunchConfig*, CUfunction, void** kernelParams, void** extra): optional
        cuLaunchKernelEx = lib.optionalFunction("cuLaunchKernelEx",
                FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS, ADDRESS, ADDRESS)).orElse(null);
        cuGetErrorName = lib.function("cuGetErrorName", FunctionDescriptor.of(JAVA_INT, JAVA_INT, ADDRESS));
        cuGetErrorString = lib.function("cuGetErrorString", FunctionDescriptor.of(JAVA_INT, JAVA_INT, ADDRESS));
    }

    // ---------------------------------------------------------------- errors

    /** Throws when {@code result} is not CUDA_SUCCESS, naming {@code call}. */
    void check(int result, String call) {
        if (result != 0) {
            throw new CudaException(call + " failed: " + errorText(result));
        }
    }

    /** "CUDA_ERROR_NO_DEVICE (no CUDA-capable device is detected)". */
    String errorText(int result) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment p = a.allocate(ADDRESS);
            String name = (int) cuGetErrorName.invokeExact(result, p) == 0
                    ? NativeLibrary.string(p.get(ADDRESS, 0), null) : null;
            String text = (int) cuGetErrorString.invokeExact(result, p) == 0
                    ? NativeLibrary.string(p.get(ADDRESS, 0), null) : null;
            return (name != null ? name : "CUresult " + result) + (text != null ? " (" + text + ")" : "");
        } catch (Throwable t) {
            return "CUresult " + result;
        }
    }

    private static CudaException unexpected(String call, Throwable t) {
        return new CudaException(call + ": call through FFM failed: " + t, t);
    }

    // ---------------------------------------------------------------- init and devices

    /** cuInit(0); returns the CUresult (the probe reports it instead of throwing). */
    int init() {
        try {
            return (int) cuInit.invokeExact(0);
        } catch (Throwable t) {
            throw unexpected("cuInit", t);
        }
    }

    int driverVersion() {
        return intOut("cuDriverGetVersion", p -> (int) cuDriverGetVersion.invokeExact(p));
    }

    int deviceCount() {
        return intOut("cuDeviceGetCount", p -> (int) cuDeviceGetCount.invokeExact(p));
    }

    int device(int ordinal) {
        return intOut("cuDeviceGet(" + ordinal + ")", p -> (int) cuDeviceGet.invokeExact(p, ordinal));
    }

    String deviceName(int dev) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment buf = a.allocate(256);
            check((int) cuDeviceGetName.invokeExact(buf, 256, dev), "cuDeviceGetName");
            return buf.getString(0);
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw unexpected("cuDeviceGetName", t);
        }
    }

    int attribute(int dev, int attr) {
        return intOut("cuDeviceGetAttribute(" + attr + ")", p -> (int) cuDeviceGetAttribute.invokeExact(p, attr, dev));
    }

    long totalMemory(int dev) {
        return longOut("cuDeviceTotalMem_v2", p -> (int) cuDeviceTotalMem.invokeExact(p, dev));
    }

    /** Free bytes on the current context's device. */
    long freeMemory() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment free = a.allocate(JAVA_LONG), total = a.allocate(JAVA_LONG);
            check((int) cuMemGetInfo.invokeExact(free, total), "cuMemGetInfo_v2");
            return free.get(JAVA_LONG, 0);
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw unexpected("cuMemGetInfo_v2", t);
        }
    }

    // ---------------------------------------------------------------- contexts and streams

    MemorySegment primaryContextRetain(int dev) {
        return pointerOut("cuDevicePrimaryCtxRetain", p -> (int) cuDevicePrimaryCtxRetain.invokeExact(p, dev));
    }

    void primaryContextRelease(int dev) {
        try {
            check((int) cuDevicePrimaryCtxRelease.invokeExact(dev), "cuDevicePrimaryCtxRelease");
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw unexpected("cuDevicePrimaryCtxRelease", t);
        }
    }

    void setCurrent(MemorySegment ctx) {
        try {
            check((int) cuCtxSetCurrent.invokeExact(ctx), "cuCtxSetCurrent");
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw unexpected("cuCtxSetCurrent", t);
        }
    }

    void contextSynchronize() {
        try {
            check((int) cuCtxSynchronize.invokeExact(), "cuCtxSynchronize");
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw unexpected("cuCtxSynchronize", t);
        }
    }

    MemorySegment streamCreate() {
        return pointerOut("cuStreamCreate", p -> (int) cuStreamCreate.invokeExact(p, 0));
    }

    void streamDestroy(MemorySegment stream) {
        simple("cuStreamDestroy_v2", cuStreamDestroy, stream);
    }

    void streamSynchronize(MemorySegment stream) {
        simple("cuStreamSynchronize", cuStreamSynchronize, stream);
    }

    // ---------------------------------------------------------------- events

    /** An event; {@code timing} false makes it CU_EVENT_DISABLE_TIMING (cheaper, for waiting only). */
    MemorySegment eventCreate(boolean timing) {
        int flags = timing ? 0 : 2;
        return pointerOut("cuEventCreate", p -> (int) cuEventCreate.invokeExact(p, flags));
    }

    void eventRecord(MemorySegment event, MemorySegment stream) {
        try {
            check((int) cuEventRecord.invokeExact(event, stream), "cuEventRecord");
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw unexpected("cuEventRecord", t);
        }
    }

    void eventSynchronize(MemorySegment event) {
        simple("cuEventSynchronize", cuEventSynchronize, event);
    }

    float eventElapsedMillis(MemorySegment start, MemorySegment end) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment ms = a.allocate(JAVA_FLOAT);
            check((int) cuEventElapsedTime.invokeExact(ms, start, end), "cuEventElapsedTime");
            return ms.get(JAVA_FLOAT, 0);
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw unexpected("cuEventElapsedTime", t);
        }
    }

    void eventDestroy(MemorySegment event) {
        simple("cuEventDestroy_v2", cuEventDestroy, event);
    }

    // ---------------------------------------------------------------- memory

    long memAlloc(long bytes) {
        return longOut("cuMemAlloc_v2(" + bytes + " bytes)", p -> (int) cuMemAlloc.invokeExact(p, bytes));
    }

    void memFree(long dptr) {
        try {
            check((int) cuMemFree.invokeExact(dptr), "cuMemFree_v2");
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw unexpected("cuMemFree_v2", t);
        }
    }

    /** Page-locked host memory of {@code bytes} (fast, truly asynchronous DMA). */
    MemorySegment memAllocHost(long bytes) {
        return pointerOut("cuMemAllocHost_v2(" + bytes + " bytes)", p -> (int) cuMemAllocHost.invokeExact(p, bytes))
                .reinterpret(bytes);
    }

    void memFreeHost(MemorySegment p) {
        simple("cuMemFreeHost", cuMemFreeHost, p);
    }

    /** Host (native or heap segment) → device, ordered on {@code stream}. */
    void copyHtoD(long dst, MemorySegment src, long bytes, MemorySegment stream) {
        try {
            check((int) cuMemcpyHtoDAsync.invokeExact(dst, src, bytes, stream), "cuMemcpyHtoDAsync_v2(" + bytes + " bytes)");
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw unexpected("cuMemcpyHtoDAsync_v2", t);
        }
    }

    /** Device → host (native or heap segment), ordered on {@code stream}. */
    void copyDtoH(MemorySegment dst, long src, long bytes, MemorySegment stream) {
        try {
            check((int) cuMemcpyDtoHAsync.invokeExact(dst, src, bytes, stream), "cuMemcpyDtoHAsync_v2(" + bytes + " bytes)");
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw unexpected("cuMemcpyDtoHAsync_v2", t);
        }
    }

    void copyDtoD(long dst, long src, long bytes, MemorySegment stream) {
        try {
            check((int) cuMemcpyDtoDAsync.invokeExact(dst, src, bytes, stream), "cuMemcpyDtoDAsync_v2(" + bytes + " bytes)");
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw unexpected("cuMemcpyDtoDAsync_v2", t);
        }
    }

    /** Sets {@code count} 32-bit words at dst to {@code value}. */
    void memsetD32(long dst, int value, long count, MemorySegment stream) {
        try {
            check((int) cuMemsetD32Async.invokeExact(dst, value, count, stream), "cuMemsetD32Async");
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw unexpected("cuMemsetD32Async", t);
        }
    }

    // ---------------------------------------------------------------- modules and launches

    /** Loads a cubin image; returns the CUresult and the module through {@code out}. */
    int moduleLoadData(MemorySegment out, MemorySegment image) {
        try {
            return (int) cuModuleLoadData.invokeExact(out, image);
        } catch (Throwable t) {
            throw unexpected("cuModuleLoadData", t);
        }
    }

    MemorySegment moduleFunction(MemorySegment module, String name) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment cname = a.allocateFrom(name);
            return pointerOut("cuModuleGetFunction(" + name + ")",
                    p -> (int) cuModuleGetFunction.invokeExact(p, module, cname));
        }
    }

    void moduleUnload(MemorySegment module) {
        simple("cuModuleUnload", cuModuleUnload, module);
    }

    void functionAttribute(MemorySegment fn, int attr, int value, String what) {
        try {
            check((int) cuFuncSetAttribute.invokeExact(fn, attr, value), "cuFuncSetAttribute(" + what + ")");
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw unexpected("cuFuncSetAttribute", t);
        }
    }

    void launch(MemorySegment fn, String name, int gx, int gy, int gz, int bx, int by, int bz,
                int sharedBytes, MemorySegment stream, MemorySegment params) {
        try {
            int r = (int) cuLaunchKernel.invokeExact(fn, gx, gy, gz, bx, by, bz, sharedBytes, stream, params,
                    MemorySegment.NULL);
            if (r != 0) {
                throw new CudaException("cuLaunchKernel(" + name + ", grid " + gx + "x" + gy + "x" + gz + ", block "
                        + bx + "x" + by + "x" + bz + ", " + sharedBytes + " B shared) failed: " + errorText(r));
            }
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw unexpected("cuLaunchKernel", t);
        }
    }

    /** CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION (cuda.h, CUlaunchAttributeID). */
    static final int LAUNCH_ATTR_PROGRAMMATIC_STREAM_SERIALIZATION = 6;

    /**
     * cuda.h's CUlaunchAttribute: {@code CUlaunchAttributeID id; char pad[8 - sizeof(id)];
     * CUlaunchAttributeValue value;} where the value is a union padded to 64 bytes whose
     * {@code int programmaticStreamSerializationAllowed} sits at its start: 72 bytes, 8-aligned.
     */
    static final StructLayout LAUNCH_ATTRIBUTE = MemoryLayout.structLayout(JAVA_INT.withName("id"),
            MemoryLayout.paddingLayout(4), MemoryLayout.sequenceLayout(16, JAVA_INT).withName("value"))
            .withByteAlignment(8);

    /**
     * cuda.h's CUlaunchConfig: {@code unsigned gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY,
     * blockDimZ, sharedMemBytes; CUstream hStream; CUlaunchAttribute* attrs; unsigned numAttrs;}
     * (hStream at 32 after 4 bytes of padding, attrs at 40, numAttrs at 48, 56 bytes in all).
     */
    static final StructLayout LAUNCH_CONFIG = MemoryLayout.structLayout(JAVA_INT.withName("gridDimX"),
            JAVA_INT.withName("gridDimY"), JAVA_INT.withName("gridDimZ"), JAVA_INT.withName("blockDimX"),
            JAVA_INT.withName("blockDimY"), JAVA_INT.withName("blockDimZ"), JAVA_INT.withName("sharedMemBytes"),
            MemoryLayout.paddingLayout(4), ADDRESS.withName("hStream"), ADDRESS.withName("attrs"),
            JAVA_INT.withName("numAttrs"), MemoryLayout.paddingLayout(4));

    /** Whether the driver has cuLaunchKernelEx (what programmatic dependent launch needs). */
    boolean hasLaunchEx() {
        return cuLaunchKernelEx != null;
    }

    /**
     * cuLaunchKernelEx with CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION = 1: the kernel may
     * start while the previous kernel on the stream drains (programmatic dependent launch, sm_90+);
     * it must order its reads of the previous kernel's output itself (griddepcontrol.wait).
     */
    void launchProgrammatic(MemorySegment fn, String name, int gx, int gy, int gz, int bx, int by, int bz,
                            int sharedBytes, MemorySegment stream, MemorySegment params) {
        if (cuLaunchKernelEx == null) {
            throw new CudaException("cuLaunchKernelEx(" + name + "): the driver lacks it (CUDA 12.0+ needed)");
        }
        try (Arena a = Arena.ofConfined()) {
            MemorySegment attr = a.allocate(LAUNCH_ATTRIBUTE);
            attr.set(JAVA_INT, LAUNCH_ATTRIBUTE.byteOffset(MemoryLayout.PathElement.groupElement("id")),
                    LAUNCH_ATTR_PROGRAMMATIC_STREAM_SERIALIZATION);
            attr.set(JAVA_INT, LAUNCH_ATTRIBUTE.byteOffset(MemoryLayout.PathElement.groupElement("value")), 1);
            MemorySegment cfg = a.allocate(LAUNCH_CONFIG);
            int[] dims = {gx, gy, gz, bx, by, bz, sharedBytes};
            for (int i = 0; i < dims.length; i++) {
                cfg.set(JAVA_INT, 4L * i, dims[i]);
            }
            cfg.set(ADDRESS, LAUNCH_CONFIG.byteOffset(MemoryLayout.PathElement.groupElement("hStream")), stream);
            cfg.set(ADDRESS, LAUNCH_CONFIG.byteOffset(MemoryLayout.PathElement.groupElement("attrs")), attr);
            cfg.set(JAVA_INT, LAUNCH_CONFIG.byteOffset(MemoryLayout.PathElement.groupElement("numAttrs")), 1);
            int r = (int) cuLaunchKernelEx.invokeExact(cfg, fn, params, MemorySegment.NULL);
            if (r != 0) {
                throw new CudaException("cuLaunchKernelEx(" + name + ", programmatic, grid " + gx + "x" + gy + "x" + gz
                        + ", block " + bx + "x" + by + "x" + bz + ", " + sharedBytes + " B shared) failed: "
                        + errorText(r));
            }
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw unexpected("cuLaunchKernelEx", t);
        }
    }

    // ---------------------------------------------------------------- graphs

    /** CU_STREAM_CAPTURE_MODE_RELAXED: other threads' CUDA calls stay allowed while a stream captures. */
    static final int CAPTURE_RELAXED = 2;

    void streamBeginCapture(MemorySegment stream) {
        try {
            check((int) cuStreamBeginCapture.invokeExact(stream, CAPTURE_RELAXED), "cuStreamBeginCapture_v2");
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw unexpected("cuStreamBeginCapture_v2", t);
        }
    }

    /** Ends the capture: the graph of the work queued since {@link #streamBeginCapture}. */
    MemorySegment streamEndCapture(MemorySegment stream) {
        return pointerOut("cuStreamEndCapture", p -> (int) cuStreamEndCapture.invokeExact(stream, p));
    }

    MemorySegment graphInstantiate(MemorySegment graph) {
        return pointerOut("cuGraphInstantiateWithFlags", p -> (int) cuGraphInstantiate.invokeExact(p, graph, 0L));
    }

    void graphLaunch(MemorySegment exec, MemorySegment stream) {
        try {
            check((int) cuGraphLaunch.invokeExact(exec, stream), "cuGraphLaunch");
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw unexpected("cuGraphLaunch", t);
        }
    }

    void graphExecDestroy(MemorySegment exec) {
        simple("cuGraphExecDestroy", cuGraphExecDestroy, exec);
    }

    void graphDestroy(MemorySegment graph) {
        simple("cuGraphDestroy", cuGraphDestroy, graph);
    }

    // ---------------------------------------------------------------- helpers

    @FunctionalInterface
    private interface Call {
        int call(MemorySegment out) throws Throwable;
    }

    private int intOut(String what, Call c) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment p = a.allocate(JAVA_INT);
            check(c.call(p), what);
            return p.get(JAVA_INT, 0);
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw unexpected(what, t);
        }
    }

    private long longOut(String what, Call c) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment p = a.allocate(JAVA_LONG);
            check(c.call(p), what);
            return p.get(JAVA_LONG, 0);
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw unexpected(what, t);
        }
    }

    private MemorySegment pointerOut(String what, Call c) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment p = a.allocate(ADDRESS);
            check(c.call(p), what);
            return p.get(ADDRESS, 0);
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw unexpected(what, t);
        }
    }

    private void simple(String what, MethodHandle h, MemorySegment arg) {
        try {
            check((int) h.invokeExact(arg), what);
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw unexpected(what, t);
        }
    }
}
