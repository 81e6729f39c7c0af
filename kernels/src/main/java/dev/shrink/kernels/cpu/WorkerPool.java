package dev.shrink.kernels.cpu;

import java.util.concurrent.ForkJoinPool;
import java.util.concurrent.ForkJoinWorkerThread;
import java.util.concurrent.RecursiveAction;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.locks.LockSupport;
import java.util.function.IntConsumer;

/**
 * The threads of one {@link VectorOps}: a dedicated {@link ForkJoinPool} of daemon threads (never
 * the common pool, so a backend's thread count is what it says and other users of the common
 * pool do not slow it down). With one thread there is no pool at all and work runs on the caller.
 * Idle workers time out, so an unused backend holds no threads. Also the threads of distillation's
 * {@code F32TrainOps}, which needs {@link #sum}'s thread-count-independent reductions.
 *
 * <p>Work of a few microseconds (a decoded token's linears) goes to {@link #forRangeSpinning}
 * instead: waking a parked ForkJoinPool worker costs tens of microseconds on a busy machine, more
 * than the work, so there a team of helper threads that spin between such calls claims chunks
 * beside the caller.
 */
public final class WorkerPool {
    /** How long an idle helper spins for the next {@link #forRangeSpinning} before it parks. */
    static final long SPIN_NANOS = 200_000;
    /** How long a parked helper waits for work before its thread ends (a new one starts on demand). */
    static final long KEEP_ALIVE_NANOS = 2_000_000_000L;

    private final int threads;
    private final ForkJoinPool pool; // null when threads == 1
    private final String name;
    /** The spinning helpers (threads − 1 of them, started on first use), the current job, who dispatches. */
    private final Helper[] helpers;
    private volatile Job job;
    private final AtomicBoolean dispatching = new AtomicBoolean();

    /** A pool of {@code threads} workers named shrink-cpu-N. */
    public WorkerPool(int threads) {
        this(threads, "shrink-cpu-");
    }

    /** A pool of {@code threads} workers named {@code name} + index. */
    public WorkerPool(int threads, String name) {
        if (threads < 1) {
            throw new IllegalArgumentException("threads = " + threads + " < 1");
        }
        this.threads = threads;
        this.pool = threads == 1 ? null : new ForkJoinPool(threads, p -> newWorker(p, name), null, false);
        this.name = name;
        this.helpers = new Helper[threads - 1];
    }

    private static ForkJoinWorkerThread newWorker(ForkJoinPool pool, String name) {
        ForkJoinWorkerThread t = ForkJoinPool.defaultForkJoinWorkerThreadFactory.newThread(pool);
        t.setDaemon(true); // never keeps the JVM alive
        t.setName(name + t.getPoolIndex());
        return t;
    }

    public int threads() {
        return threads;
    }

    /**
     * Runs body(0) .. body(n − 1), in parallel when there are several threads, and returns when
     * all are done. Items are scheduled by work stealing, so giving more items than threads
     * balances load on a busy machine. An exception in any item is rethrown here; an error (out of
     * memory in a worker) is rethrown as the worker's own error, so the caller sees an
     * OutOfMemoryError with its message, not a copy made by the pool.
     */
    public void forEach(int n, IntConsumer body) {
        if (n <= 0) {
            return;
        }
        if (pool == null || n == 1) {
            for (int i = 0; i < n; i++) {
                body.accept(i);
            }
            return;
        }
        try {
            pool.invoke(new Range(0, n, body));
        } catch (Error e) {
            // ForkJoinPool rethrows a worker's throwable as a new one of the same class (its stack
            // the caller's) with the original as cause: give back the original
            throw e.getCause() instanceof Error original && original.getClass() == e.getClass() ? original : e;
        }
    }

