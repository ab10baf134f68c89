#!/usr/bin/env python3
"""Checks PNG files with the standard library only: signature, every chunk's CRC, IHDR, and the
IDAT stream inflating to exactly height x (1 + width x bytes per pixel). Prints 'W H' per file;
exits 1 naming the first file that is not a valid PNG. Usage: check_png.py FILE..."""
import struct, sys, zlib

CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}

def check(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("no PNG signature")
    pos, idat, ihdr, end = 8, [], None, False
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        (crc,) = struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])
        if zlib.crc32(kind + body) & 0xFFFFFFFF != crc:
            raise ValueError(f"bad CRC in chunk {kind!r}")
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            end = True
            break
        pos += 12 + n
    if ihdr is None or not end or not idat:
        raise ValueError("missing IHDR, IDAT or IEND")
    w, h, depth, ctype = ihdr[:4]
    bpp = CHANNELS[ctype] * depth // 8
    raw = zlib.decompress(b"".join(idat))
    if len(raw) != h * (1 + w * bpp):
        raise ValueError(f"image data is {len(raw)} bytes, expected {h * (1 + w * bpp)}")
    return w, h

for p in sys.argv[1:]:
    try:
        w, h = check(p)
    except Exception as e:  # noqa: BLE001 - any failure means not a valid PNG
        print(f"{p}: not a valid PNG ({e})")
        sys.exit(1)
    print(p, w, h)
