#!/usr/bin/env python3
"""The reference for `shrink eval --device cuda`: transformers' perplexity of a model folder in fp16 on
the same windows (the protocol of docs/EVAL.md: BOS once, non-overlapping windows of SEQLEN, the tail
dropped; wikitext2's rows joined as Shrink's EvalText joins them), timed the same way: wall time
including load, tokens/s of the windows alone, peak GPU memory. Prints one JSON line.
A benchmark reference only (the GPU machine has torch and transformers); never a dependency.
Usage: hf_ppl.py MODEL_DIR WIKI_TEST_RAW [SEQLEN=2048] [BATCH=4]"""
import json, math, sys, time

t_start = time.time()
import torch
from transformers import AutoModelForCausalLM
from tokenizers import Tokenizer

model_dir, raw_path = sys.argv[1], sys.argv[2]
seqlen = int(sys.argv[3]) if len(sys.argv) > 3 else 2048
batch = int(sys.argv[4]) if len(sys.argv) > 4 else 4

raw = open(raw_path, encoding="utf-8").read()
rows = raw.splitlines(keepends=True)
text = "\n\n".join("" if r.strip() == "" else r for r in rows)
tok = Tokenizer.from_file(f"{model_dir}/tokenizer.json")
cfg = json.load(open(f"{model_dir}/config.json"))
ids = tok.encode(text, add_special_tokens=False).ids
if cfg.get("bos_token_id") is not None:
    ids = [cfg["bos_token_id"]] + ids
windows = len(ids) // seqlen

t0 = time.time()
model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float16, device_map="cuda")
model.eval()
torch.cuda.synchronize()
load_s = time.time() - t0

data = torch.tensor(ids[: windows * seqlen], dtype=torch.long).view(windows, seqlen)
nll_sum, count = 0.0, 0
torch.cuda.reset_peak_memory_stats()
t1 = time.time()
with torch.inference_mode():
    for b0 in range(0, windows, batch):
        x = data[b0 : b0 + batch].cuda()
        logits = model(x).logits[:, :-1, :].float()
        nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1),
                                                reduction="sum")
        nll_sum += nll.item()
        count += x[:, 1:].numel()
torch.cuda.synchronize()
eval_s = time.time() - t1
print(json.dumps({"reference": "transformers fp16", "torch": torch.__version__,
                  "transformers": __import__("transformers").__version__, "tokens": len(ids), "windows": windows,
                  "seqlen": seqlen, "batch": batch, "ppl": math.exp(nll_sum / count), "load_s": round(load_s, 2),
                  "eval_s": round(eval_s, 2), "tokens_per_s": round(windows * seqlen / eval_s, 1),
                  "wall_s": round(time.time() - t_start, 2),
                  "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)}))
