package dev.shrink.kernels.cpu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;

import dev.shrink.core.ShrinkException;
import dev.shrink.core.ops.Backends;
import dev.shrink.core.ops.Ops;
import dev.shrink.core.ops.OpsProvider;
import java.util.List;
import org.junit.jupiter.api.Test;

/** The two CPU backends are found through ServiceLoader under their device names. */
class ProvidersTest {

    @Test
    void bothProvidersAreRegisteredAndRanked() {
        List<String> devices = Backends.providers().stream().map(OpsProvider::device).toList();
        assertEquals(List.of("cpu", "cpu-reference"), devices.stream()
                .filter(d -> d.startsWith("cpu")).toList(), "ranked cpu (10) before cpu-reference (0)");
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

    @Test
    void autoPicksTheVectorBackend() {
        assertInstanceOf(VectorOps.class, Backends.select("auto", 1));
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
