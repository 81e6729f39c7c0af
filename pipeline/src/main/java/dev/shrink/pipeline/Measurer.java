package dev.shrink.pipeline;

import dev.shrink.calib.EvalText;
import dev.shrink.core.ShrinkException;
import dev.shrink.core.forward.CausalLM;
import dev.shrink.core.model.ModelDir;
import dev.shrink.core.model.Tokenizer;
import dev.shrink.core.ops.Ops;
import dev.shrink.eval.Generator;
import dev.shrink.eval.KlDivergence;
import dev.shrink.eval.KlResult;
import dev.shrink.eval.LoadedModel;
import dev.shrink.eval.ModelSize;
import dev.shrink.eval.PeakMemory;
import dev.shrink.eval.DeviceModel;
import dev.shrink.eval.Perplexity;
import dev.shrink.eval.ResidentModel;
import dev.shrink.kernels.cuda.CudaOps;
import dev.shrink.eval.PplResult;
import dev.shrink.eval.SizeResult;
import dev.shrink.eval.Speed;
import dev.shrink.eval.SpeedEstimate;
import dev.shrink.eval.SpeedResult;
import dev.shrink.pipeline.Recipe.Evaluation;
import java.io.PrintWriter;
import java.lang.management.ManagementFactory;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.OptionalLong;

/**
 * Measures models against one baseline with one recipe's evaluation settings. The evaluation texts
 * are tokenized once with the baseline's tokenizer (every stage keeps it), and the baseline's
 * logits on the KL windows are computed once, before any measurement, so that every model's
 * memory peak is taken in the same state.
 *
 * <p>Per model, in this order: size (files only); live heap after a full GC and the RSS peak reset;
 * load, live heap again; speed, continuations, peak RSS read; perplexity per set; KL. All of them
 * run with the recipe's KV cache ({@code evaluation.kv_cache}, docs/KV_CACHE.md). The baseline
 * runs the speed measurement once while preparing (JIT warm-up), so that the first model measured
 * is not slower for being first.
 */
final class Measurer {
    private final Evaluation eval;
    private final Path baseline;
    private final Ops ops;
    private final boolean quiet;
    private final PrintWriter log;
    private final int seqlen;
    private final Integer bos;
    private final List<Integer> eos;
    private final int maxPositions;
    private final Map<String, int[]> streams = new LinkedHashMap<>();
    private final Map<String, String> names = new LinkedHashMap<>();
    private final List<int[]> prompts = new ArrayList<>();
    private KlDivergence.Reference reference;

    Measurer(Evaluation eval, Path baseline, Ops ops, boolean quiet, PrintWriter log) {
        this.eval = eval;
        this.baseline = baseline;
        this.ops = ops;
        this.quiet = quiet;
        this.log = log;
        try (ModelDir dir = ModelDir.open(baseline)) {
            maxPositions = dir.config().maxPositions();
            seqlen = eval.seqlen() != null ? eval.seqlen() : Math.min(maxPositions, 2048);
            bos = dir.config().bosTokenId();
            eos = dir.config().eosTokenIds();
        }
        if (seqlen > maxPositions) {
            throw new ShrinkException("evaluation seqlen " + seqlen + " exceeds the model's max_position_embeddings "
                    + maxPositions);
        }
        if (eval.speed().prefillTokens() + eval.speed().decodeTokens() > maxPositions) {
            throw new ShrinkException("evaluation speed: prefill_tokens + decode_tokens = " + (eval.speed().prefillTokens()
                    + eval.speed().decodeTokens()) + " exceeds the model's max_position_embeddings " + maxPositions);
        }
    }

    /** The window length of perplexity and KL: the recipe's, or the model's max_position_embeddings (≤ 2048). */
    int seqlen() {
        return seqlen;
    }

