#!/usr/bin/env python3
"""Load a GPTQ folder (Shrink's, or any AutoGPTQ/GPTQModel one) or an AutoAWQ "GEMM" folder into
transformers' model with the weights dequantized, and measure perplexity with the protocol of
shared/golden/README.md.

Written from shared/docs/FORMATS.md alone (no GPTQ library), so it checks that what Shrink writes
is what the format says and that the Python ecosystem computes the same perplexity.

    python3 interop/quantized_perplexity.py --model DIR --text heldout.txt [--kind heldout|wikitext2|ptb|raw]
                                       [--seqlen 512] [--max-windows N] [--device cuda]
Prints one JSON line: {"ppl": ..., "windows": ..., "tokens": ..., ...}.
"""
import argparse
import json
import math
import os
import sys

import torch
from safetensors import safe_open
from tokenizers import Tokenizer
from transformers import AutoConfig, AutoModelForCausalLM


def unpack_rows(qweight, bits, K):
    """qweight [K*bits/32, N] int32 -> codes [K, N]: one little-endian bit stream per output column."""
    words = qweight.to(torch.int64) & 0xFFFFFFFF           # [R, N] as unsigned
    R, N = words.shape
    # bit b of the stream of column n is bit (b % 32) of word b // 32
    bit_idx = torch.arange(K * bits, device=words.device)
    w = words[bit_idx // 32, :]                               # [K*bits, N]
    bitvals = (w >> (bit_idx % 32).unsqueeze(1)) & 1          # [K*bits, N]
    bitvals = bitvals.view(K, bits, N)
    weights = (1 << torch.arange(bits, device=words.device)).view(1, bits, 1)
    return (bitvals * weights).sum(dim=1)                     # [K, N]


def unpack_zeros(qzeros, bits, N):
    """qzeros [G, N*bits/32] -> [G, N], packed along the output dim, same bit-stream rule."""
    return unpack_rows(qzeros.t().contiguous(), bits, N).t()  # reuse: treat columns as streams


def dequantize_gptq(tensors, prefix, bits, group_size, v1):
    qweight = tensors[prefix + ".qweight"]
    scales = tensors[prefix + ".scales"].float()              # [G, N]
    G, N = scales.shape
    K = qweight.shape[0] * 32 // bits
    codes = unpack_rows(qweight, bits, K)                     # [K, N]
    zeros = unpack_zeros(tensors[prefix + ".qzeros"], bits, N)  # [G, N]
    if v1:
        zeros = zeros + 1  # v1 stores z - 1
    gidx_name = prefix + ".g_idx"
    if gidx_name in tensors:
        g_idx = tensors[gidx_name].long()
    else:
        g_idx = torch.arange(K, device=codes.device) // (group_size if group_size > 0 else K)
    w = scales[g_idx, :] * (codes - zeros[g_idx, :]).float()  # [K, N]
    return w.t().contiguous()                                 # [N, K]


AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]  # nibble i of a word holds output column 8c + AWQ_ORDER[i]


def unpack_awq(packed):
    """AWQ GEMM words [R, N/8] -> values [R, N]: nibble i of word c is column 8c + AWQ_ORDER[i]."""
    words = packed.to(torch.int64) & 0xFFFFFFFF
    R, W = words.shape
    out = torch.empty(R, W * 8, dtype=torch.int64, device=words.device)
    for i, col in enumerate(AWQ_ORDER):
        out[:, col::8] = (words >> (4 * i)) & 0xF
    return out


def dequantize_awq(tensors, prefix, group_size):
    codes = unpack_awq(tensors[prefix + ".qweight"])           # [K, N]
    zeros = unpack_awq(tensors[prefix + ".qzeros"])            # [K/group, N]
    scales = tensors[prefix + ".scales"].float()               # [K/group, N]
    K = codes.shape[0]
    g = torch.arange(K, device=codes.device) // group_size
    w = scales[g, :] * (codes - zeros[g, :]).float()           # [K, N]
    return w.t().contiguous()                                   # [N, K]


