package dev.shrink.kernels.cpu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/** What the caller of {@link WorkerPool#forEach} sees when an item fails in a worker thread. */
class WorkerPoolTest {
    @Test
    void outOfMemoryInAWorkerReachesTheCallerAsItself() {
        WorkerPool pool = new WorkerPool(2, "test-pool-");
        OutOfMemoryError thrown = new OutOfMemoryError("Java heap space (in a worker)");
        CountDownLatch bothRunning = new CountDownLatch(2);
        Thread caller = Thread.currentThread();
        OutOfMemoryError seen = assertThrows(OutOfMemoryError.class, () -> pool.forEach(4, i -> {
            if (i >= 2) {
                return;
            }
            bothRunning.countDown();
            try {
                bothRunning.await(10, TimeUnit.SECONDS); // items 0 and 1 run at once, on two threads
            } catch (InterruptedException e) {
                throw new IllegalStateException(e);
            }
            if (Thread.currentThread() != caller) {
                throw thrown;
            }
        }));
        assertSame(thrown, seen, "the worker's own error, with its message");
    }

    @Test
    void spinningRangesCoverEveryItemOnceWithNestedCallsAndErrorsReachTheCaller() {
        WorkerPool pool = new WorkerPool(3, "test-spin-");
        for (int n : new int[] {1, 2, 7, 100, 1000}) {
            java.util.concurrent.atomic.AtomicIntegerArray seen = new java.util.concurrent.atomic.AtomicIntegerArray(n);
            java.util.concurrent.atomic.AtomicIntegerArray inner = new java.util.concurrent.atomic.AtomicIntegerArray(n);
            for (int round = 0; round < 50; round++) { // helpers spinning, parked and started again
                pool.forRangeSpinning(n, 3, (from, to) -> {
                    for (int i = from; i < to; i++) {
                        seen.incrementAndGet(i);
                    }
                    // a call from inside a body (while the outer one runs, on its caller alone)
                    pool.forRangeSpinning(to - from, 1, (a, b) -> {
                        for (int i = from + a; i < from + b; i++) {
                            inner.incrementAndGet(i);
                        }
                    });
                });
            }
            for (int i = 0; i < n; i++) {
                assertEquals(50, seen.get(i), "item " + i + " of " + n);
                assertEquals(50, inner.get(i), "nested item " + i + " of " + n);
            }
        }
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> pool.forRangeSpinning(64, 1, (a, b) -> {
            if (a <= 40 && 40 < b) {
                throw new IllegalStateException("item 40");
            }
        }));
        assertEquals("item 40", e.getMessage());
        OutOfMemoryError oom = new OutOfMemoryError("in a chunk");
        assertSame(oom, assertThrows(OutOfMemoryError.class, () -> pool.forRangeSpinning(64, 1, (a, b) -> {
            throw oom;
        })));
        int[] after = new int[10];
        pool.forRangeSpinning(10, 1, (a, b) -> {
            for (int i = a; i < b; i++) {
                after[i]++;
            }
        });
        assertEquals("[1, 1, 1, 1, 1, 1, 1, 1, 1, 1]", java.util.Arrays.toString(after), "the pool works after a failure");
    }

    @Test
    void exceptionsStillReachTheCaller() {
        WorkerPool pool = new WorkerPool(2, "test-pool-");
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> pool.forEach(8, i -> {
            if (i == 5) {
                throw new IllegalStateException("item 5");
            }
        }));
        // the item's own exception, or (thrown on a worker) ForkJoinPool's copy of it, whose message may
        // be the original's toString() and whose cause, when set, is the original
        boolean found = false;
        for (Throwable t = e; t != null && !found; t = t.getCause()) {
            found = t.getMessage() != null && t.getMessage().endsWith("item 5");
        }
        assertTrue(found, () -> "item 5's exception reaches the caller: " + e);
    }
}
