#!/usr/bin/env python3
"""8-bit AdamW fixture from bitsandbytes on the CPU (`bitsandbytes.optim.AdamW8bit`).

    make_adamw8bit_fixture.py OUT_DIR

Three float32 parameters, each updated for 8 steps by AdamW8bit (lr 2e-3, betas 0.9/0.999,
eps 1e-8, weight decay 0.01 on "big" and "exact", none on "small"), with gradients drawn per step:

    big    [20, 220]  4,400 values: 17 whole blocks of 256 and one of 48 (8-bit moments);
                      step 3's gradient holds an all-zero block, step 5's one outlier of 40
    exact  [4096]     exactly min_8bit_size, 16 whole blocks (8-bit moments)
    small  [4095]     one below min_8bit_size: bitsandbytes keeps float32 moments

The moments are re-quantized after each step in blocks of 256 — the first moment with the signed
dynamic map, the second with the unsigned one — by bitsandbytes' portable kernel (the nearest
code; the rule its CUDA kernel follows). The script re-derives every step's codes with numpy from
the stated rules (see rederive_step) and checks they equal bitsandbytes'. Its CPU kernel finds the code with an approximate search;
the script also runs the optimizer through that kernel and records how far it ends from the
portable run in meta.json.

Written, little-endian, per parameter NAME:

    NAME.initial.f32                 the starting values
    NAME.grad.STEP.f32               the gradient of step STEP (1-based)
    NAME.param.STEP.f32              the values after step STEP
    NAME.m_codes.STEP.u8 / NAME.v_codes.STEP.u8     the 8-bit moments after step STEP
    NAME.m_absmax.STEP.f32 / NAME.v_absmax.STEP.f32 their per-256 scales
    NAME.m.STEP.f32 / NAME.v.STEP.f32               (small only) the float32 moments
    signed_map.f32 / unsigned_map.f32                the two 256-value dynamic maps
    meta.json                                        shapes, hyper-parameters, versions
"""
import json
import os
import sys

import numpy as np
import torch

import bitsandbytes
import bitsandbytes.backends.cpu.ops as cpu_ops
import bitsandbytes.functional as F
from bitsandbytes.optim import AdamW8bit

STEPS = 8
LR, BETAS, EPS, WEIGHT_DECAY = 2e-3, (0.9, 0.999), 1e-8, 0.01
SHAPES = {"big": (20, 220), "exact": (4096,), "small": (4095,)}

PORTABLE = torch._C.DispatchKeySet(torch._C.DispatchKey.CompositeExplicitAutograd)
native_quantize = cpu_ops._quant_blockwise_fp32_direct


def portable_quantize(A_fp32, code, absmax_out, out_uint8, blocksize):
    out, absmax = torch.ops.bitsandbytes.quantize_blockwise.default.redispatch(PORTABLE, A_fp32, code, blocksize)
    out_uint8.copy_(out)
    absmax_out.copy_(absmax)


def gradients():
    generator = torch.Generator().manual_seed(1)
    result = []
    for step in range(1, STEPS + 1):
        grads = {name: torch.randn(*shape, generator=generator) * 0.1 for name, shape in SHAPES.items()}
        if step == 3:
            grads["big"].view(-1)[256 * 4:256 * 5] = 0.0
        if step == 5:
            grads["big"].view(-1)[1000] = 40.0
        result.append(grads)
    return result


def run(initial, grads, quantize):
    cpu_ops._quant_blockwise_fp32_direct = quantize
    params = {name: torch.nn.Parameter(value.clone()) for name, value in initial.items()}
    optimizer = AdamW8bit([
        {"params": [params["big"], params["exact"]], "weight_decay": WEIGHT_DECAY},
        {"params": [params["small"]], "weight_decay": 0.0},
    ], lr=LR, betas=BETAS, eps=EPS)
    history = []
    for step_grads in grads:
        for name, p in params.items():
            p.grad = step_grads[name].clone()
        optimizer.step()
        snapshot = {}
        for name, p in params.items():
            state = optimizer.state[p]
            entry = {"param": p.detach().clone()}
            if state["state1"].dtype == torch.uint8:
                entry.update(m_codes=state["state1"].clone(), v_codes=state["state2"].clone(),
                             m_absmax=state["absmax1"].clone(), v_absmax=state["absmax2"].clone())
            else:
                entry.update(m=state["state1"].clone(), v=state["state2"].clone())
            snapshot[name] = entry
        history.append(snapshot)
    cpu_ops._quant_blockwise_fp32_direct = native_quantize
    return history


