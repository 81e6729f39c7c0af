package dev.shrink.core.quant;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** GPTQ int32 packing: FORMATS.md's golden words, AutoGPTQ's 3-bit layout, round trips. */
class GptqPackingTest {

    /** FORMATS.md: K = 32, N = 8, q[i][j] = (3i + 5j) mod 16 with i the input row, j the output column. */
    private static int[] goldenCodes() {
        int N = 8, K = 32;
        int[] codes = new int[N * K]; // [N, K]
        for (int n = 0; n < N; n++) {
            for (int k = 0; k < K; k++) {
                codes[n * K + k] = (3 * k + 5 * n) % 16;
            }
        }
        return codes;
    }

    @Test
    void goldenQweightWord() {
        int[] q = GptqPacking.packQweight(goldenCodes(), 8, 32, 4);
        assertEquals(4 * 8, q.length, "qweight [K*4/32, N] = [4, 8]");
        assertEquals(0x52fc9630, q[0], "qweight[0][0]");
    }

    @Test
    void qweightWordsFollowTheFormula() {
        // qweight[r][n] = sum_j q[8r + j][n] << 4j, for every word, not only the first
        int N = 8, K = 32;
        int[] codes = goldenCodes();
        int[] q = GptqPacking.packQweight(codes, N, K, 4);
        for (int r = 0; r < K / 8; r++) {
            for (int n = 0; n < N; n++) {
                int expected = 0;
                for (int j = 0; j < 8; j++) {
                    expected |= codes[n * K + 8 * r + j] << (4 * j);
                }
                assertEquals(expected, q[r * N + n], "qweight[" + r + "][" + n + "]");
            }
        }
    }

    @Test
    void goldenQzerosWords() {
        int[] zeros = {7, 8, 9, 10, 11, 12, 13, 14}; // [G = 1, N = 8]
        assertArrayEquals(new int[] {0xdcba9876}, GptqPacking.packQzeros(zeros, 1, 8, 4, true), "v1 stores z - 1");
        assertArrayEquals(new int[] {0xedcba987}, GptqPacking.packQzeros(zeros, 1, 8, 4, false), "v2 stores z");
        assertArrayEquals(zeros, GptqPacking.unpackQzeros(new int[] {0xdcba9876}, 1, 8, 4, true));
        assertArrayEquals(zeros, GptqPacking.unpackQzeros(new int[] {0xedcba987}, 1, 8, 4, false));
    }

    @Test
    void symmetricFourBitZeros() {
        int G = 3, N = 16;
        int[] zeros = new int[G * N];
        java.util.Arrays.fill(zeros, 8);
        int[] v1 = GptqPacking.packQzeros(zeros, G, N, 4, true);
        int[] v2 = GptqPacking.packQzeros(zeros, G, N, 4, false);
        assertEquals(G * 2, v1.length);
        for (int i = 0; i < v1.length; i++) {
            assertEquals(0x77777777, v1[i]);
            assertEquals(0x88888888, v2[i]);
        }
    }

    @Test
    void eightBitLayout() {
        int N = 4, K = 8;
        int[] codes = new int[N * K];
        for (int i = 0; i < codes.length; i++) {
            codes[i] = (37 * i + 11) & 0xFF;
        }
        int[] q = GptqPacking.packQweight(codes, N, K, 8);
        assertEquals(2 * N, q.length);
        for (int r = 0; r < 2; r++) {
            for (int n = 0; n < N; n++) {
                int expected = 0;
                for (int j = 0; j < 4; j++) {
                    expected |= codes[n * K + 4 * r + j] << (8 * j);
                }
                assertEquals(expected, q[r * N + n]);
            }
        }
        // 8-bit symmetric zero point 128: v1 stores 127 = 0x7f in every byte
        assertArrayEquals(new int[] {0x7f7f7f7f}, GptqPacking.packQzeros(new int[] {128, 128, 128, 128}, 1, 4, 8, true));
        assertArrayEquals(new int[] {0x80808080}, GptqPacking.packQzeros(new int[] {128, 128, 128, 128}, 1, 4, 8, false));
    }

    @Test
    void twoBitLayout() {
        int N = 1, K = 16;
        int[] codes = new int[K];
        for (int k = 0; k < K; k++) {
            codes[k] = k % 4;
        }
        // 16 values per word, value k at bits 2k: pattern 0,1,2,3 repeated = 0b11100100 per byte
        assertArrayEquals(new int[] {0xe4e4e4e4}, GptqPacking.packQweight(codes, N, K, 2));
    }

    /**
     * AutoGPTQ's 3-bit layout written out by its own rules (qlinear_cuda_old.py pack): 10 values in
     * word 0 at 3i, value 10 split 2 | 1, 10 values at 3(i-11)+1, value 21 split 1 | 2, 10 values at 3(i-22)+2.
     */
    private static int[] autoGptqThreeBit(int[] v) { // 32 values -> 3 words
        int[] w = new int[3];
        int i = 0;
        for (int j = 0; j < 10; j++) {
            w[0] |= v[i + j] << (3 * j);
        }
        i += 10;
        w[0] |= v[i] << 30;
        w[1] |= (v[i] >> 2) & 1;
        i += 1;
        for (int j = 0; j < 10; j++) {
            w[1] |= v[i + j] << (3 * j + 1);
        }
        i += 10;
        w[1] |= v[i] << 31;
        w[2] |= (v[i] >> 1) & 0x3;
        i += 1;
        for (int j = 0; j < 10; j++) {
            w[2] |= v[i + j] << (3 * j + 2);
        }
        return w;
    }

