package dev.shrink.distill;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.shrink.core.forward.WeightSource;
import dev.shrink.core.model.ModelDir;
import dev.shrink.kernels.cpu.VectorOps;
import dev.shrink.kernels.cuda.Cuda;
import dev.shrink.kernels.cuda.GemmMath;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Random;
import java.util.TreeMap;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * {@link CudaTrainOps} against {@link F32TrainOps} (itself checked against the float64
 * specification and finite differences): every op's forward and backward on fresh random inputs,
 * forward outputs poisoned with NaN before each call (an output the kernel does not write fails),
 * gradient outputs started at random values (backward ops add into them: a kernel that overwrites
 * fails). Bounds: |gpu − cpu| ≤ rtol·(max|cpu| + |cpu|); rtol 2e-5 for the element and row kernels
 * (float32 with double sums on both sides, exp differing in the last bits), and for the ops made of
 * GEMMs 1e-4 in fp32 and 1e-2 in tf32 (inputs rounded to 10-bit mantissas). Then the whole model:
 * one training step (2 × 128 tokens, KL at T = 2 and CE) on stories260K-hf, the fixture and the Qwen3
 * and Phi-3 fixtures (eval's ArchFixtures): loss
 * and gradient norm within 2e-4 relative in fp32 (2e-2 in tf32), every gradient tensor within
 * 1e-3·(max + |x|) in fp32; and four steps of DistillStage (masks, accumulation, clipping, AdamW):
 * each step's loss and gradient norm within 1e-3 relative, the weights' change within 1e-2, and a
 * second GPU run equal to the first bit for bit.
 * The worst error of each check, as a share of its bound, is printed at the end.
 *
 * <p>Without a GPU (as in CI) every test is skipped with the reason.
 */
class CudaTrainOpsTest {
    private static final long SEED = Long.getLong("shrink.cuda.seed", System.nanoTime());
    private static final Map<String, Double> WORST = new TreeMap<>();
    private static CudaTrainOps fp32, tf32;
    private static String skipReason;
    private static final F32TrainOps CPU = new F32TrainOps(new VectorOps(4), 4);

    @BeforeAll
    static void open() {
        Cuda.Availability a = Cuda.availability();
        if (!a.available()) {
            skipReason = "no CUDA device: " + a.reason();
            System.out.println("CudaTrainOpsTest skipped: " + skipReason);
            return;
        }
        fp32 = CudaTrainOps.open(0, GemmMath.FP32);
        tf32 = new CudaTrainOps(fp32.device(), GemmMath.TF32);
        System.out.println("CudaTrainOpsTest: " + fp32.name() + ", seed " + SEED + (fp32.module().fromCache() ? ""
                : String.format(Locale.ROOT, ", train.cu compiled in %.0f ms", fp32.module().compileMillis())));
    }

    @BeforeEach
    void needsCuda() {
        assumeTrue(fp32 != null, skipReason);
    }

    @AfterAll
    static void close() {
        if (fp32 != null) {
            WORST.forEach((k, v) -> System.out.printf(Locale.ROOT, "  %-28s worst error %.3f of its bound%n", k, v));
            tf32.close();
            fp32.close();
        }
    }

    private static CudaTrainOps ops(GemmMath m) {
        return m == GemmMath.FP32 ? fp32 : tf32;
    }

    static float[] random(Random rnd, int n, double scale) {
        return F32ConformanceTest.random(rnd, n, scale);
    }

    /** A device array holding NaN everywhere: an output the op must overwrite. */
    private static CudaTrainOps.Array poisoned(CudaTrainOps g, int n) {
        CudaTrainOps.Array a = g.zeros(n);
        g.fillNaN(a);
        return a;
    }

    static void close(String what, float[] ref, float[] got, double rtol) {
        assertEquals(ref.length, got.length, what + " length");
        double max = 0;
        for (float r : ref) {
            max = Math.max(max, Math.abs(r));
        }
        assertTrue(max > 0, what + " is all zeros");
        double worst = 0;
        for (int i = 0; i < ref.length; i++) {
            double bound = rtol * (max + Math.abs(ref[i]));
            double err = Math.abs((double) ref[i] - got[i]);
            assertTrue(err <= bound, what + "[" + i + "]: cpu " + ref[i] + ", cuda " + got[i] + " (bound " + bound + ")");
            worst = Math.max(worst, err == 0 ? 0 : err / bound);
        }
        double w = worst;
        synchronized (WORST) {
            WORST.merge(what, w, Math::max);
        }
    }

    static void closeScalar(String what, double ref, double got, double rtol) {
        double bound = rtol * Math.abs(ref) + 1e-12;
        assertTrue(Math.abs(ref - got) <= bound, what + ": cpu " + ref + ", cuda " + got);
        double w = Math.abs(ref - got) / bound;
        synchronized (WORST) {
            WORST.merge(what, w, Math::max);
        }
    }

    @Test
    void elementAndRowOpsMatchTheCpu() {
        CudaTrainOps g = fp32;
        Random rnd = new Random(SEED);
        double rtol = 2e-5;
        g.beginStep();
        try {
            // embedding, with repeated tokens
            int V = 50, C = 96, M = 300;
            int[] tokens = new int[M];
            for (int i = 0; i < M; i++) {
                tokens[i] = rnd.nextInt(V / 2) * 2; // repeats, and rows of E no token uses
            }
            float[] E = random(rnd, V * C, 1), dx = random(rnd, M * C, 1), dE0 = random(rnd, V * C, 1);
            float[] x = new float[M * C];
            CPU.embedForward(E, tokens, C, x);
            CudaTrainOps.Array gx = poisoned(g, M * C);
            g.embedForward(g.adopt(E), tokens, C, gx);
            close("embed", x, g.toFloats(gx), 0);
            float[] dE = dE0.clone();
            CPU.embedBackward(dx, tokens, C, dE);
            CudaTrainOps.Array gdE = g.adopt(dE0);
            g.embedBackward(g.adopt(dx), tokens, C, gdE);
            close("embed backward", dE, g.toFloats(gdE), rtol);

            // RMSNorm over more rows than a column-sum chunk
            int R = 200;
            C = 384;
            float[] xr = random(rnd, R * C, 2), w = random(rnd, C, 1), dy = random(rnd, R * C, 1);
            float[] y = new float[R * C], rstd = new float[R];
            CPU.rmsNormForward(xr, w, 1e-5, R, C, y, rstd);
            CudaTrainOps.Array gxr = g.adopt(xr), gw = g.adopt(w), gy = poisoned(g, R * C), gr = poisoned(g, R);
            g.rmsNormForward(gxr, gw, 1e-5, R, C, gy, gr);
            close("rmsnorm", y, g.toFloats(gy), rtol);
            close("rmsnorm rstd", rstd, g.toFloats(gr), rtol);
            float[] dx0 = random(rnd, R * C, 1), dw0 = random(rnd, C, 1);
            float[] dxr = dx0.clone(), dw = dw0.clone();
            CPU.rmsNormBackward(dy, xr, w, rstd, R, C, dxr, dw);
            CudaTrainOps.Array gdx = g.adopt(dx0), gdw = g.adopt(dw0);
            g.rmsNormBackward(g.adopt(dy), gxr, gw, g.adopt(rstd), R, C, gdx, gdw);
            close("rmsnorm backward dx", dxr, g.toFloats(gdx), rtol);
            close("rmsnorm backward dw", dw, g.toFloats(gdw), rtol);

            // RoPE forward and backward (B = 3 sequences of T = 40, 6 heads of 64)
            int B = 3, T = 40, H = 6, D = 64;
            float[] cosT = new float[64 * D / 2], sinT = new float[64 * D / 2];
            for (int pos = 0; pos < 64; pos++) {
                for (int i = 0; i < D / 2; i++) {
                    double angle = pos * Math.pow(10000, -2.0 * i / D);
                    cosT[pos * D / 2 + i] = (float) Math.cos(angle);
                    sinT[pos * D / 2 + i] = (float) Math.sin(angle);
                }
            }
            RopeTable table = new RopeTable(64, D / 2, cosT, sinT);
            float[] q = random(rnd, B * T * H * D, 1);
            float[] qr = q.clone();
            CPU.ropeForward(qr, B, T, H, D, table);
            CudaTrainOps.Array gq = g.adopt(q);
            g.ropeForward(gq, B, T, H, D, table);
            close("rope", qr, g.toFloats(gq), rtol);
            CPU.ropeBackward(qr, B, T, H, D, table);
            g.ropeBackward(gq, B, T, H, D, table);
            close("rope backward", qr, g.toFloats(gq), rtol);

            // SwiGLU
            int n = 10_000;
            float[] gate = random(rnd, n, 3), up = random(rnd, n, 1), dOut = random(rnd, n, 1);
            float[] out = new float[n];
            CPU.swigluForward(gate, up, n, out);
            CudaTrainOps.Array gg = g.adopt(gate), gu = g.adopt(up), go = poisoned(g, n);
            g.swigluForward(gg, gu, n, go);
            close("swiglu", out, g.toFloats(go), rtol);
            float[] dg0 = random(rnd, n, 1), du0 = random(rnd, n, 1), dg = dg0.clone(), du = du0.clone();
            CPU.swigluBackward(dOut, gate, up, n, dg, du);
            CudaTrainOps.Array gdg = g.adopt(dg0), gdu = g.adopt(du0);
            g.swigluBackward(g.adopt(dOut), gg, gu, n, gdg, gdu);
            close("swiglu backward dg", dg, g.toFloats(gdg), rtol);
            close("swiglu backward du", du, g.toFloats(gdu), rtol);

            // add, copy, scale, zero, zeroAt, sum of squares, squared error
            float[] a = random(rnd, n, 1), d = random(rnd, n, 1);
            CudaTrainOps.Array ga = g.adopt(a);
            g.add(ga, g.adopt(d));
            float[] sum = a.clone();
            CPU.add(sum, d);
            close("add", sum, g.toFloats(ga), 0);
            CudaTrainOps.Array gc = poisoned(g, n);
            g.copy(ga, gc);
            close("copy", sum, g.toFloats(gc), 0);
            g.scale(gc, 0.37);
            CPU.scale(sum, 0.37);
            close("scale", sum, g.toFloats(gc), 0);
            int[] idx = {0, 5, 17, n - 1};
            g.zeroAt(gc, idx);
            CPU.zeroAt(sum, idx);
            close("zeroAt", sum, g.toFloats(gc), 0);
            g.zero(gc);
            assertTrue(g.sumSquares(gc) == 0, "zero leaves non-zeros");
            closeScalar("sumSquares", CPU.sumSquares(a), g.sumSquares(g.adopt(a)), 1e-12);
            float[] b = random(rnd, n, 1), da0 = random(rnd, n, 1), da = da0.clone();
            double se = CPU.squaredError(a, b, n, 0.25, da);
            CudaTrainOps.Array gda = g.adopt(da0);
            closeScalar("squaredError", se, g.squaredError(g.adopt(a), g.adopt(b), n, 0.25, gda), 1e-12);
            close("squaredError gradient", da, g.toFloats(gda), rtol);
            closeScalar("squaredError, no gradient", se, g.squaredError(g.adopt(a), g.adopt(b), n, 0.25, null), 1e-12);

            // AdamW: the same double arithmetic per element
            float[] p = random(rnd, n, 1), gr2 = random(rnd, n, 0.1), m = random(rnd, n, 0.01), v = new float[n];
            for (int i = 0; i < n; i++) {
                v[i] = Math.abs(random(rnd, 1, 1e-3)[0]);
            }
            CudaTrainOps.Array gp = g.adopt(p), gm = g.adopt(m), gv = g.adopt(v);
            AdamW.Step step = new AdamW.Step(AdamW.Hyper.TORCH, 3e-4, 7);
            g.adamw(gp, g.adopt(gr2), gm, gv, step);
            CPU.adamw(p, gr2, m, v, step);
            close("adamw p", p, g.toFloats(gp), 1e-6);
            close("adamw m", m, g.toFloats(gm), 1e-6);
            close("adamw v", v, g.toFloats(gv), 1e-6);
        } finally {
            g.endStep();
        }
    }

    @Test
    void distillLossMatchesTheCpu() {
        CudaTrainOps g = fp32;
        Random rnd = new Random(SEED + 1);
        g.beginStep();
        try {
            int M = 37, V = 8192;
            float[] zs = random(rnd, M * V, 3), zt = random(rnd, M * V, 3);
            int[] targets = new int[M];
            for (int i = 0; i < M; i++) {
                targets[i] = i % 5 == 4 ? -1 : rnd.nextInt(V);
            }
            for (Losses.Kind kind : Losses.Kind.values()) {
                for (double T : new double[] {1, 2}) {
                    for (double[] ka : new double[][] {{0.7 / M, 0.3 / M}, {1.0 / M, 0}, {0, 1.0 / M}}) {
                        String what = "loss " + kind.label() + " T=" + T + " kl " + (ka[0] != 0) + " ce " + (ka[1] != 0);
                        // dz added into a separate gradient
                        float[] dz0 = random(rnd, M * V, 1e-3), dz = dz0.clone();
                        Losses.Sums c = CPU.distillLoss(zs, zt, targets, kind, T, M, V, ka[0], ka[1], dz);
                        CudaTrainOps.Array gzs = g.adopt(zs), gdz = g.adopt(dz0);
                        Losses.Sums s = g.distillLoss(gzs, g.adopt(zt), targets, kind, T, M, V, ka[0], ka[1], gdz);
                        closeScalar(what + " kl", c.kl(), s.kl(), 1e-5);
                        closeScalar(what + " ce", c.ce(), s.ce(), 1e-5);
                        assertEquals(c.klRows(), s.klRows(), what + " kl rows");
                        assertEquals(c.ceRows(), s.ceRows(), what + " ce rows");
                        close(what + " dz", dz, g.toFloats(gdz), 2e-5);
                        // written over the logits (dz is zs)
                        float[] own = zs.clone();
                        CPU.distillLoss(own, zt, targets, kind, T, M, V, ka[0], ka[1], own);
                        CudaTrainOps.Array gown = g.adopt(zs);
                        g.distillLoss(gown, g.adopt(zt), targets, kind, T, M, V, ka[0], ka[1], gown);
                        close(what + " dz over zs", own, g.toFloats(gown), 2e-5);
                    }
                }
            }
        } finally {
            g.endStep();
        }
    }

    @ParameterizedTest
    @EnumSource(GemmMath.class)
    void linearAndAttentionMatchTheCpu(GemmMath math) {
        CudaTrainOps g = ops(math);
        double rtol = math == GemmMath.FP32 ? 1e-4 : 1e-2;
        Random rnd = new Random(SEED + 2 + math.ordinal());
        g.beginStep();
        try {
            // linear with a bias: M = 300, K = 384, N = 1152
            int M = 300, K = 384, N = 1152;
            float[] x = random(rnd, M * K, 1), W = random(rnd, N * K, 0.05), b = random(rnd, N, 0.1);
            float[] y = new float[M * N];
            CPU.linearForward(x, W, b, M, K, N, y);
            CudaTrainOps.Array gx = g.adopt(x), gW = g.adopt(W), gb = g.adopt(b), gy = poisoned(g, M * N);
            g.linearForward(gx, gW, gb, M, K, N, gy);
            close("linear " + math.label(), y, g.toFloats(gy), rtol);
            CudaTrainOps.Array gy2 = poisoned(g, M * N);
            float[] y2 = new float[M * N];
            CPU.linearForward(x, W, null, M, K, N, y2);
            g.linearForward(gx, gW, null, M, K, N, gy2);
            close("linear no bias " + math.label(), y2, g.toFloats(gy2), rtol);
            float[] dy = random(rnd, M * N, 1), dx0 = random(rnd, M * K, 1), dW0 = random(rnd, N * K, 1),
                    db0 = random(rnd, N, 1);
            float[] dx = dx0.clone(), dW = dW0.clone(), db = db0.clone();
            CPU.linearBackward(dy, x, W, M, K, N, dx, dW, db);
            CudaTrainOps.Array gdx = g.adopt(dx0), gdW = g.adopt(dW0), gdb = g.adopt(db0);
            g.linearBackward(g.adopt(dy), gx, gW, M, K, N, gdx, gdW, gdb);
            close("linear backward dx " + math.label(), dx, g.toFloats(gdx), rtol);
            close("linear backward dW " + math.label(), dW, g.toFloats(gdW), rtol);
            close("linear backward db " + math.label(), db, g.toFloats(gdb), 2e-5);

            // causal GQA attention: B = 2 sequences of T = 150 (several CPU query blocks), H = 6, Hkv = 2, D = 64
            int B = 2, T = 150, H = 6, Hkv = 2, D = 64;
            float[] q = random(rnd, B * T * H * D, 1), k = random(rnd, B * T * Hkv * D, 1),
                    v = random(rnd, B * T * Hkv * D, 1);
            float[] out = new float[B * T * H * D], lse = new float[B * H * T];
            CPU.attentionForward(q, k, v, B, T, H, Hkv, D, out, lse);
            CudaTrainOps.Array gq = g.adopt(q), gk = g.adopt(k), gv = g.adopt(v);
            CudaTrainOps.Array gout = poisoned(g, out.length), glse = poisoned(g, lse.length);
            g.attentionForward(gq, gk, gv, B, T, H, Hkv, D, gout, glse);
            close("attention " + math.label(), out, g.toFloats(gout), rtol);
            close("attention lse " + math.label(), lse, g.toFloats(glse), rtol);
            float[] dOut = random(rnd, out.length, 1);
            float[] dq0 = random(rnd, q.length, 1), dk0 = random(rnd, k.length, 1), dv0 = random(rnd, v.length, 1);
            float[] dq = dq0.clone(), dk = dk0.clone(), dv = dv0.clone();
            CPU.attentionBackward(dOut, q, k, v, out, lse, B, T, H, Hkv, D, dq, dk, dv);
            CudaTrainOps.Array gdq = g.adopt(dq0), gdk = g.adopt(dk0), gdv = g.adopt(dv0);
            // the GPU's own forward outputs, as training gives them
            g.attentionBackward(g.adopt(dOut), gq, gk, gv, gout, glse, B, T, H, Hkv, D, gdq, gdk, gdv);
            close("attention backward dq " + math.label(), dq, g.toFloats(gdq), rtol);
            close("attention backward dk " + math.label(), dk, g.toFloats(gdk), rtol);
            close("attention backward dv " + math.label(), dv, g.toFloats(gdv), rtol);
        } finally {
            g.endStep();
        }
    }

    /**
     * One training step of the whole model (forward, KL + CE loss, backward) on CPU and GPU from the
     * same weights and tokens: the loss sums and the gradient norm, and every gradient tensor.
     */
    @ParameterizedTest
    @EnumSource(GemmMath.class)
    void oneTrainingStepMatchesTheCpu(GemmMath math) {
        // Qwen3 (per-head q/k norms: RMSNorm over M·H rows of head_dim) and Phi-3 (fused tensors read apart,
        // LongRoPE's long factors at 128 tokens) from the fixtures transformers made
        for (Path dir : List.of(TestSupport.stories(), TestSupport.fixture(), dev.shrink.eval.ArchFixtures.path("qwen3"),
                dev.shrink.eval.ArchFixtures.path("phi3"))) {
            oneStep(dir, math);
        }
    }

    private void oneStep(Path folder, GemmMath math) {
        CudaTrainOps g = ops(math);
        double rtol = math == GemmMath.FP32 ? 2e-4 : 2e-2;
        try (ModelDir dir = ModelDir.open(folder)) {
            var cfg = dir.config();
            int B = 2, T = Math.min(128, cfg.maxPositions()), M = B * T, V = cfg.vocab();
            Random rnd = new Random(SEED + 5);
            int[] tokens = new int[M];
            for (int i = 0; i < M; i++) {
                tokens[i] = rnd.nextInt(V);
            }
            int[] targets = DistillStage.targets(tokens, T);
            Weights<float[]> student = Weights.load(dev.shrink.core.forward.FusedLinears.of(dir), cfg, dir.spec(), CPU);
            // a teacher: the same model with its weights perturbed
            Weights<float[]> teacher = student.map(a -> {
                float[] t = a.clone();
                for (int i = 0; i < t.length; i++) {
                    t[i] *= (float) (1 + 0.05 * rnd.nextGaussian());
                }
                return t;
            });
            String name = folder.getFileName() + " step " + math.label();

            TrainModel<float[]> cs = new TrainModel<>(CPU, student, T), ct = new TrainModel<>(CPU, teacher, T);
            float[] zt = ct.forward(tokens, B, T).logits();
            TrainModel.Pass<float[]> cp = cs.forward(tokens, B, T);
            Losses.Sums cl = CPU.distillLoss(cp.logits(), zt, targets, Losses.Kind.KL, 2, M, V, 0.5 / M, 0.5 / (M - B),
                    cp.logits());
            Weights<float[]> cg = student.zerosLike(CPU);
            cs.backward(cp, cp.logits(), null, cg);

            g.beginStep();
            try {
                Weights<CudaTrainOps.Array> gsw = student.map(g::adopt), gtw = teacher.map(g::adopt);
                TrainModel<CudaTrainOps.Array> gs = new TrainModel<>(g, gsw, T), gt = new TrainModel<>(g, gtw, T);
                CudaTrainOps.Array gzt = gt.forward(tokens, B, T).logits();
                TrainModel.Pass<CudaTrainOps.Array> gp = gs.forward(tokens, B, T);
                Losses.Sums gl = g.distillLoss(gp.logits(), gzt, targets, Losses.Kind.KL, 2, M, V, 0.5 / M,
                        0.5 / (M - B), gp.logits());
                Weights<CudaTrainOps.Array> gg = gsw.zerosLike(g);
                gs.backward(gp, gp.logits(), null, gg);
                closeScalar(name + " kl", cl.kl(), gl.kl(), rtol);
                closeScalar(name + " ce", cl.ce(), gl.ce(), rtol);
                double cn = 0, gn = 0;
                List<Weights.Entry<float[]>> ce = cg.entries();
                List<Weights.Entry<CudaTrainOps.Array>> ge = gg.entries();
                for (int i = 0; i < ce.size(); i++) {
                    cn += CPU.sumSquares(ce.get(i).value());
                    gn += g.sumSquares(ge.get(i).value());
                    if (math == GemmMath.FP32) { // tf32: the norm only (small tensors' errors are relative to their own size)
                        close(name + " grad", ce.get(i).value(), g.toFloats(ge.get(i).value()), 1e-3);
                    }
                }
                closeScalar(name + " grad norm", Math.sqrt(cn), Math.sqrt(gn), rtol);
                System.out.printf(Locale.ROOT, "%s: loss kl %.6f / %.6f, ce %.6f / %.6f, grad norm %.6f / %.6f (cpu / cuda)%n",
                        name, cl.kl() / M, gl.kl() / M, cl.ce() / (M - B), gl.ce() / (M - B), Math.sqrt(cn), Math.sqrt(gn));
            } finally {
                g.endStep();
            }
        }
    }

    /**
     * Four steps of {@link DistillStage#train} on stories260K-hf pruned 2:4 (masks kept, accumulation
     * over micro-batches, clipping, AdamW) on the GPU in fp32 and on the CPU: every step's loss and
     * gradient norm, and the trained weights, agree; the pruned weights are still exactly zero.
     */
    @Test
    void trainingStepsFollowTheCpu() {
        try (ModelDir dir = ModelDir.open(TestSupport.stories())) {
            Random rnd = new Random(SEED + 9);
            int[] stream = new int[6000];
            for (int i = 0; i < stream.length; i++) {
                stream[i] = rnd.nextInt(dir.config().vocab());
            }
            DistillStage.Config cfg = new DistillStage.Config(4, 4, 2, 64, 1e-3, 1, 1.0, 2.0, 0.5, Losses.Kind.KL, 0,
                    null, AdamW.Hyper.TORCH, 3, 0);
            DistillStage.Teacher teacher = DistillStageTest.teacher(dir);
            DistillStage.Student onCpu = DistillStageTest.pruned(dir, CPU), onGpu = DistillStageTest.pruned(dir, CPU);
            DistillStage.Result c = DistillStage.train(teacher, onCpu, stream, cfg, CPU, null, null, false, null,
                    DistillStage.Listener.NONE);
            DistillStage.Result g = DistillStage.train(teacher, onGpu, stream, cfg, CPU, fp32, null, false, null,
                    DistillStage.Listener.NONE);
            assertTrue(g.backend().startsWith("cuda"), g.backend());
            // the GPU run repeats bit for bit (no atomics in train.cu, reductions in a fixed order)
            DistillStage.Student again = DistillStageTest.pruned(dir, CPU);
            DistillStage.Result g2 = DistillStage.train(teacher, again, stream, cfg, CPU, fp32, null, false, null,
                    DistillStage.Listener.NONE);
            for (int i = 0; i < g.curve().size(); i++) {
                assertEquals(g.curve().get(i).loss(), g2.curve().get(i).loss(), "repeated run, loss of step " + (i + 1));
                assertEquals(g.curve().get(i).gradNorm(), g2.curve().get(i).gradNorm(), "repeated run, grad norm");
            }
            for (int i = 0; i < g.weights().entries().size(); i++) {
                org.junit.jupiter.api.Assertions.assertArrayEquals(g.weights().entries().get(i).value(),
                        g2.weights().entries().get(i).value(), "repeated run, " + g.weights().entries().get(i).name());
            }
            for (int i = 0; i < c.curve().size(); i++) {
                DistillStage.StepRecord a = c.curve().get(i), b = g.curve().get(i);
                System.out.printf(Locale.ROOT, "stories step %d: loss %.6f / %.6f, grad norm %.6f / %.6f (cpu / cuda)%n",
                        a.step(), a.loss(), b.loss(), a.gradNorm(), b.gradNorm());
                closeScalar("train loss", a.loss(), b.loss(), 1e-3);
                closeScalar("train grad norm", a.gradNorm(), b.gradNorm(), 1e-3);
                assertEquals(a.lr(), b.lr(), "lr");
            }
            // the weights' change: ‖Δgpu − Δcpu‖ ≤ 1e-2·‖Δcpu‖ per tensor (element-wise, Adam's first steps
            // move a weight with a ~0 gradient by ±lr whatever its size, so its sign may differ)
            List<Weights.Entry<float[]>> w0 = DistillStageTest.pruned(dir, CPU).weights().entries();
            List<Weights.Entry<float[]>> ce = c.weights().entries(), ge = g.weights().entries();
            for (int i = 0; i < ce.size(); i++) {
                float[] a = ce.get(i).value(), b = ge.get(i).value(), o = w0.get(i).value();
                double diff = 0, moved = 0;
                for (int k = 0; k < a.length; k++) {
                    diff += Math.pow((double) a[k] - b[k], 2);
                    moved += Math.pow((double) a[k] - o[k], 2);
                }
                assertTrue(moved > 0, ce.get(i).name() + " did not move");
                double rel = Math.sqrt(diff / moved);
                assertTrue(rel <= 1e-2, ce.get(i).name() + ": trained on the GPU it differs from the CPU's by " + rel
                        + " of its change");
                synchronized (WORST) {
                    WORST.merge("trained weights' change", rel / 1e-2, Math::max);
                }
            }
            onGpu.masks().forEach((name, idx) -> {
                float[] w = g.weights().get(name);
                for (int k : idx) {
                    assertEquals(0f, w[k], name + "[" + k + "] pruned but not zero");
                }
            });
        }
    }
}
