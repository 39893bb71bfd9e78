#!/usr/bin/env python3
"""Prints what a PNG holds, to tell a drawn picture from a blank one: `WIDTH HEIGHT INK COLOURS`, where INK is the
fraction of pixels that are not white and COLOURS the number of distinct colours. Standard library only (zlib), RGB(A)
8-bit PNGs as rsvg-convert writes them."""
import struct
import sys
import zlib

data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
pos, idat, width = 8, b"", 0
while pos < len(data):
    length, kind = struct.unpack(">I4s", data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + length]
    if kind == b"IHDR":
        width, height, depth, colour = struct.unpack(">IIBB", body[:10])
        assert depth == 8 and colour in (2, 6), f"unsupported PNG: depth {depth}, colour type {colour}"
        channels = 3 if colour == 2 else 4
    elif kind == b"IDAT":
        idat += body
    pos += 12 + length
raw = zlib.decompress(idat)
stride = width * channels
previous = bytearray(stride)
ink, colours = 0, set()
for row in range(height):
    start = row * (stride + 1)
    kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
    for i in range(stride):
        left = line[i - channels] if i >= channels else 0
        up, corner = previous[i], (previous[i - channels] if i >= channels else 0)
        if kind == 1: line[i] = (line[i] + left) & 255
        elif kind == 2: line[i] = (line[i] + up) & 255
        elif kind == 3: line[i] = (line[i] + (left + up) // 2) & 255
        elif kind == 4:
            p = left + up - corner
            pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
            line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 255
    for x in range(width):
        pixel = tuple(line[x * channels:x * channels + 3])
        alpha = line[x * channels + 3] if channels == 4 else 255
        if alpha > 0 and pixel != (255, 255, 255):
            ink += 1
            colours.add(pixel)
    previous = line
print(width, height, f"{ink / (width * height):.4f}", len(colours))
