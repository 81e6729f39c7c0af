package dev.shrink.kernels.cuda;

/**
 * The CUDA libraries of this process: the driver (libcuda.so.1), NVRTC and cuBLAS, loaded by
 * soname through FFM and initialised once ({@code cuInit}). The libraries and the driver's state
 * are per process by nature, so this is the one shared object of the package; devices, buffers,
 * modules and handles are ordinary owned objects made from it ({@link #open(int)}).
 *
 * <p>Where there is no GPU or no driver, {@link #availability()} says why in one line (e.g. "CUDA
 * not available: libcuda.so.1 not found") and {@link #get()} throws that as a {@link CudaException};
 * nothing else in Shrink touches CUDA, so the CPU backends work as before.
 */
public final class Cuda {
    /** Whether CUDA can run here and, if not, why. */
    public record Availability(boolean available, String reason) {
    }

    final Driver driver;
    final Nvrtc nvrtc;
    final Cublas cublas;
    private final int deviceCount;

    private Cuda(Driver driver, Nvrtc nvrtc, Cublas cublas, int deviceCount) {
        this.driver = driver;
        this.nvrtc = nvrtc;
        this.cublas = cublas;
        this.deviceCount = deviceCount;
    }

    /** Loaded on first use; a failure is remembered, so probing twice costs nothing. */
    private static final class Holder {
        static final Object INSTANCE = load();

        private static Object load() {
            try {
                Driver driver = new Driver();
                int r = driver.init();
                if (r != 0) {
                    return new CudaException("CUDA not available: cuInit failed: " + driver.errorText(r));
                }
                int n = driver.deviceCount();
                if (n == 0) {
                    return new CudaException("CUDA not available: the driver sees no CUDA device");
                }
                return new Cuda(driver, new Nvrtc(), new Cublas(), n);
            } catch (CudaException e) {
                return e;
            } catch (RuntimeException | LinkageError e) {
                return new CudaException("CUDA not available: " + e, e);
            }
        }
    }

    /**
     * The loaded libraries.
     *
     * @throws CudaException naming what is missing when CUDA cannot run here
     */
    public static Cuda get() {
        Object o = Holder.INSTANCE;
        if (o instanceof Cuda c) {
            return c;
        }
        CudaException e = (CudaException) o;
        throw new CudaException(e.getMessage(), e);
    }

    /** Never throws: whether {@link #get()} works and, if not, its message. */
    public static Availability availability() {
        Object o = Holder.INSTANCE;
        return o instanceof Cuda ? new Availability(true, "") : new Availability(false, ((CudaException) o).getMessage());
    }

    private Cusolver cusolver;
    private CudaException cusolverMissing;

    /**
     * cuSOLVER, loaded on first use (only GPTQ's device path needs it).
     *
     * @throws CudaException "CUDA not available: libcusolver.so.12, ... not found" where it is missing
     */
    synchronized Cusolver cusolver() {
        if (cusolver == null && cusolverMissing == null) {
            try {
                cusolver = new Cusolver();
            } catch (CudaException e) {
                cusolverMissing = e;
            } catch (RuntimeException | LinkageError e) {
                cusolverMissing = new CudaException("CUDA not available: cuSOLVER: " + e, e);
            }
        }
        if (cusolver == null) {
            throw new CudaException(cusolverMissing.getMessage(), cusolverMissing);
        }
        return cusolver;
    }

    /** "NVIDIA H100 80GB HBM3, driver CUDA 13.0": GPU 0 (and how many more there are) and the driver. */
    public String describe() {
        String more = deviceCount > 1 ? " and " + (deviceCount - 1) + " more" : "";
        return driver.deviceName(driver.device(0)) + more + ", driver CUDA " + driverVersion();
    }

    public int deviceCount() {
        return deviceCount;
    }

    /** The driver's CUDA version, e.g. "13.0". */
    public String driverVersion() {
        int v = driver.driverVersion();
        return v / 1000 + "." + (v % 1000) / 10;
    }

    public String nvrtcVersion() {
        return nvrtc.version();
    }

    /** Sonames as loaded: "libcuda.so.1, libnvrtc.so.13, libcublas.so.13". */
    public String libraries() {
        return driver.lib.soname() + ", " + nvrtc.lib.soname() + ", " + cublas.lib.soname();
    }

    /**
     * Device {@code ordinal}: its primary context retained and a stream created on it.
     *
     * @throws CudaException if there is no such device
     */
    public CudaDevice open(int ordinal) {
        if (ordinal < 0 || ordinal >= deviceCount) {
            throw new CudaException("CUDA device " + ordinal + " does not exist; this machine has " + deviceCount);
        }
        return new CudaDevice(this, ordinal);
    }
}
