package dev.shrink.kernels.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.lang.foreign.MemoryLayout.PathElement;
import org.junit.jupiter.api.Test;

/**
 * The FFM layouts of cuLaunchKernelEx's structs against cuda.h's C layout on x86-64 (sizes and
 * offsets a C compiler gives CUlaunchConfig and CUlaunchAttribute): a wrong offset would hand the
 * driver a garbage stream or attribute. Runs without a GPU.
 */
class LaunchConfigLayoutTest {
    @Test
    void launchConfigMatchesCudaH() {
        // 7 unsigned ints (28 bytes), 4 bytes of padding, CUstream, CUlaunchAttribute*, unsigned int, padding
        assertEquals(56, Driver.LAUNCH_CONFIG.byteSize());
        assertEquals(8, Driver.LAUNCH_CONFIG.byteAlignment());
        assertEquals(24, Driver.LAUNCH_CONFIG.byteOffset(PathElement.groupElement("sharedMemBytes")));
        assertEquals(32, Driver.LAUNCH_CONFIG.byteOffset(PathElement.groupElement("hStream")));
        assertEquals(40, Driver.LAUNCH_CONFIG.byteOffset(PathElement.groupElement("attrs")));
        assertEquals(48, Driver.LAUNCH_CONFIG.byteOffset(PathElement.groupElement("numAttrs")));
    }

    @Test
    void launchAttributeMatchesCudaH() {
        // CUlaunchAttributeID id; char pad[8 - sizeof(id)]; CUlaunchAttributeValue value (a union of 64 bytes)
        assertEquals(72, Driver.LAUNCH_ATTRIBUTE.byteSize());
        assertEquals(8, Driver.LAUNCH_ATTRIBUTE.byteAlignment());
        assertEquals(0, Driver.LAUNCH_ATTRIBUTE.byteOffset(PathElement.groupElement("id")));
        assertEquals(8, Driver.LAUNCH_ATTRIBUTE.byteOffset(PathElement.groupElement("value")));
        assertEquals(6, Driver.LAUNCH_ATTR_PROGRAMMATIC_STREAM_SERIALIZATION);
    }
}
