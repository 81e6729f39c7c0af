package dev.shrink.core.quant;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Random;
import org.junit.jupiter.api.Test;

/** AutoAWQ GEMM packing: FORMATS.md's golden words, the interleave, round trips, refusals. */
class AwqPackingTest {

    @Test
    void goldenQweightWord() {
        // FORMATS.md: codes of input row 0, output columns 0..7 = [0, 5, 10, 15, 4, 9, 14, 3] -> 0x39f5e4a0
        int N = 8, K = 1;
        int[] codes = {0, 5, 10, 15, 4, 9, 14, 3}; // [N, K]: one input row, eight output columns
        int[] q = AwqPacking.packQweight(codes, N, K);
        assertEquals(1, q.length, "qweight [K, N/8] = [1, 1]");
        assertEquals(0x39f5e4a0, q[0]);
        assertArrayEquals(codes, AwqPacking.unpackQweight(new int[] {0x39f5e4a0}, N, K));
    }

    @Test
    void goldenQzerosWord() {
        int[] zeros = {7, 8, 9, 10, 11, 12, 13, 14}; // [G = 1, N = 8]
        assertArrayEquals(new int[] {0xeca8db97}, AwqPacking.packQzeros(zeros, 1, 8), "zeros stored as they are");
        assertArrayEquals(zeros, AwqPacking.unpackQzeros(new int[] {0xeca8db97}, 1, 8));
    }

    @Test
    void everyWordFollowsTheInterleave() {
        // nibble i of word c holds column 8c + ORDER[i]; the qweight row is the input feature
        int N = 24, K = 5;
        Random rnd = new Random(3);
        int[] codes = new int[N * K];
        for (int i = 0; i < codes.length; i++) {
            codes[i] = rnd.nextInt(16);
        }
        int[] q = AwqPacking.packQweight(codes, N, K);
        assertEquals(K * N / 8, q.length);
        for (int k = 0; k < K; k++) {
            for (int c = 0; c < N / 8; c++) {
                int expected = 0;
                for (int i = 0; i < 8; i++) {
                    expected |= codes[(8 * c + AwqPacking.ORDER[i]) * K + k] << (4 * i);
                }
                assertEquals(expected, q[k * (N / 8) + c], "qweight[" + k + "][" + c + "]");
            }
        }
    }

    @Test
    void roundTrips() {
        Random rnd = new Random(7);
        int N = 64, K = 256, G = 2;
        int[] codes = new int[N * K];
        for (int i = 0; i < codes.length; i++) {
            codes[i] = rnd.nextInt(16);
        }
        assertArrayEquals(codes, AwqPacking.unpackQweight(AwqPacking.packQweight(codes, N, K), N, K));
        int[] zeros = new int[G * N];
        for (int i = 0; i < zeros.length; i++) {
            zeros[i] = rnd.nextInt(16);
        }
        assertArrayEquals(zeros, AwqPacking.unpackQzeros(AwqPacking.packQzeros(zeros, G, N), G, N));
        // the extremes survive the sign bit of the int32 word
        int[] fifteen = new int[8 * 3];
        java.util.Arrays.fill(fifteen, 15);
        int[] packed = AwqPacking.packQweight(fifteen, 8, 3);
        assertArrayEquals(new int[] {-1, -1, -1}, packed);
        assertArrayEquals(fifteen, AwqPacking.unpackQweight(packed, 8, 3));
    }

    @Test
    void refusesWhatCannotBePacked() {
        IllegalArgumentException n = assertThrows(IllegalArgumentException.class,
                () -> AwqPacking.packQweight(new int[12], 12, 1));
        assertTrue(n.getMessage().contains("multiple of 8"), n.getMessage());
        assertThrows(IllegalArgumentException.class, () -> AwqPacking.packQweight(new int[] {16, 0, 0, 0, 0, 0, 0, 0}, 8, 1));
        assertThrows(IllegalArgumentException.class, () -> AwqPacking.packQweight(new int[7], 8, 1));
        assertThrows(IllegalArgumentException.class, () -> AwqPacking.packQzeros(new int[] {-1, 0, 0, 0, 0, 0, 0, 0}, 1, 8));
        assertThrows(IllegalArgumentException.class, () -> AwqPacking.unpackQweight(new int[3], 8, 2));
    }
}