def rederive_step(name, step, history, grads, initial, signed, unsigned):
    """Step `step` of an 8-bit parameter recomputed with numpy from the stated rules, starting
    from bitsandbytes' state after the step before: dequantize (map[code] · absmax), update in
    float32 (m·β1 + g·(1−β1); v·β2 + (1−β2)·g·g; p·(1 − lr·wd) + (−lr/c1)·(m / (√v/c2 + eps))),
    re-quantize each block of 256 (x · (1/absmax), or x / absmax in a last partial block, clamped
    to [-1, 1], the number of map midpoints strictly below). Returns (params, m codes, v codes)."""
    def dequantize(codes, absmax, table):
        return (table[codes].reshape(-1) * np.repeat(absmax, 256)[:codes.size]).astype(np.float32)

    def quantize(x, table):
        midpoints = ((table[:-1] + table[1:]) / np.float32(2)).astype(np.float32)
        codes = []
        for start in range(0, x.size, 256):
            block = x[start:start + 256]
            absmax = np.float32(max(np.abs(block).max(), np.float32(1e-38)))
            scaled = block * (np.float32(1) / absmax) if block.size == 256 else block / absmax
            codes.append(np.searchsorted(midpoints, np.clip(scaled, -1, 1).astype(np.float32), side="left"))
        return np.concatenate(codes).astype(np.uint8)

    g = grads[step - 1][name].numpy().reshape(-1)
    if step == 1:
        p = initial[name].numpy().reshape(-1)
        m, v = np.zeros(g.size, np.float32), np.zeros(g.size, np.float32)
    else:
        before = history[step - 2][name]
        p = before["param"].numpy().reshape(-1)
        m = dequantize(before["m_codes"].numpy().reshape(-1), before["m_absmax"].numpy(), signed)
        v = dequantize(before["v_codes"].numpy().reshape(-1), before["v_absmax"].numpy(), unsigned)
    m = m * np.float32(BETAS[0]) + g * np.float32(1 - BETAS[0])
    v = v * np.float32(BETAS[1]) + np.float32(1 - BETAS[1]) * g * g
    c1, c2 = 1 - BETAS[0] ** step, np.sqrt(1 - BETAS[1] ** step)
    p = p * np.float32(1 - LR * WEIGHT_DECAY) + np.float32(-LR / c1) * (m / (np.sqrt(v) / np.float32(c2) + np.float32(EPS)))
    return p, quantize(m, signed), quantize(v, unsigned)


def main(out):
    os.makedirs(out, exist_ok=True)
    generator = torch.Generator().manual_seed(0)
    initial = {name: torch.randn(*shape, generator=generator) * 0.02 for name, shape in SHAPES.items()}
    grads = gradients()
    portable = run(initial, grads, portable_quantize)
    native = run(initial, grads, native_quantize)

    signed, unsigned = F.create_dynamic_map(signed=True).numpy(), F.create_dynamic_map(signed=False).numpy()
    for name in ("big", "exact"):
        for step in range(1, STEPS + 1):
            params, m_codes, v_codes = rederive_step(name, step, portable, grads, initial, signed, unsigned)
            after = portable[step - 1][name]
            assert np.array_equal(m_codes, after["m_codes"].numpy().reshape(-1)), f"{name} step {step}: first-moment codes"
            assert np.array_equal(v_codes, after["v_codes"].numpy().reshape(-1)), f"{name} step {step}: second-moment codes"
            assert np.abs(params - after["param"].numpy().reshape(-1)).max() < 1e-8, f"{name} step {step}: values"

    write = lambda name, array: np.ascontiguousarray(array).tofile(os.path.join(out, name))
    write("signed_map.f32", F.create_dynamic_map(signed=True).numpy().astype("<f4"))
    write("unsigned_map.f32", F.create_dynamic_map(signed=False).numpy().astype("<f4"))
    for name, value in initial.items():
        write(f"{name}.initial.f32", value.numpy().astype("<f4"))
        for step in range(1, STEPS + 1):
            write(f"{name}.grad.{step}.f32", grads[step - 1][name].numpy().astype("<f4"))
            for key, tensor in portable[step - 1][name].items():
                suffix = "u8" if tensor.dtype == torch.uint8 else "f32"
                write(f"{name}.{key}.{step}.{suffix}", tensor.numpy().astype(np.uint8 if suffix == "u8" else "<f4"))
    last_portable, last_native = portable[-1], native[-1]
    meta = {
        "steps": STEPS, "lr": LR, "betas": list(BETAS), "eps": EPS,
        "weight_decay": {"big": WEIGHT_DECAY, "exact": WEIGHT_DECAY, "small": 0.0},
        "shapes": {name: list(shape) for name, shape in SHAPES.items()},
        "state_bits": {name: (8 if "m_codes" in last_portable[name] else 32) for name in SHAPES},
        "cpu_kernel_final_param_max_difference": max(
            (last_portable[n]["param"] - last_native[n]["param"]).abs().max().item() for n in SHAPES),
        "cpu_kernel_final_code_differences": sum(
            int((last_portable[n][k] != last_native[n][k]).sum().item())
            for n in SHAPES for k in ("m_codes", "v_codes") if k in last_portable[n]),
        "bitsandbytes": bitsandbytes.__version__,
        "torch": torch.__version__,
    }
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    print(f"wrote {out}: state bits {meta['state_bits']}; the CPU kernel's run ends "
          f"{meta['cpu_kernel_final_param_max_difference']:.3g} from the portable one "
          f"({meta['cpu_kernel_final_code_differences']} codes differ)")


if __name__ == "__main__":
    main(sys.argv[1])