    /** Tokenizes the evaluation texts and prompts, and runs the baseline over the KL windows (once). */
    void prepare() {
        if (!streams.isEmpty()) {
            return;
        }
        try (ModelDir dir = ModelDir.open(baseline); Tokenizer tok = dir.tokenizer()) {
            List<String> sets = new ArrayList<>(eval.datasets());
            if (eval.kl().windows() > 0 && !sets.contains(eval.kl().dataset())) {
                sets.add(eval.kl().dataset());
            }
            for (String d : sets) {
                EvalText text = EvalText.load(d);
                streams.put(d, withBos(tok.encode(text.text())));
                names.put(d, text.name());
            }
            for (String p : eval.prompts()) {
                int[] ids = withBos(tok.encode(p));
                if (ids.length + eval.maxNewTokens() > maxPositions) {
                    throw new ShrinkException("evaluation prompt \"" + p + "\" (" + ids.length + " tokens) + max_new_tokens "
                            + eval.maxNewTokens() + " exceeds the model's max_position_embeddings " + maxPositions);
                }
                prompts.add(ids);
            }
        }
        int[] first = streams.get(eval.datasets().get(0));
        if (first.length < eval.speed().prefillTokens()) {
            throw new ShrinkException(eval.datasets().get(0) + ": " + first.length + " tokens, fewer than speed.prefill_tokens "
                    + eval.speed().prefillTokens());
        }
        if (eval.kl().windows() > 0) {
            log.printf(Locale.ROOT, "  baseline logits for KL: %d windows of %d tokens of %s%n", eval.kl().windows(), seqlen,
                    names.get(eval.kl().dataset()));
            log.flush();
        }
        // The baseline loaded once: the KL reference, and a JIT warm-up of the speed run so that the
        // first model measured is not slower for being first.
        try (LoadedModel m = LoadedModel.open(baseline, ops)) {
            if (eval.kl().windows() > 0) {
                reference = KlDivergence.reference(m.lm(), names.get(eval.kl().dataset()), streams.get(eval.kl().dataset()),
                        seqlen, eval.kl().windows());
            }
            Speed.measure(baseline, ops, m::lm, dev.shrink.core.forward.KvCacheType.FP16,
                    Arrays.copyOf(first, eval.speed().prefillTokens()), eval.speed().decodeTokens(), eval.speed().repeats());
        }
    }

    /** Heap in use after a full GC: the live objects. */
    private static long liveHeap() {
        System.gc();
        return ManagementFactory.getMemoryMXBean().getHeapMemoryUsage().getUsed();
    }

    private int[] withBos(int[] body) {
        return LoadedModel.withBos(body, bos);
    }

    /** Measures the model folder {@code model}. */
    Measures measure(Path model) {
        prepare();
        long t0 = System.nanoTime();
        SizeResult size = ModelSize.of(model, baseline);

        long heapBefore = liveHeap();
        boolean reset = PeakMemory.resetPeak();
        OptionalLong start = PeakMemory.rss();
        SpeedResult speed;
        List<Measures.Continuation> continuations = new ArrayList<>();
        List<PplResult> ppl = new ArrayList<>();
        KlResult kl = null;
        Measures.Memory memory;
        if (ops instanceof CudaOps cuda) {
            return measureResident(model, cuda, size, t0);
        }
        try (LoadedModel loaded = LoadedModel.open(model, ops)) {
            loaded.lm(); // read now: the heap it holds is measured
            long modelHeap = liveHeap() - heapBefore;
            // every measure through the recipe's KV cache (evaluation.kv_cache); the KL reference stays the
            // baseline with an fp16 cache, so KL includes what the quantized cache costs
            CausalLM lm = loaded.lm().withKvCache(eval.kvCache());
            int[] prompt = Arrays.copyOf(streams.get(eval.datasets().get(0)), eval.speed().prefillTokens());
            // on the cuda backend: the device-resident decoder (W4A16 GEMV for packed 4-bit folders)
            speed = Speed.measure(model, ops, () -> lm, eval.kvCache(), prompt, eval.speed().decodeTokens(),
                    eval.speed().repeats());
            for (int i = 0; i < prompts.size(); i++) {
                int[] ids = prompts.get(i);
                int[] all = Generator.generate(lm, ids, eval.maxNewTokens(), 0, 0, eos, t -> { });
                int[] added = Arrays.copyOfRange(all, ids.length, all.length);
                continuations.add(new Measures.Continuation(eval.prompts().get(i), loaded.tokenizer().decode(added, true),
                        added.length));
            }
            OptionalLong peak = PeakMemory.peakRss();
            memory = new Measures.Memory(modelHeap, reset && peak.isPresent() ? peak.getAsLong() : null,
                    start.isPresent() ? start.getAsLong() : null);
            for (String d : eval.datasets()) {
                ppl.add(Perplexity.evaluate(lm, names.get(d), streams.get(d), seqlen, eval.maxWindows(), quiet));
            }
            if (reference != null) {
                kl = KlDivergence.evaluate(reference, lm, quiet);
            }
        }
        return new Measures(size, ppl, kl, speed, memory, continuations, ops.name(), (System.nanoTime() - t0) / 1e9);
    }