    @Test
    void threeBitMatchesAutoGptqLayout() {
        Random rnd = new Random(3);
        int N = 5, K = 64;
        int[] codes = new int[N * K];
        for (int i = 0; i < codes.length; i++) {
            codes[i] = rnd.nextInt(8);
        }
        int[] q = GptqPacking.packQweight(codes, N, K, 3);
        assertEquals(6 * N, q.length, "qweight [K*3/32, N]");
        for (int n = 0; n < N; n++) {
            for (int block = 0; block < K / 32; block++) {
                int[] v = new int[32];
                for (int i = 0; i < 32; i++) {
                    v[i] = codes[n * K + 32 * block + i];
                }
                int[] w = autoGptqThreeBit(v);
                for (int t = 0; t < 3; t++) {
                    assertEquals(w[t], q[(3 * block + t) * N + n], "column " + n + " block " + block + " word " + t);
                }
            }
        }
        // qzeros along the output dim use the same layout (v2: as is)
        int G = 2, Nz = 32;
        int[] zeros = new int[G * Nz];
        for (int i = 0; i < zeros.length; i++) {
            zeros[i] = rnd.nextInt(8);
        }
        int[] qz = GptqPacking.packQzeros(zeros, G, Nz, 3, false);
        for (int g = 0; g < G; g++) {
            int[] v = java.util.Arrays.copyOfRange(zeros, g * Nz, (g + 1) * Nz);
            assertArrayEquals(autoGptqThreeBit(v), java.util.Arrays.copyOfRange(qz, 3 * g, 3 * g + 3));
        }
    }

    @Test
    void threeBitSplitFieldsByHand() {
        // only value 10 = 0b111 and value 21 = 0b101 set: bits 30,31 of w0 and bit 0 of w1; bit 31 of w1 and bits 0..1 of w2 = 0b10
        int[] v = new int[32];
        v[10] = 7;
        v[21] = 5;
        int[] q = GptqPacking.packQweight(v, 1, 32, 3);
        assertArrayEquals(new int[] {0xC0000000, 0x80000001, 0x00000002}, q);
        assertArrayEquals(v, GptqPacking.unpackQweight(q, 1, 32, 3));
    }

    @ParameterizedTest(name = "{0}-bit round trip")
    @ValueSource(ints = {2, 3, 4, 8})
    void roundTrip(int bits) {
        Random rnd = new Random(100 + bits);
        int N = 64, K = 96; // K*bits and N*bits are multiples of 32 for every width
        int max = 1 << bits;
        int[] codes = new int[N * K];
        for (int i = 0; i < codes.length; i++) {
            codes[i] = rnd.nextInt(max);
        }
        int[] q = GptqPacking.packQweight(codes, N, K, bits);
        assertEquals(K * bits / 32 * N, q.length);
        assertArrayEquals(codes, GptqPacking.unpackQweight(q, N, K, bits));

        int G = 3;
        int[] z2 = new int[G * N];
        int[] z1 = new int[G * N];
        for (int i = 0; i < z2.length; i++) {
            z2[i] = rnd.nextInt(max);       // v2: 0..2^b - 1
            z1[i] = 1 + rnd.nextInt(max);   // v1: 1..2^b
        }
        int[] p2 = GptqPacking.packQzeros(z2, G, N, bits, false);
        assertEquals(G * N * bits / 32, p2.length);
        assertArrayEquals(z2, GptqPacking.unpackQzeros(p2, G, N, bits, false));
        assertArrayEquals(z1, GptqPacking.unpackQzeros(GptqPacking.packQzeros(z1, G, N, bits, true), G, N, bits, true));
    }

    @Test
    void v1ZeroPointZeroIsAllOnesAndReadsAsTwoToTheBits() {
        int[] q = GptqPacking.packQzeros(new int[] {0, 1, 0, 1, 0, 1, 0, 1}, 1, 8, 4, true);
        assertArrayEquals(new int[] {0x0f0f0f0f}, q, "(z-1) & 0xF; no spill into the neighbouring fields");
        assertArrayEquals(new int[] {16, 1, 16, 1, 16, 1, 16, 1}, GptqPacking.unpackQzeros(q, 1, 8, 4, true));
    }

    @Test
    void rejectsBadInput() {
        assertThrows(IllegalArgumentException.class, () -> GptqPacking.packQweight(new int[8 * 12], 8, 12, 4),
                "K*bits not a multiple of 32");
        assertThrows(IllegalArgumentException.class, () -> GptqPacking.packQweight(new int[8 * 16], 8, 16, 3));
        assertThrows(IllegalArgumentException.class, () -> GptqPacking.packQzeros(new int[4], 1, 4, 4, false),
                "N*bits not a multiple of 32");
        assertThrows(IllegalArgumentException.class, () -> GptqPacking.packQweight(new int[64], 2, 32, 5), "5 bits");
        assertThrows(IllegalArgumentException.class, () -> GptqPacking.packQweight(new int[63], 2, 32, 4), "length");
        int[] bad = new int[64];
        bad[5] = 16;
        assertThrows(IllegalArgumentException.class, () -> GptqPacking.packQweight(bad, 2, 32, 4), "code out of range");
        assertThrows(IllegalArgumentException.class, () -> GptqPacking.packQzeros(new int[] {16, 0, 0, 0, 0, 0, 0, 0}, 1, 8, 4, false),
                "v2 zero point 16");
        assertThrows(IllegalArgumentException.class, () -> GptqPacking.packQzeros(new int[] {17, 1, 1, 1, 1, 1, 1, 1}, 1, 8, 4, true),
                "v1 zero point 17");
        assertThrows(IllegalArgumentException.class, () -> GptqPacking.unpackQzeros(new int[2], 1, 8, 4, false), "length");
        assertThrows(IllegalArgumentException.class, () -> GptqPacking.unpackQweight(new int[3], 1, 32, 4), "length");
    }
}
