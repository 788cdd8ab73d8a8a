"""Worst-case decode cost: adversarial wire layouts vs a normal packed body of the same size.

Each layout is a ~1 MiB PredictRequest body (and 2 MiB, to show the cost is linear) that a
client may legally or illegally send.  For each: ms per MB of body (best of 3) and peak
traced memory (tracemalloc, which sees numpy's buffers) per body byte, minus the bytes of the
arrays handed to the model.  Baseline in the same run: a packed float32 body.

Target (issue 10): every layout decodes or is refused in O(n) time, with peak extra memory
<= 4x the body plus the output arrays.
"""

from __future__ import annotations

import sys
import time
import tracemalloc
from typing import Dict, List, Tuple

import numpy as np

from tfserverless import protocol
from tfserverless.errors import BadRequest
from tfserverless.protocol import wire

# the codec's own writers: a varint (negatives as 10 bytes) and a length-delimited field
varint = wire.varint_bytes
ld = wire.tagged


def request(array: bytes, name: bytes = b"x") -> bytes:
    return ld(2, ld(1, name) + ld(2, array))


def head(dtype: int, count: int) -> bytes:
    return b"\x08" + varint(dtype) + ld(2, ld(1, varint(count)))


UNKNOWN = b"\x48\x01"  # field 9, varint 1: two bytes the decoder must skip


def layouts(size: int) -> Dict[str, bytes]:
    n4 = size // 4
    n5 = size // 5
    n2 = size // 2
    out: Dict[str, bytes] = {
        "packed float32 (baseline)": request(head(1, n4) + ld(3, np.zeros(n4, "<f4").tobytes())),
        "packed int32, 1-byte varints": request(head(3, size) + ld(5, b"\x01" * size)),
        "unpacked int32 + 2-byte unknown field each": request(
            head(3, n4) + b"\x28\x01\x48\x01" * n4),
        "unpacked float32 + unknown field each": request(
            head(1, size // 7) + (b"\x1d\x00\x00\x80\x3f" + UNKNOWN) * (size // 7)),
        "unpacked float32 run": request(head(1, n5) + b"\x1d\x00\x00\x80\x3f" * n5),
        "unpacked int32 run": request(head(3, n2) + b"\x28\x01" * n2),
        "int_val / bool_val singles alternating": request(
            head(3, size // 4) + b"\x28\x01\x40\x01" * (size // 4)),
        "unknown fields only, in the array": request(head(1, 0) + UNKNOWN * n2),
        "unknown fields only, top level": UNKNOWN * n2,
        "empty string_val x n, dtype float": request(head(1, 0) + b"\x32\x00" * n2),
        "unpacked dims x n": request(b"\x08\x01" + ld(2, b"\x08\x01" * n2)),
        "packed dims, 1 MB": request(b"\x08\x01" + ld(2, ld(1, b"\x01" * size))),
        "array split into n pieces": request(b"".join([b"\x12\x02\x28\x01"] * (size // 4))),
        "n map entries, one name": ld(2, ld(1, b"x") + ld(2, b"")) * (size // 7),
        "n output_filter entries": b"\x1a\x01y" * (size // 3),
    }
    return out


# small bodies whose answer (not their cost per byte) is the point
SMALL = {
    "shape [0, 2^40, 2^40]": request(b"\x08\x01" + ld(2, ld(1, varint(0) + varint(1 << 40) * 2))),
    "shape [2^40, 2^40, 0]": request(b"\x08\x01" + ld(2, ld(1, varint(1 << 40) * 2 + varint(0)))),
}


def decode(body: bytes) -> List[np.ndarray]:
    try:
        req = protocol.decode_request(body)
        return [a.to_numpy(n) for n, a in req.inputs.items()]
    except BadRequest:
        return []


def measure(body: bytes) -> Tuple[float, float]:
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        decode(body)
        best = min(best, time.perf_counter() - t0)
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    arrays = decode(body)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    out_bytes = sum(a.nbytes for a in arrays)
    return best, max(0, peak - out_bytes) / len(body)


def main(argv: List[str]) -> int:
    sizes = [1 << 20, 2 << 20]
    print(f"{'layout':46s} {'ms/MB @1MB':>11s} {'ms/MB @2MB':>11s} {'peak B/B':>9s}")
    base_ms = 0.0
    worst: Tuple[float, str] = (0.0, "")
    worst_mem: Tuple[float, str] = (0.0, "")
    names: List[str] = list(layouts(1024))
    for name in names:
        row: List[float] = []
        mem = 0.0
        for size in sizes:
            body = layouts(size)[name]
            sec, bpb = measure(body)
            row.append(sec * 1e3 / (len(body) / 1e6))
            mem = max(mem, bpb)
        if not base_ms:
            base_ms = row[0]
        worst = max(worst, (max(row), name))
        worst_mem = max(worst_mem, (mem, name))
        print(f"{name:46s} {row[0]:11.2f} {row[1]:11.2f} {mem:9.2f}")
    for name, body in SMALL.items():
        try:
            req = protocol.decode_request(body)
            [a.to_numpy(n) for n, a in req.inputs.items()]
            print(f"{name:46s} decoded")
        except BadRequest as e:
            print(f"{name:46s} refused: 400 {e.message[:60]}")
    print(f"\nworst case: {worst[0]:.1f} ms/MB ({worst[1]}), {worst[0] / base_ms:.0f}x the packed "
          f"float32 body ({base_ms:.2f} ms/MB); peak extra memory {worst_mem[0]:.2f} bytes per "
          f"body byte ({worst_mem[1]}); target <= 4")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))



