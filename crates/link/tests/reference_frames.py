#!/usr/bin/env python3
"""An independent encoder written from SPEC.md alone (struct, zlib, no Rust): prints one
`NAME HEX` line per sample message. tests/golden.rs compares its output with the Rust encoder
and the golden bytes."""
import struct
import zlib

VERSION = 1


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def f32s(values):
    return b"".join(struct.pack("<f", v) for v in values)


def cobs(data):
    out = bytearray()
    block = bytearray()
    for b in data:
        if b == 0:
            out.append(len(block) + 1)
            out += block
            block = bytearray()
        else:
            block.append(b)
            if len(block) == 254:
                out.append(255)
                out += block
                block = bytearray()
    out.append(len(block) + 1)
    out += block
    return bytes(out)


def frame(tag, payload):
    body = bytes([VERSION]) + varint(tag) + payload
    body += struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF)
    return cobs(body) + b"\x00"


DEFAULT_LAYOUT = [0, 1, 2, 3, 4, 5, 6, 7]
SAMPLES = [
    ("Hello", 0, bytes([1]) + varint(0x12345678) + bytes(varint(a)[0] for a in DEFAULT_LAYOUT)
     + f32s([-0.02, -0.02, -0.02, -0.1, -0.1, -0.1, 0.0, 0.0])
     + f32s([0.02, 0.02, 0.02, 0.1, 0.1, 0.1, 1.0, 1.0])
     + f32s([0.01, 0.01, 0.01, 0.05, 0.05, 0.05, 0.5, 1.0]) + varint(100)),
    ("Action", 1, varint(1) + varint(7) + varint(2) + varint(1_000_000) + varint(1_012_345)
     + f32s([0.01, -0.02, 0.0, 0.05, 0.0, -0.1, 1.0, 0.0])),
    ("Heartbeat", 2, varint(3) + varint(1_020_000)),
    ("Stop", 3, varint(4) + varint(0)),
    ("HelloAck", 4, bytes([1]) + varint(0x12345678) + bytes([1])),
    ("Ack", 5, varint(0) + varint(1) + varint(0)),
    ("Status", 6, varint(1) + varint(1) + varint(0) + varint(0) + varint(2_000_000)
     + f32s([0.01, -0.02, 0.0, 0.05, 0.0, -0.1, 1.0])),
    ("Fault", 7, varint(0) + varint(1)),
]

for name, tag, payload in SAMPLES:
    print(name, frame(tag, payload).hex())
