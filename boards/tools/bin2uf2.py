#!/usr/bin/env python3
"""Convert a raw flash image (.bin) to UF2 (https://github.com/microsoft/uf2), the format the USB
mass-storage boot loaders of the Raspberry Pi RP2040/RP2350 and of many nRF52840 boards take.

  python3 bin2uf2.py --base 0x10000000 --family 0xe48bff59 board.bin board.uf2

Each 512-byte block carries 256 bytes of the image at base + 256 * block number, the block
count and the family ID (flag 0x2000), so a boot loader rejects an image for another chip.
Standard library only: ships in each generated project that builds a UF2 (tools/bin2uf2.py).
"""

from __future__ import annotations

import argparse
import struct
import sys
from pathlib import Path

MAGIC_START0 = 0x0A324655
MAGIC_START1 = 0x9E5D5157
MAGIC_END = 0x0AB16F30
FLAG_FAMILY_ID_PRESENT = 0x00002000
PAYLOAD_BYTES = 256
DATA_FIELD_BYTES = 476  # the block's data area; the payload is zero-padded to it


def bin_to_uf2(image: bytes, base: int, family: int) -> bytes:
    """The UF2 file of ``image`` to be written at flash address ``base``."""
    if base % PAYLOAD_BYTES:
        raise ValueError(f"base 0x{base:08x} is not a multiple of {PAYLOAD_BYTES}")
    chunks = [image[i : i + PAYLOAD_BYTES] for i in range(0, len(image), PAYLOAD_BYTES)] or [b""]
    blocks = []
    for number, chunk in enumerate(chunks):
        header = struct.pack(
            "<8I",
            MAGIC_START0,
            MAGIC_START1,
            FLAG_FAMILY_ID_PRESENT,
            base + number * PAYLOAD_BYTES,
            PAYLOAD_BYTES,
            number,
            len(chunks),
            family,
        )
        data = chunk.ljust(DATA_FIELD_BYTES, b"\0")
        blocks.append(header + data + struct.pack("<I", MAGIC_END))
    return b"".join(blocks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, type=lambda s: int(s, 0), help="flash address of the image")
    parser.add_argument("--family", required=True, type=lambda s: int(s, 0), help="UF2 family ID")
    parser.add_argument("input", type=Path)
    parser.add_argument("output", type=Path)
    args = parser.parse_args(argv)
    try:
        uf2 = bin_to_uf2(args.input.read_bytes(), args.base, args.family)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.output.write_bytes(uf2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