def load_dequantized(model_dir, device):
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg_json = json.load(f)
    qc = cfg_json.get("quantization_config")
    if qc is None and os.path.exists(os.path.join(model_dir, "quantize_config.json")):
        with open(os.path.join(model_dir, "quantize_config.json")) as f:
            qc = json.load(f)
    files = sorted(x for x in os.listdir(model_dir) if x.endswith(".safetensors"))
    tensors = {}
    for fn in files:
        with safe_open(os.path.join(model_dir, fn), framework="pt", device="cpu") as f:
            for k in f.keys():
                tensors[k] = f.get_tensor(k).to(device)
    state = {}
    if qc is not None and qc.get("quant_method") == "awq":
        gs = int(qc.get("group_size", 128))
        prefixes = sorted({k[: -len(".qweight")] for k in tensors if k.endswith(".qweight")})
        for p in prefixes:
            state[p + ".weight"] = dequantize_awq(tensors, p, gs)
        skip = {p + s for p in prefixes for s in (".qweight", ".qzeros", ".scales")}
        for k, v in tensors.items():
            if k not in skip and k not in state:
                state[k] = v.float()
    elif qc is not None:
        bits, gs = int(qc["bits"]), int(qc.get("group_size", 128))
        v1 = qc.get("checkpoint_format", "gptq") == "gptq"
        prefixes = sorted({k[: -len(".qweight")] for k in tensors if k.endswith(".qweight")})
        for p in prefixes:
            state[p + ".weight"] = dequantize_gptq(tensors, p, bits, gs, v1)
        skip = {p + s for p in prefixes for s in (".qweight", ".qzeros", ".scales", ".g_idx")}
        for k, v in tensors.items():
            if k not in skip and k not in state:
                state[k] = v.float()
    else:
        state = {k: v.float() for k, v in tensors.items()}
    cfg_json.pop("quantization_config", None)
    config = AutoConfig.for_model(**{k: v for k, v in cfg_json.items() if k != "model_type"}, model_type=cfg_json["model_type"])
    config.torch_dtype = torch.float32
    model = AutoModelForCausalLM.from_config(config, torch_dtype=torch.float32)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if not (m == "lm_head.weight" and getattr(config, "tie_word_embeddings", False))]
    if missing or unexpected:
        raise SystemExit(f"state dict mismatch: missing {missing[:5]}, unexpected {unexpected[:5]}")
    if getattr(config, "tie_word_embeddings", False):
        model.tie_weights()
    return model.to(device).eval(), cfg_json, qc


def eval_text(path, kind):
    with open(path, encoding="utf-8") as f:
        raw = f.read()
    if kind == "wikitext2":
        rows = raw.splitlines(keepends=True)
        return "\n\n".join("" if r.strip() == "" else r for r in rows)
    if kind == "ptb":
        return " ".join(r.strip() for r in raw.splitlines(keepends=True))
    return raw


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--text", required=True)
    ap.add_argument("--kind", default="raw", choices=["raw", "heldout", "tinystories", "wikitext2", "ptb"])
    ap.add_argument("--seqlen", type=int, default=0)
    ap.add_argument("--max-windows", type=int, default=0)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    model, cfg, qc = load_dequantized(a.model, a.device)
    tok = Tokenizer.from_file(os.path.join(a.model, "tokenizer.json"))
    ids = tok.encode(eval_text(a.text, a.kind), add_special_tokens=False).ids
    bos = cfg.get("bos_token_id")
    if bos is not None:
        ids = [bos] + ids
    T = a.seqlen or cfg.get("max_position_embeddings", 2048)
    windows = len(ids) // T
    if a.max_windows > 0:
        windows = min(windows, a.max_windows)
    data = torch.tensor(ids[: windows * T], device=a.device).view(windows, T)
    nll, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, windows, 8):
            x = data[i : i + 8]
            logits = model(x).logits.float()
            lp = torch.log_softmax(logits[:, :-1, :], dim=-1)
            tgt = x[:, 1:]
            nll += -lp.gather(-1, tgt.unsqueeze(-1)).double().sum().item()
            count += tgt.numel()
    print(json.dumps({"model": a.model, "text": a.text, "kind": a.kind, "quantization": qc and {k: qc.get(k) for k in ("quant_method", "bits", "group_size", "sym", "desc_act", "checkpoint_format", "version")},
                      "seqlen": T, "windows": windows, "tokens": len(ids), "predictions": count,
                      "ppl": math.exp(nll / count), "device": a.device, "torch": torch.__version__}))


if __name__ == "__main__":
    sys.exit(main())
