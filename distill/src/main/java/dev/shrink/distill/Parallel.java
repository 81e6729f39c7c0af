package dev.shrink.distill;

import java.util.concurrent.ForkJoinPool;
import java.util.concurrent.ForkJoinWorkerThread;
import java.util.concurrent.RecursiveAction;
import java.util.function.IntConsumer;

/**
 * The threads of one {@link F32TrainOps}: a dedicated {@link ForkJoinPool} of daemon threads (the
 * pattern of kernels' worker pool), or the caller alone with one thread. Work items write disjoint
 * outputs; reductions are split into chunks of a fixed size whatever the thread count and summed
 * in chunk order, so results do not depend on the number of threads.
 */
final class Parallel {
    private final int threads;
    private final ForkJoinPool pool; // null with one thread

    Parallel(int threads) {
        if (threads < 1) {
            throw new IllegalArgumentException("threads = " + threads + " < 1");
        }
        this.threads = threads;
        this.pool = threads == 1 ? null : new ForkJoinPool(threads, Parallel::newWorker, null, false);
    }

    private static ForkJoinWorkerThread newWorker(ForkJoinPool pool) {
        ForkJoinWorkerThread t = ForkJoinPool.defaultForkJoinWorkerThreadFactory.newThread(pool);
        t.setDaemon(true);
        t.setName("shrink-train-" + t.getPoolIndex());
        return t;
    }

    int threads() {
        return threads;
    }

    /** Runs body(0) .. body(n − 1), in parallel when there are several threads; rethrows an item's exception. */
    void forEach(int n, IntConsumer body) {
        if (n <= 0) {
            return;
        }
        if (pool == null || n == 1) {
            for (int i = 0; i < n; i++) {
                body.accept(i);
            }
            return;
        }
        pool.invoke(new Range(0, n, body));
    }

    /** Splits [0, n) into at most 4·threads chunks of at least {@code grain} items; body(from, to) on each. */
    void forRange(int n, int grain, RangeBody body) {
        if (n <= 0) {
            return;
        }
        int chunks = (int) Math.min(4L * threads, Math.max(1, n / Math.max(1, grain)));
        if (pool == null || chunks <= 1) {
            body.run(0, n);
            return;
        }
        forEach(chunks, c -> body.run((int) ((long) n * c / chunks), (int) ((long) n * (c + 1) / chunks)));
    }

    /**
     * Σ over [0, n) of partial(from, to), the range cut into chunks of exactly {@code chunk} items
     * (the last shorter) whatever the thread count, the partial sums added in chunk order.
     */
    double sum(int n, int chunk, RangeSum partial) {
        int chunks = (n + chunk - 1) / chunk;
        double[] parts = new double[chunks];
        forEach(chunks, c -> parts[c] = partial.sum(c * chunk, Math.min(n, (c + 1) * chunk)));
        double s = 0;
        for (double p : parts) {
            s += p;
        }
        return s;
    }

    @FunctionalInterface
    interface RangeBody {
        void run(int from, int to);
    }

    @FunctionalInterface
    interface RangeSum {
        double sum(int from, int to);
    }

    private static final class Range extends RecursiveAction {
        private final int lo, hi;
        private final IntConsumer body;

        Range(int lo, int hi, IntConsumer body) {
            this.lo = lo;
            this.hi = hi;
            this.body = body;
        }

        @Override
        protected void compute() {
            if (hi - lo == 1) {
                body.accept(lo);
                return;
            }
            int mid = (lo + hi) >>> 1;
            invokeAll(new Range(lo, mid, body), new Range(mid, hi, body));
        }
    }
}
