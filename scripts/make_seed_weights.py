#!/usr/bin/env python3
"""Writes examples/seed-init.safetensors: the seed tutorial's XOR initial weights (numpy seed 42).

The tutorial draws W1 = randn(2, 3) * 0.5 and W2 = randn(3, 1) * 0.5 as [in, out]; nn.Linear (and shardtrain)
store weights as [out, in], so they are saved transposed. Needs numpy only.
"""
import json
import pathlib
import struct

import numpy as np

np.random.seed(42)
w1 = np.random.randn(2, 3) * 0.5
w2 = np.random.randn(3, 1) * 0.5
tensors = {
    "0.weight": w1.T.astype("<f4"),
    "0.bias": np.zeros(3, dtype="<f4"),
    "2.weight": w2.T.astype("<f4"),
    "2.bias": np.zeros(1, dtype="<f4"),
}
header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
for name, array in tensors.items():
    data = np.ascontiguousarray(array).tobytes()
    header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
    blobs.append(data)
    offset += len(data)
text = json.dumps(header, separators=(",", ":")).encode()
text += b" " * (-len(text) % 8)
out = pathlib.Path(__file__).resolve().parent.parent / "examples" / "seed-init.safetensors"
out.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))
print(f"wrote {out}")
