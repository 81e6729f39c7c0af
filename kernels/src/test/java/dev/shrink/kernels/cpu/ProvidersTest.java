package dev.shrink.kernels.cpu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeFalse;

import dev.shrink.core.ShrinkException;
import dev.shrink.core.ops.Backends;
import dev.shrink.core.ops.Ops;
import dev.shrink.core.ops.OpsProvider;
import java.util.List;
import org.junit.jupiter.api.Test;

/** The backends are found through ServiceLoader under their device names, in rank order. */
class ProvidersTest {

    @Test
    void bothProvidersAreRegisteredAndRanked() {
        List<String> devices = Backends.providers().stream().map(OpsProvider::device).toList();
        assertEquals(List.of("cuda", "cpu", "cpu-reference"), devices,
                "ranked cuda (20), cpu (10), cpu-reference (0)");
    }

    @Test
    void selectByDeviceName() {
        Ops cpu = Backends.select("cpu", 2);
        assertInstanceOf(VectorOps.class, cpu);
        assertEquals("cpu", cpu.name());
        assertEquals(2, ((VectorOps) cpu).threads());
        Ops ref = Backends.select("cpu-reference", 1);
        assertInstanceOf(ReferenceOps.class, ref);
        assertEquals("cpu-reference", ref.name());
    }

    /** auto takes CUDA where it works (ranked 20), else the Vector backend. */
    @Test
    void autoPicksCudaWhenPresentElseTheVectorBackend() throws Exception {
        Ops auto = Backends.select("auto", 1);
        if (dev.shrink.kernels.cuda.Cuda.availability().available()) {
            assertTrue(auto.name().startsWith("cuda ("), auto.name());
            ((AutoCloseable) auto).close();
        } else {
            assertInstanceOf(VectorOps.class, auto);
        }
    }

    /** Without a GPU, --device cuda is one clear error that says why, and cpu still works. */
    @Test
    void cudaWithoutGpuIsAClearError() {
        var a = dev.shrink.kernels.cuda.Cuda.availability();
        assumeFalse(a.available(), "a CUDA device is present");
        ShrinkException e = assertThrows(ShrinkException.class, () -> Backends.select("cuda", 1));
        assertTrue(e.getMessage().startsWith("--device cuda: not available here: CUDA not available: "), e.getMessage());
        assertFalse(e.getMessage().contains("\n"), "one line");
        assertInstanceOf(VectorOps.class, Backends.select("cpu", 1));
    }

    @Test
    void unknownDeviceIsAUserError() {
        assertThrows(ShrinkException.class, () -> Backends.select("abacus", 1));
    }

    @Test
    void threadCountMustBePositive() {
        assertThrows(IllegalArgumentException.class, () -> new VectorOps(0));
    }
}
