"""Minimal safetensors reader/writer (numpy only, no third-party safetensors package).

File layout (the format the C++ engine reads too):

    [8 bytes]  N, little-endian uint64: length of the JSON header
    [N bytes]  UTF-8 JSON object, padded with spaces (0x20) to a multiple of 8:
                 {"__metadata__": {str: str, ...},
                  "<name>": {"dtype": "F32", "shape": [d0, d1, ...],
                             "data_offsets": [begin, end]}, ...}
    [rest]     raw little-endian tensor data; offsets are relative to the start of
               this buffer, tensors are contiguous row-major (C order), and together
               they cover the buffer exactly, with no gaps and no overlap.

Tensors are written in the order of the dict passed to write(), so files are
byte-for-byte reproducible. BF16 has no numpy dtype: wrap a uint16 array holding the
raw bfloat16 bits in BF16(...) to write it; read() returns such tensors as uint16
arrays (use read_header() to see the stored dtype, bf16_to_f32() to widen).
"""

import json
import os
import struct

import numpy as np

# safetensors dtype tag -> numpy little-endian dtype.
_DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),  # raw bfloat16 bits
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "U16": np.dtype("<u2"),
    "U32": np.dtype("<u4"),
    "U64": np.dtype("<u8"),
    "BOOL": np.dtype("?"),
}
# numpy kind+itemsize -> tag (BF16 is only reachable through the BF16 wrapper).
_TAG_OF = {
    ("f", 8): "F64", ("f", 4): "F32", ("f", 2): "F16",
    ("i", 8): "I64", ("i", 4): "I32", ("i", 2): "I16", ("i", 1): "I8",
    ("u", 8): "U64", ("u", 4): "U32", ("u", 2): "U16", ("u", 1): "U8",
    ("b", 1): "BOOL",
}

# A header larger than this is certainly a corrupt length field, not a real file.
_MAX_HEADER_BYTES = 100 * 1024 * 1024


class SafetensorsError(ValueError):
    """Raised for malformed files and unsupported inputs; the message names the file."""


class BF16:
    """Marks a uint16 array as raw bfloat16 bits for write()."""

    def __init__(self, bits):
        bits = np.asarray(bits)
        if bits.dtype != np.uint16:
            raise SafetensorsError(f"BF16 wants a uint16 array of raw bits, got {bits.dtype}")
        self.bits = bits


def f32_to_bf16(x):
    """float32 array -> BF16 wrapper (round to nearest even; NaN stays NaN)."""
    u = np.ascontiguousarray(x, dtype="<f4").view("<u4").astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    nan = np.isnan(np.asarray(x, dtype=np.float32))
    rounded = np.where(nan, (u >> 16) | 0x40, rounded)
    return BF16(rounded.astype(np.uint16))


def bf16_to_f32(bits):
    """uint16 array of bfloat16 bits -> float32 array (exact)."""
    return (np.asarray(bits, dtype="<u2").astype("<u4") << 16).view("<f4")


def _c_order(arr, dtype):
    # Not np.ascontiguousarray: it turns 0-d scalars into shape [1].
    arr = np.asarray(arr, dtype=dtype)
    return arr if arr.flags.c_contiguous else arr.copy(order="C")


def _as_le_array(name, value):
    """Returns (tag, contiguous little-endian array) for one tensor to be written."""
    if isinstance(value, BF16):
        return "BF16", _c_order(value.bits, "<u2")
    arr = np.asarray(value)
    tag = _TAG_OF.get((arr.dtype.kind, arr.dtype.itemsize))
    if tag is None:
        raise SafetensorsError(f"tensor '{name}': unsupported dtype {arr.dtype}")
    return tag, _c_order(arr, _DTYPES[tag])


def encode_header(entries, metadata):
    """JSON header bytes (space-padded to a multiple of 8) for ordered entries."""
    header = {}
    if metadata:
        header["__metadata__"] = dict(metadata)
    header.update(entries)
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return raw + b" " * ((-len(raw)) % 8)


