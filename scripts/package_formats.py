"""Readers of the package formats ``make_public_corpus.py`` takes its text from, standard library only:
a Debian package's data archive, the LZW-windowed ``bible.data`` of Chip Chapin's Bible Retrieval
System (King James Bible, ``bible-kjv-text``), and R's XDR serialization (``janeaustenr``'s
lazy-load data). Each decodes what those packages use, not its format in general.
"""

from __future__ import annotations

import gzip
import io
import lzma
import struct
import tarfile
from pathlib import Path


def deb_member(deb: Path, suffix: str) -> bytes:
    """The file of a Debian package's data archive whose path ends with ``suffix``."""
    raw = deb.read_bytes()
    if raw[:8] != b"!<arch>\n":
        raise SystemExit(f"{deb}: not a Debian package (ar archive)")
    pos = 8
    while pos + 60 <= len(raw):
        name = raw[pos:pos + 16].decode("ascii").strip().rstrip("/")
        size = int(raw[pos + 48:pos + 58].decode("ascii"))
        body = raw[pos + 60:pos + 60 + size]
        pos += 60 + size + (size & 1)
        if name.startswith("data.tar"):
            if name.endswith(".xz"):
                body = lzma.decompress(body)
            elif name.endswith(".gz"):
                body = gzip.decompress(body)
            elif name != "data.tar":
                raise SystemExit(f"{deb}: {name}: unsupported compression")
            with tarfile.open(fileobj=io.BytesIO(body)) as tar:
                for member in tar.getmembers():
                    if member.isfile() and member.name.endswith(suffix):
                        return tar.extractfile(member).read()
            raise SystemExit(f"{deb}: no file ending in {suffix}")
    raise SystemExit(f"{deb}: no data.tar member")


def _lzw_window(data: bytes, limit: int) -> bytes:
    """One window of ``compress -b16`` codes (block mode, 9 to 16 bits, no 3-byte header)."""
    buf = data + b"\0\0\0"
    total_bits = len(data) * 8
    table = [bytes([i]) for i in range(256)] + [b""]  # 256 is the CLEAR code
    n_bits, maxcode, free = 9, 511, 257
    pos = base = 0  # bit position; codes come in groups of n_bits bytes from where n_bits began
    old, out, size = None, [], 0
    while size < limit:
        if free > maxcode:
            group = n_bits * 8
            pos = base + -(-(pos - base) // group) * group
            base = pos
            n_bits += 1
            maxcode = 1 << 16 if n_bits == 16 else (1 << n_bits) - 1
        if pos + n_bits > total_bits:
            break
        i = pos >> 3
        code = ((buf[i] | buf[i + 1] << 8 | buf[i + 2] << 16) >> (pos & 7)) & ((1 << n_bits) - 1)
        pos += n_bits
        if old is None:
            out.append(table[code])
            size += 1
            old = code
            continue
        if code == 256:
            del table[257:]
            free = 256
            group = n_bits * 8
            pos = base + -(-(pos - base) // group) * group
            base = pos
            n_bits, maxcode = 9, 511
            continue
        if code < free:
            entry = table[code]
            new = table[old] + entry[:1]
        else:  # the code being defined by this very step
            new = entry = table[old] + table[old][:1]
        out.append(entry)
        size += len(entry)
        if free < 1 << 16:
            if free > 256:
                table.append(new)
            free += 1
        old = code
    return b"".join(out)[:limit]


def decode_brs(data: bytes) -> str:
    """The text of a BRS ``bible.data`` file: magic ``EC02``, then at byte 0x54 the window size,
    the number of windows and the offsets of the windows (big-endian 32-bit)."""
    if data[:4] != b"EC02":
        raise SystemExit("bible.data: not a BRS compressed data file (EC02)")
    window, count = struct.unpack(">II", data[0x54:0x5C])
    offsets = struct.unpack(f">{count + 1}I", data[0x5C:0x5C + 4 * (count + 1)])
    text = b"".join(_lzw_window(data[offsets[k]:offsets[k + 1]], window) for k in range(count))
    return text.decode("ascii")


def unserialize_r(data: bytes):
    """The few R object types the janeaustenr data uses: character, integer and logical vectors,
    lists (with names), symbols and pairlists (attributes). Enough for this package, not general."""
    if data[:2] != b"X\n":
        raise SystemExit("R data: not XDR serialization")
    pos = 2
    refs: list = []

    def i32() -> int:
        nonlocal pos
        (value,) = struct.unpack(">i", data[pos:pos + 4])
        pos += 4
        return value

    version = i32()
    i32(), i32()  # writer's R version, minimal R version
    if version == 3:
        length = i32()  # then the native encoding's name
        pos += length

    def item():
        nonlocal pos
        flags = i32()
        kind, has_attr, has_tag = flags & 0xFF, flags & 0x200, flags & 0x400
        if kind == 0xFE:  # NULL
            return None
        if kind == 0xFF:  # reference to an earlier symbol
            return refs[(flags >> 8 or i32()) - 1]
        if kind == 1:  # symbol
            symbol = ("symbol", item())
            refs.append(symbol)
            return symbol
        if kind == 9:  # one string (CHARSXP)
            n = i32()
            if n == -1:
                return None
            value = data[pos:pos + n].decode("utf-8")
            pos += n
            return value
        if kind == 2:  # pairlist: attributes, tag, value, rest
            if has_attr:
                item()
            tag = item() if has_tag else None
            head = (tag, item())
            return [head] + (item() or [])
        if kind in (16, 19):  # character vector, list
            value = [item() for _ in range(i32())]
        elif kind in (10, 13):  # logical, integer
            n = i32()
            value = list(struct.unpack(f">{n}i", data[pos:pos + 4 * n]))
            pos += 4 * n
        else:
            raise SystemExit(f"R data: unsupported object type {kind}")
        if has_attr:
            attributes = {tag[1]: val for tag, val in item()}
            if kind == 19 and "names" in attributes:
                return dict(zip(attributes["names"], value))
        return value

    return item()