    /**
     * Splits [0, n) into at most {@code 4 · threads} contiguous chunks of at least {@code grain}
     * items and runs body(from, to) on each (in parallel when there are several threads).
     */
    public void forRange(int n, int grain, RangeBody body) {
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
     * Runs body(from, to) over [0, n) cut into contiguous chunks of at least {@code grain} items (at
     * most 8 per thread), which the caller and the pool's spinning helpers claim one at a time; returns
     * when all are done. For work of microseconds: a helper that is not running right away leaves its
     * share to the caller rather than making it wait. A call made while another one runs (from a body
     * of it, or from another thread) runs on its caller alone. An exception in any chunk is rethrown here.
     */
    public void forRangeSpinning(int n, int grain, RangeBody body) {
        if (n <= 0) {
            return;
        }
        int chunks = (int) Math.min(8L * threads, Math.max(1, n / Math.max(1, grain)));
        if (threads == 1 || chunks <= 1 || !dispatching.compareAndSet(false, true)) {
            body.run(0, n);
            return;
        }
        try {
            Job j = new Job(n, chunks, body);
            job = j;
            wakeHelpers();
            j.work();
            while (j.done.get() < chunks) {
                Thread.onSpinWait(); // a helper finishes the chunk it claimed
            }
            if (j.error instanceof RuntimeException r) {
                throw r;
            }
            if (j.error instanceof Error e) {
                throw e;
            }
        } finally {
            dispatching.set(false);
        }
    }

    private void wakeHelpers() {
        for (int i = 0; i < helpers.length; i++) {
            Helper h = helpers[i];
            if (h == null || !h.alive) {
                synchronized (this) {
                    if (helpers[i] == null || !helpers[i].alive) {
                        helpers[i] = new Helper(name + "spin-" + i);
                        helpers[i].start();
                    }
                }
            } else if (h.parked) {
                LockSupport.unpark(h);
            }
        }
    }

    /** One {@link #forRangeSpinning} call: its chunks, the next unclaimed one, how many are done. */
    private static final class Job {
        final int n, chunks;
        final RangeBody body;
        final AtomicInteger next = new AtomicInteger(), done = new AtomicInteger();
        volatile Throwable error;

        Job(int n, int chunks, RangeBody body) {
            this.n = n;
            this.chunks = chunks;
            this.body = body;
        }

        /** Claims and runs chunks until none is left. */
        void work() {
            for (int c; (c = next.getAndIncrement()) < chunks; ) {
                try {
                    body.run((int) ((long) n * c / chunks), (int) ((long) n * (c + 1) / chunks));
                } catch (RuntimeException | Error e) {
                    error = e;
                } finally {
                    done.incrementAndGet();
                }
            }
        }
    }

    /** A daemon thread that runs each new job's chunks, spins {@link #SPIN_NANOS} for the next, then parks. */
    private final class Helper extends Thread {
        volatile boolean alive = true, parked;

        Helper(String name) {
            super(name);
            setDaemon(true);
        }

        @Override
        public void run() {
            Job seen = null;
            while (true) {
                Job j = job;
                if (j != seen && j != null) {
                    seen = j;
                    j.work();
                    continue;
                }
                long t0 = System.nanoTime();
                while ((j = job) == seen && System.nanoTime() - t0 < SPIN_NANOS) {
                    Thread.yield(); // not onSpinWait: a helper that shares a core with the caller gives it back
                }
                if (j != seen) {
                    continue;
                }
                parked = true;
                if (job == seen) {
                    LockSupport.parkNanos(this, KEEP_ALIVE_NANOS);
                }
                parked = false;
                if (job == seen && System.nanoTime() - t0 >= KEEP_ALIVE_NANOS) {
                    synchronized (WorkerPool.this) {
                        if (job == seen) {
                            alive = false; // the next call starts a new helper
                            return;
                        }
                    }
                }
            }
        }
    }

    /**
     * Σ over [0, n) of partial(from, to), the range cut into chunks of exactly {@code chunk} items
     * (the last shorter) whatever the thread count, the partial sums added in chunk order: the
     * result does not depend on the number of threads.
     */
    public double sum(int n, int chunk, RangeSum partial) {
        int chunks = (n + chunk - 1) / chunk;
        double[] parts = new double[chunks];
        forEach(chunks, c -> parts[c] = partial.sum(c * chunk, Math.min(n, (c + 1) * chunk)));
        double s = 0;
        for (double p : parts) {
            s += p;
        }
        return s;
    }

    /** A body over a half-open range of items. */
    @FunctionalInterface
    public interface RangeBody {
        void run(int from, int to);
    }

    /** A partial sum over a half-open range of items. */
    @FunctionalInterface
    public interface RangeSum {
        double sum(int from, int to);
    }

    /** Halves [lo, hi) until one item is left, then runs it. */
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