def write(path, tensors, metadata=None):
    """Writes dict name -> numpy array (or BF16) to `path` atomically.

    metadata: dict str -> str, stored as "__metadata__". The file is written to a
    temporary name in the same folder, fsynced, then renamed over `path`, so a reader
    never sees a half-written file.
    """
    metadata = dict(metadata or {})
    for k, v in metadata.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise SafetensorsError(f"{path}: metadata must map str to str, got {k!r}: {type(v).__name__}")
    entries, arrays, offset = {}, [], 0
    for name, value in tensors.items():
        if not isinstance(name, str) or not name or name == "__metadata__":
            raise SafetensorsError(f"{path}: invalid tensor name {name!r}")
        tag, arr = _as_le_array(name, value)
        entries[name] = {"dtype": tag, "shape": [int(d) for d in arr.shape],
                         "data_offsets": [offset, offset + arr.nbytes]}
        arrays.append(arr)
        offset += arr.nbytes
    header = encode_header(entries, metadata)

    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, f".{os.path.basename(path)}.tmp.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(struct.pack("<Q", len(header)))
            f.write(header)
            for arr in arrays:
                if arr.nbytes:
                    f.write(memoryview(arr.reshape(-1)).cast("B"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    # Persist the rename itself.
    dfd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _reject_duplicates(pairs):
    obj = {}
    for k, v in pairs:
        if k in obj:
            raise SafetensorsError(f"duplicate key {k!r} in header")
        obj[k] = v
    return obj


def _parse_header(path, blob_len, header_bytes):
    """Validates a header; returns (metadata, entries sorted by data offset)."""
    try:
        header = json.loads(header_bytes.decode("utf-8"), object_pairs_hook=_reject_duplicates)
    except SafetensorsError as e:
        raise SafetensorsError(f"{path}: {e}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SafetensorsError(f"{path}: header is not valid JSON ({e})") from None
    if not isinstance(header, dict):
        raise SafetensorsError(f"{path}: header is not a JSON object")
    metadata = header.pop("__metadata__", {}) or {}
    if not isinstance(metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise SafetensorsError(f"{path}: __metadata__ must map str to str")
    entries = []
    for name, e in header.items():
        where = f"{path}: tensor '{name}'"
        if not isinstance(e, dict) or set(e) != {"dtype", "shape", "data_offsets"}:
            raise SafetensorsError(f"{where}: entry must have exactly dtype, shape, data_offsets")
        dtype, shape, offs = e["dtype"], e["shape"], e["data_offsets"]
        if dtype not in _DTYPES:
            raise SafetensorsError(f"{where}: unsupported dtype {dtype!r}")
        if not isinstance(shape, list) or not all(
                isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            raise SafetensorsError(f"{where}: bad shape {shape!r}")
        if (not isinstance(offs, list) or len(offs) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) for o in offs)
                or not 0 <= offs[0] <= offs[1] <= blob_len):
            raise SafetensorsError(f"{where}: bad data_offsets {offs!r} (data buffer is {blob_len} bytes)")
        numel = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if offs[1] - offs[0] != numel * _DTYPES[dtype].itemsize:
            raise SafetensorsError(
                f"{where}: data_offsets {offs} span {offs[1] - offs[0]} bytes, "
                f"shape {shape} of {dtype} needs {numel * _DTYPES[dtype].itemsize}")
        entries.append((name, dtype, shape, offs))
    # The tensors must tile the data buffer exactly (no gaps, no overlap).
    entries.sort(key=lambda t: (t[3][0], t[3][1]))
    pos = 0
    for name, _, _, offs in entries:
        if offs[0] != pos:
            kind = "overlaps the previous tensor" if offs[0] < pos else "leaves a gap before it"
            raise SafetensorsError(f"{path}: tensor '{name}' at byte {offs[0]} {kind} (expected {pos})")
        pos = offs[1]
    if pos != blob_len:
        raise SafetensorsError(f"{path}: tensors cover {pos} bytes but the data buffer has {blob_len}")
    return metadata, entries


def _read_prefix(path, f, file_size):
    if file_size < 8:
        raise SafetensorsError(f"{path}: file is {file_size} bytes, too short for a safetensors header")
    (n,) = struct.unpack("<Q", f.read(8))
    if n > min(_MAX_HEADER_BYTES, file_size - 8):
        raise SafetensorsError(f"{path}: header length {n} exceeds the file ({file_size} bytes)")
    header_bytes = f.read(n)
    if not header_bytes.startswith(b"{"):
        raise SafetensorsError(f"{path}: header does not start with '{{'")
    return _parse_header(path, file_size - 8 - n, header_bytes)


def read_header(path):
    """(metadata, {name: (dtype_tag, shape)}) without reading the tensor data."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        metadata, entries = _read_prefix(path, f, os.fstat(f.fileno()).st_size)
    return metadata, {name: (dtype, tuple(shape)) for name, dtype, shape, _ in entries}


def read(path):
    """Reads a safetensors file; returns (dict name -> numpy array, metadata dict).

    Tensors come back in file-data order, as writable arrays (BF16 as uint16 bits).
    Raises SafetensorsError naming the file for any inconsistency.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        file_size = os.fstat(f.fileno()).st_size
        metadata, entries = _read_prefix(path, f, file_size)
        blob = bytearray(file_size - f.tell())
        if f.readinto(blob) != len(blob):
            raise SafetensorsError(f"{path}: short read")
    tensors = {}
    for name, dtype, shape, (b, e) in entries:
        dt = _DTYPES[dtype]
        tensors[name] = np.frombuffer(blob, dtype=dt, count=(e - b) // dt.itemsize,
                                      offset=b).reshape(shape)
    return tensors, metadata
