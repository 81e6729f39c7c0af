package dev.shrink.core.quant;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import org.junit.jupiter.api.Test;

class QuantizedLinearTest {

    @Test
    void dequantizeByHand() {
        // N = 2 outputs, K = 4 inputs, group size 2 -> G = 2; act-order-like g_idx {1, 0, 0, 1}
        int[] codes = {
            0, 5, 15, 9,   // row 0
            7, 8, 1, 12};  // row 1
        float[] scales = {
            0.5f, 2.0f,    // group 0: n = 0, 1
            0.25f, -1.0f}; // group 1
        int[] zeros = {
            8, 3,          // group 0
            2, 10};        // group 1
        int[] gIdx = {1, 0, 0, 1};
        QuantizedLinear q = new QuantizedLinear("m.x", 2, 4, 4, 2, codes, scales, zeros, gIdx, null);
        float[] expected = {
            // row 0: k0 g1 s .25 z 2 | k1 g0 s .5 z 8 | k2 g0 | k3 g1
            0.25f * (0 - 2), 0.5f * (5 - 8), 0.5f * (15 - 8), 0.25f * (9 - 2),
            // row 1: k0 g1 s -1 z 10 | k1 g0 s 2 z 3 | k2 g0 | k3 g1
            -1.0f * (7 - 10), 2.0f * (8 - 3), 2.0f * (1 - 3), -1.0f * (12 - 10)};
        assertArrayEquals(new float[] {-0.5f, -1.5f, 3.5f, 1.75f, 3f, 10f, -4f, -2f}, expected);
        assertArrayEquals(expected, q.dequantize());
        assertEquals(2, q.groupCount());
    }

    @Test
    void groupCounts() {
        assertEquals(1, QuantizedLinear.groups(384, -1));
        assertEquals(3, QuantizedLinear.groups(384, 128));
        assertEquals(4, QuantizedLinear.groups(400, 128));
        assertArrayEquals(new int[] {0, 0, 1, 1, 2}, QuantizedLinear.sequentialGIdx(5, 2));
        assertArrayEquals(new int[] {0, 0, 0}, QuantizedLinear.sequentialGIdx(3, -1));
    }

    @Test
    void rejectsWrongSizes() {
        int[] c = new int[8];
        float[] s = new float[4];
        int[] z = new int[4];
        int[] g = {0, 0, 1, 1};
        new QuantizedLinear("ok", 2, 4, 4, 2, c, s, z, g, new float[2]);
        assertThrows(IllegalArgumentException.class, () -> new QuantizedLinear("x", 2, 4, 4, 2, new int[7], s, z, g, null));
        assertThrows(IllegalArgumentException.class, () -> new QuantizedLinear("x", 2, 4, 4, 2, c, new float[2], z, g, null));
        assertThrows(IllegalArgumentException.class, () -> new QuantizedLinear("x", 2, 4, 4, 2, c, s, new int[6], g, null));
        assertThrows(IllegalArgumentException.class, () -> new QuantizedLinear("x", 2, 4, 4, 2, c, s, z, new int[3], null));
        assertThrows(IllegalArgumentException.class, () -> new QuantizedLinear("x", 2, 4, 4, 2, c, s, z, g, new float[3]));
        assertThrows(IllegalArgumentException.class, () -> new QuantizedLinear("x", 2, 4, 4, 2, c, s, z, new int[] {0, 2, 0, 0}, null),
                "g_idx out of range");
        assertThrows(IllegalArgumentException.class, () -> new QuantizedLinear("x", 2, 4, 5, 2, c, s, z, g, null), "5 bits");
        assertThrows(IllegalArgumentException.class, () -> new QuantizedLinear("x", 2, 4, 4, 0, c, s, z, g, null), "group 0");
        assertThrows(IllegalArgumentException.class, () -> new QuantizedLinear("x", 2, 4, 2, 2, new int[] {0, 4, 0, 0, 0, 0, 0, 0}, s, z, g, null),
                "2-bit code 4");
        // group size -1: one group
        new QuantizedLinear("pc", 2, 4, 4, -1, c, new float[2], new int[2], new int[4], null);
        assertThrows(IllegalArgumentException.class, () -> new QuantizedLinear("pc", 2, 4, 4, -1, c, s, z, new int[4], null));
    }
}