    /**
     * The measures on the cuda backend, with nothing of the model on the heap unless KL asks for it:
     * speed and greedy continuations on the batch-1 device decoder (the host model where that refuses
     * the folder), perplexity on the GPU-resident model (docs/FORWARD.md), KL on the host.
     */
    private Measures measureResident(Path model, CudaOps cuda, SizeResult size, long t0) {
        boolean reset = PeakMemory.resetPeak();
        OptionalLong start = PeakMemory.rss();
        List<Measures.Continuation> continuations = new ArrayList<>();
        List<PplResult> ppl = new ArrayList<>();
        KlResult kl = null;
        SpeedResult speed;
        long deviceBytes;
        try (LoadedModel loaded = LoadedModel.open(model, ops)) {
            java.util.function.Supplier<CausalLM> lm = () -> loaded.lm().withKvCache(eval.kvCache());
            int[] prompt = Arrays.copyOf(streams.get(eval.datasets().get(0)), eval.speed().prefillTokens());
            speed = Speed.measure(model, ops, lm, eval.kvCache(), prompt, eval.speed().decodeTokens(), eval.speed().repeats());
            int longest = prompts.stream().mapToInt(p -> p.length).max().orElse(1) + eval.maxNewTokens();
            DeviceModel dm = null;
            if (!prompts.isEmpty() && !eval.kvCache().quantized()) {
                try {
                    dm = DeviceModel.load(loaded.dir(), cuda.device(), longest);
                } catch (DeviceModel.Unsupported e) {
                    dm = null; // the host model below
                }
            }
            try {
                for (int i = 0; i < prompts.size(); i++) {
                    int[] ids = prompts.get(i);
                    int[] all = dm != null ? greedy(dm, ids, eval.maxNewTokens())
                            : Generator.generate(lm.get(), ids, eval.maxNewTokens(), 0, 0, eos, t -> { });
                    int[] added = Arrays.copyOfRange(all, ids.length, all.length);
                    continuations.add(new Measures.Continuation(eval.prompts().get(i),
                            loaded.tokenizer().decode(added, true), added.length));
                }
            } finally {
                if (dm != null) {
                    dm.close();
                }
            }
            try (ResidentModel resident = ResidentModel.load(loaded.dir(), cuda, eval.kvCache(), true)) {
                deviceBytes = resident.weightBytes();
                for (String d : eval.datasets()) {
                    ppl.add(Perplexity.evaluate(resident, names.get(d), streams.get(d), seqlen, eval.maxWindows(), quiet));
                }
            }
            if (reference != null) {
                kl = KlDivergence.evaluate(reference, lm.get(), quiet);
            }
        }
        OptionalLong peak = PeakMemory.peakRss();
        Measures.Memory memory = new Measures.Memory(0, reset && peak.isPresent() ? peak.getAsLong() : null,
                start.isPresent() ? start.getAsLong() : null, deviceBytes);
        SpeedEstimate estimate;
        try (ModelDir dir = ModelDir.open(model)) {
            estimate = SpeedEstimate.of(dir, cuda.device().name(), eval.kvCache(), eval.speed().prefillTokens(),
                    eval.speed().decodeTokens()).orElse(null);
        }
        return new Measures(size, ppl, kl, speed, memory, continuations, ops.name(), (System.nanoTime() - t0) / 1e9,
                estimate);
    }

    /** Greedy tokens after {@code prompt} on the device decoder, stopping after an end-of-sequence id. */
    private int[] greedy(DeviceModel dm, int[] prompt, int maxNew) {
        dm.reset();
        float[] logits = null;
        for (int t : prompt) {
            logits = dm.step(t);
        }
        int[] out = Arrays.copyOf(prompt, prompt.length + maxNew);
        int n = prompt.length;
        for (int s = 0; s < maxNew; s++) {
            int next = Generator.argmax(logits, dm.vocab());
            out[n++] = next;
            if (eos.contains(next) || s + 1 == maxNew) {
                break;
            }
            logits = dm.step(next);
        }
        return Arrays.copyOf(out, n);
    }
}
