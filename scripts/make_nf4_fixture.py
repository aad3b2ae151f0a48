#!/usr/bin/env python3
"""NF4 fixture from bitsandbytes on the CPU (QLoRA's 4-bit NormalFloat with double quantization).

    make_nf4_fixture.py OUT_DIR

Quantizes a float32 [136, 130] weight (17,680 values: 276 whole blocks of 64 and a last block of
16; one block all zeros; one block holding exact NF4 levels and the midpoints between them) with
bitsandbytes.functional.quantize_4bit(quant_type="nf4", blocksize=64), double-quantizes the absmax
as compress_statistics=True does (see below) and writes, little-endian:

    input.f32            the weight
    packed.u8            the 4-bit codes, two per byte, the first value in the high nibble
    absmax.f32           the per-block absmax before double quantization (277 values)
    absmax_codes.u8      the absmax minus their mean, quantized to 8 bits in blocks of 256
    absmax_scales.f32    the absmax-of-absmax per 256-block (2 values)
    dynamic_map.f32      the 256-value signed dynamic map those 8-bit codes index
    dequantized.f32      bitsandbytes.functional.dequantize_4bit of the result
    meta.json            shape, blocksizes, the absmax mean offset, versions, the CPU kernel's differences

It also re-derives the codes with numpy from the stated rules (scale each block by 1/absmax, clamp
to [-1, 1], take the level whose midpoint interval holds the value, ties to the lower level; the
same for the 8-bit absmax codes with the dynamic map) and checks they equal bitsandbytes' codes.
"""
import json
import os
import sys

import numpy as np
import torch

import bitsandbytes
import bitsandbytes.functional as F


def rederive(values, levels, blocksize):
    """Codes of float32 `values` in blocks: value · (1/absmax) (the last, partial block: value / absmax),
    clamped to [-1, 1], then the number of level midpoints strictly below it."""
    values = values.astype(np.float32)
    codes, scales = [], []
    midpoints = ((levels[:-1] + levels[1:]) / np.float32(2)).astype(np.float32)
    for start in range(0, len(values), blocksize):
        block = values[start:start + blocksize]
        absmax = np.float32(max(np.abs(block).max(), np.float32(1e-38)))
        scaled = block * (np.float32(1) / absmax) if len(block) == blocksize else block / absmax
        scaled = np.clip(scaled, -1, 1).astype(np.float32)
        codes.append(np.searchsorted(midpoints, scaled, side="left").astype(np.uint8))
        scales.append(np.abs(block).max())
    return np.concatenate(codes), np.array(scales, dtype=np.float32)


def main(out):
    os.makedirs(out, exist_ok=True)
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(136, 130, generator=generator) * 0.02
    flat = weight.view(-1)
    flat[64 * 5:64 * 6] = 0.0
    levels = F.get_4bit_type("nf4", device="cpu")
    midpoints = (levels[:-1] + levels[1:]) / 2
    special = torch.cat([levels, midpoints, -midpoints, torch.tensor([0.5, -0.25, 1e-9, -1e-9])])
    flat[64 * 9:64 * 9 + special.numel()] = special * 0.05
    flat[64 * 9 + special.numel() - 1] = 0.05  # the block's absmax, so the levels land exactly
    packed, plain = F.quantize_4bit(weight, blocksize=64, compress_statistics=False, quant_type="nf4")
    # Double quantization as quantize_4bit(compress_statistics=True) does it — the absmax minus
    # their mean, in 8-bit blocks of 256 with the dynamic map — through bitsandbytes' portable
    # kernel (the rule its CUDA kernel follows: the nearest code). Its CPU kernel finds the
    # nearest code with an approximate search; where that differs it is counted in meta.json.
    offset = plain.absmax.mean()
    dynamic_map = F.create_dynamic_map().float()
    portable = torch._C.DispatchKeySet(torch._C.DispatchKey.CompositeExplicitAutograd)
    absmax_codes, absmax_scales = torch.ops.bitsandbytes.quantize_blockwise.default.redispatch(
        portable, plain.absmax - offset, dynamic_map, 256)
    cpu_codes, _ = torch.ops.bitsandbytes.quantize_blockwise.default(plain.absmax - offset, dynamic_map.clone(), 256)
    state2 = F.QuantState(absmax=absmax_scales, code=dynamic_map, blocksize=256, dtype=torch.float32)
    state = F.QuantState(absmax=absmax_codes, shape=weight.shape, dtype=torch.float32, blocksize=64, code=plain.code,
                         quant_type="nf4", offset=offset, state2=state2)
    dequantized = F.dequantize_4bit(packed, state)

    codes4 = rederive(flat.numpy(), levels.numpy(), 64)[0]
    packed_again = (codes4[0::2] << 4) | codes4[1::2]
    assert np.array_equal(packed_again, packed.view(-1).numpy()), "the stated NF4 rules disagree with bitsandbytes"
    centred = plain.absmax.numpy() - np.float32(offset.item())
    codes8, scales8 = rederive(centred, dynamic_map.numpy(), 256)
    assert np.array_equal(codes8, absmax_codes.numpy()), "the stated 8-bit rules disagree with bitsandbytes"
    assert np.array_equal(scales8, absmax_scales.numpy())

    write = lambda name, array: np.ascontiguousarray(array).tofile(os.path.join(out, name))
    write("input.f32", weight.numpy().astype("<f4"))
    write("packed.u8", packed.view(-1).numpy().astype(np.uint8))
    write("absmax.f32", plain.absmax.numpy().astype("<f4"))
    write("absmax_codes.u8", absmax_codes.numpy().astype(np.uint8))
    write("absmax_scales.f32", absmax_scales.numpy().astype("<f4"))
    write("dynamic_map.f32", dynamic_map.numpy().astype("<f4"))
    write("dequantized.f32", dequantized.numpy().astype("<f4"))
    meta = {
        "shape": list(weight.shape),
        "blocksize": 64,
        "absmax_blocksize": state2.blocksize,
        "offset": float(offset.item()),
        "offset_bits": int(np.float32(offset.item()).view(np.uint32)),
        "cpu_kernel_absmax_code_differences": int((cpu_codes != absmax_codes).sum().item()),
        "nf4_levels": [float(v) for v in levels.tolist()],
        "bitsandbytes": bitsandbytes.__version__,
        "torch": torch.__version__,
    }
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    print(f"wrote {out}: {weight.numel()} values, {plain.absmax.numel()} blocks, {meta['cpu_kernel_absmax_code_differences']} "
          f"absmax codes differ in the CPU kernel, largest error "
          f"{(dequantized - weight).abs().max().item():.3g}")


if __name__ == "__main__":
    main(sys.argv[1])
