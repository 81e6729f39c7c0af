package dev.shrink.calib;

/**
 * CPython's {@code random.Random}, bit for bit, for the parts that draw calibration windows:
 * the Mersenne Twister MT19937 seeded from an int as {@code random.seed(n)} does, and
 * {@link #getrandbits}, {@link #randbelow}, {@link #randint} built on it as in CPython 3.x
 * ({@code _randommodule.c}, {@code random.py}).
 *
 * <p>So {@code new PythonRandom(0).randint(0, 100)} is 49, as {@code random.seed(0);
 * random.randint(0, 100)} is in Python. Not thread-safe.
 */
public final class PythonRandom {
    private static final int N = 624;
    private static final int M = 397;
    private static final int MATRIX_A = 0x9908b0df;
    private static final int UPPER_MASK = 0x80000000;
    private static final int LOWER_MASK = 0x7fffffff;

    private final int[] mt = new int[N];
    private int mti;

    /** A generator in the state {@code random.seed(seed)} leaves Python's. */
    public PythonRandom(long seed) {
        seed(seed);
    }

    /**
     * {@code random.seed(seed)} for an int: the key is the 32-bit words of |seed|, least
     * significant first ({@code [0]} for 0), fed to MT19937's {@code init_by_array}.
     */
    public void seed(long seed) {
        // |seed| as an unsigned 64-bit value: -Long.MIN_VALUE wraps to itself, which is 2^63 unsigned.
        long abs = seed < 0 ? -seed : seed;
        int lo = (int) abs;
        int hi = (int) (abs >>> 32);
        int[] key = hi != 0 ? new int[] {lo, hi} : new int[] {lo};
        initByArray(key);
    }

    private void initGenrand(int s) {
        mt[0] = s;
        for (mti = 1; mti < N; mti++) {
            // 1812433253 * (mt[i-1] ^ (mt[i-1] >> 30)) + i, modulo 2^32: int arithmetic wraps the same way.
            mt[mti] = 1812433253 * (mt[mti - 1] ^ (mt[mti - 1] >>> 30)) + mti;
        }
    }

    private void initByArray(int[] key) {
        initGenrand(19650218);
        int i = 1;
        int j = 0;
        for (int k = Math.max(N, key.length); k > 0; k--) {
            mt[i] = (mt[i] ^ ((mt[i - 1] ^ (mt[i - 1] >>> 30)) * 1664525)) + key[j] + j;
            i++;
            j++;
            if (i >= N) {
                mt[0] = mt[N - 1];
                i = 1;
            }
            if (j >= key.length) {
                j = 0;
            }
        }
        for (int k = N - 1; k > 0; k--) {
            mt[i] = (mt[i] ^ ((mt[i - 1] ^ (mt[i - 1] >>> 30)) * 1566083941)) - i;
            i++;
            if (i >= N) {
                mt[0] = mt[N - 1];
                i = 1;
            }
        }
        mt[0] = 0x80000000; // MSB is 1, assuring a non-zero initial array
        mti = N;
    }

    /** The next 32-bit output of MT19937 ({@code genrand_uint32}), as an unsigned value in an int. */
    public int nextUint32() {
        if (mti >= N) {
            int kk;
            for (kk = 0; kk < N - M; kk++) {
                int y = (mt[kk] & UPPER_MASK) | (mt[kk + 1] & LOWER_MASK);
                mt[kk] = mt[kk + M] ^ (y >>> 1) ^ ((y & 1) != 0 ? MATRIX_A : 0);
            }
            for (; kk < N - 1; kk++) {
                int y = (mt[kk] & UPPER_MASK) | (mt[kk + 1] & LOWER_MASK);
                mt[kk] = mt[kk + (M - N)] ^ (y >>> 1) ^ ((y & 1) != 0 ? MATRIX_A : 0);
            }
            int y = (mt[N - 1] & UPPER_MASK) | (mt[0] & LOWER_MASK);
            mt[N - 1] = mt[M - 1] ^ (y >>> 1) ^ ((y & 1) != 0 ? MATRIX_A : 0);
            mti = 0;
        }
        int y = mt[mti++];
        y ^= y >>> 11;
        y ^= (y << 7) & 0x9d2c5680;
        y ^= (y << 15) & 0xefc60000;
        y ^= y >>> 18;
        return y;
    }

    /**
     * {@code random.getrandbits(k)} for 0 ≤ k ≤ 64: for k ≤ 32 the top k bits of one output;
     * above, 32-bit words least significant first, the last one keeping its top bits, as CPython
     * assembles them. k = 64 may give a negative long (the value is unsigned).
     */
    public long getrandbits(int k) {
        if (k < 0 || k > 64) {
            throw new IllegalArgumentException("getrandbits(" + k + "): k must be in [0, 64]");
        }
        if (k == 0) {
            return 0;
        }
        if (k <= 32) {
            return Integer.toUnsignedLong(nextUint32() >>> (32 - k));
        }
        long low = Integer.toUnsignedLong(nextUint32());
        long high = Integer.toUnsignedLong(nextUint32() >>> (64 - k));
        return (high << 32) | low;
    }

    /**
     * {@code random._randbelow(n)}: uniform in [0, n) by rejection: k = bit_length(n), draw
     * getrandbits(k) until it is below n.
     */
    public long randbelow(long n) {
        if (n <= 0) {
            throw new IllegalArgumentException("randbelow(" + n + "): n must be positive");
        }
        int k = 64 - Long.numberOfLeadingZeros(n);
        long r = getrandbits(k);
        while (r >= n) {
            r = getrandbits(k);
        }
        return r;
    }

    /** {@code random.randint(a, b)}: uniform in [a, b], both ends included: a + randbelow(b − a + 1). */
    public long randint(long a, long b) {
        if (b < a) {
            throw new IllegalArgumentException("randint(" + a + ", " + b + "): empty range");
        }
        return a + randbelow(Math.addExact(Math.subtractExact(b, a), 1));
    }
}
