package dev.shrink.kernels.cuda;

import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.HashSet;
import java.util.Set;
import org.junit.jupiter.api.Test;

/**
 * The rows the GPU forward allocates a mixture's expert arrays for: never fewer than routed, at most a
 * quarter more, and few distinct sizes (the pool keeps one array per size it has seen). No GPU needed.
 */
class RoundedRowsTest {
    @Test
    void atLeastNAtMostAQuarterMoreAndFewSizes() {
        Set<Integer> sizes = new HashSet<>();
        for (int n = 1; n <= 1 << 17; n++) {
            int r = CudaForwardOps.roundedRows(n);
            assertTrue(r >= n, n + " -> " + r);
            assertTrue(n <= 8 ? r == 8 : r <= n + n / 4, n + " -> " + r);
            sizes.add(r);
        }
        assertTrue(sizes.size() <= 4 * 17 + 1, sizes.size() + " sizes for 1 .. 2^17 rows");
        assertTrue(CudaForwardOps.roundedRows(Integer.MAX_VALUE) >= Integer.MAX_VALUE - 1);
    }
}
