"""Safetensors shards read and written one tensor at a time.

The night's merge, fuse and requantize stream a model through these: a
reader that opens one tensor of a (sharded) folder at a time, and a writer
that lays out every shard's header first (names, dtypes, shapes are known
before any data) and then writes each tensor at its offset as it comes. Peak
memory is a few tensors, never the model. The files are plain safetensors
(``safetensors.safe_open`` and transformers read them).
"""
import json
import math
import os
import struct
from pathlib import Path

INDEX = "model.safetensors.index.json"
SHARD_BYTES = 2 * 2**30            # like mergekit's default out-shard size (5 GB is HF's)
_ALIGN = 8
DTYPES = {"float16": "F16", "bfloat16": "BF16", "float32": "F32", "float64": "F64",
          "int8": "I8", "uint8": "U8", "int16": "I16", "int32": "I32", "int64": "I64",
          "uint32": "U32", "bool": "BOOL"}
SIZES = {"F16": 2, "BF16": 2, "F32": 4, "F64": 8, "I8": 1, "U8": 1, "I16": 2, "I32": 4,
         "I64": 8, "U32": 4, "BOOL": 1}


def _torch_dtypes():
    import torch
    return {code: getattr(torch, name) for name, code in DTYPES.items()}


class _Lazy(dict):
    def __missing__(self, key):
        self.update(_torch_dtypes())
        return dict.__getitem__(self, key)


TORCH = _Lazy()


class TensorFileError(ValueError):
    """A model folder whose safetensors cannot be read."""


class NoWeights(TensorFileError):
    """A folder with no safetensors weights at all."""


def read_header(path, with_start=False):
    """A safetensors file's header: ``{name: {dtype, shape, data_offsets}}`` (no data read);
    with ``with_start``, also the file offset where the data begins."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n > 100 * 2**20:
                raise ValueError(f"header of {n} bytes")
            header = json.loads(f.read(n))
            size = os.fstat(f.fileno()).st_size
        header.pop("__metadata__", None)
        for name, meta in header.items():
            lo, hi = meta["data_offsets"]
            if not 0 <= lo <= hi <= size - 8 - n or meta["dtype"] not in SIZES or \
                    SIZES[meta["dtype"]] * math.prod(meta["shape"]) != hi - lo:
                raise ValueError(f"tensor {name} does not fit the file")
    except (OSError, ValueError, KeyError, TypeError, struct.error) as e:
        raise TensorFileError(f"{path} is not a readable safetensors file ({e}); "
                              "re-import the model") from None
    return (header, 8 + n) if with_start else header


def weight_files(folder) -> list:
    """The safetensors files that hold the model in ``folder``, as transformers picks them:
    the shards ``model.safetensors.index.json`` names (each must exist), else
    ``model.safetensors``, else the other ``*.safetensors`` but Mistral's
    ``consolidated*.safetensors`` (its own format, shipped beside the Hugging Face shards:
    the same weights again under other names)."""
    folder = Path(folder)
    index = folder / INDEX
    if index.exists():
        try:
            files = sorted({folder / f for f in json.loads(index.read_text())["weight_map"].values()})
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise TensorFileError(f"{index} is not a readable shard index ({e}); re-import "
                                  "the model") from None
        missing = [f.name for f in files if not f.exists()]
        if missing:
            raise TensorFileError(f"{index} names {missing[0]}, which {folder} lacks; "
                                  "re-import the model")
        return files
    if (folder / "model.safetensors").exists():
        return [folder / "model.safetensors"]
    files = sorted(f for f in folder.glob("*.safetensors")
                   if not f.name.startswith("consolidated"))
    if not files:
        if any(folder.glob("consolidated*.safetensors")):
            raise TensorFileError(
                f"{folder} holds only consolidated*.safetensors, Mistral's own format; use "
                "the repository's Hugging Face shards (model-*.safetensors with "
                "config.json)")
        raise NoWeights(f"{folder} holds no .safetensors file")
    return files


class Shards:
    """The tensors of a model folder, by name, opened one at a time."""

    def __init__(self, folder):
        self._open = {}
        self.folder = Path(folder)
        self.where, self.info, self.start = {}, {}, {}
        for f in weight_files(self.folder):
            header, self.start[f] = read_header(f, with_start=True)
            for name, meta in header.items():
                if name in self.where:      # never let one file silently override another
                    raise TensorFileError(f"tensor {name} is in both {self.where[name].name} "
                                          f"and {f.name} in {self.folder}; keep one copy")
                self.where[name], self.info[name] = f, meta

    def names(self):
        return list(self.info)

    def __contains__(self, name):
        return name in self.info

    def shape(self, name):
        return tuple(self.info[name]["shape"])

    def nbytes(self, name):
        lo, hi = self.info[name]["data_offsets"]
        return hi - lo

    def get(self, name, rows=None):
        """One tensor (torch), read from disk into its own memory, or ``rows=(start, stop)``
        of it (along its first axis). Plain reads, not a mapping: the file's pages stay in
        the page cache, out of this process's memory."""
        import torch
        f, meta = self.where[name], self.info[name]
        lo, hi = meta["data_offsets"]
        shape = list(meta["shape"])
        if rows is not None:
            row = (hi - lo) // shape[0] if shape and shape[0] else 0
            start, stop = rows[0], min(rows[1], shape[0])
            lo, hi, shape[0] = lo + start * row, lo + stop * row, stop - start
        fh = self._open.get(f)
        if fh is None:
            fh = self._open[f] = open(f, "rb", buffering=0)
        buf = bytearray(hi - lo)
        view = memoryview(buf)
        fh.seek(self.start[f] + lo)
        while view:
            n = fh.readinto(view)
            if not n:
                raise TensorFileError(f"{f} ends inside tensor {name}; re-import the model")
            view = view[n:]
        dtype = TORCH[meta["dtype"]]
        if not buf:
            return torch.empty(shape, dtype=dtype)
        return torch.frombuffer(buf, dtype=dtype).reshape(shape)

    def close(self):
        for fh in self._open.values():
            fh.close()
        self._open.clear()

    def __del__(self):
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def dtype_code(dtype) -> str:
    return DTYPES[str(dtype).removeprefix("torch.")]


class ShardWriter:
    """Writes a planned set of tensors into shards; ``write`` in any order, then ``close``.

    ``plan`` is ``[(name, dtype, shape)]`` in file order; shards break at
    ``shard_bytes``. A half-written folder is the caller's to remove (the
    night writes into a staging folder)."""

    def __init__(self, folder, plan, shard_bytes=SHARD_BYTES, metadata=None):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        groups, size = [[]], 0
        for name, dtype, shape in plan:
            code = dtype_code(dtype) if not isinstance(dtype, str) or dtype not in SIZES \
                else dtype
            n = SIZES[code] * math.prod(shape)
            if groups[-1] and size + n > shard_bytes:
                groups.append([])
                size = 0
            groups[-1].append((name, code, list(shape), n))
            size += n
        total = len(groups)
        self.slots, self.files, self.pending = {}, [], set()
        for i, group in enumerate(groups, 1):
            fname = "model.safetensors" if total == 1 else \
                f"model-{i:05d}-of-{total:05d}.safetensors"
            header, offset = {"__metadata__": {"format": "pt", **(metadata or {})}}, 0
            for name, code, shape, n in group:
                header[name] = {"dtype": code, "shape": shape, "data_offsets": [offset, offset + n]}
                offset += n
            raw = json.dumps(header, separators=(",", ":")).encode()
            raw += b" " * (-len(raw) % _ALIGN)
            path = self.folder / fname
            f = open(path, "wb")
            f.write(struct.pack("<Q", len(raw)) + raw)
            start = f.tell()
            f.truncate(start + offset)
            self.files.append((fname, f))
            for name, code, shape, n in group:
                lo = header[name]["data_offsets"][0]
                self.slots[name] = (f, start + lo, code, shape, n)
                self.pending.add(name)

    def write(self, name, tensor, row=None):
        """The whole tensor, or (``row``) rows of it starting at that row."""
        f, at, code, shape, n = self.slots[name]
        want = shape if row is None else [min(len(tensor), shape[0] - row), *shape[1:]]
        if dtype_code(tensor.dtype) != code or list(tensor.shape) != want:
            raise TensorFileError(f"{name}: planned {code}{want}, got "
                                  f"{dtype_code(tensor.dtype)}{list(tensor.shape)}")
        import torch
        data = tensor.detach().contiguous().cpu().reshape(-1).view(torch.uint8).numpy()
        f.seek(at + (row or 0) * (n // shape[0] if shape and shape[0] else 0))
        f.write(memoryview(data))
        if row is None or row + len(tensor) >= shape[0]:
            self.pending.discard(name)

    def close(self):
        """Flush, fsync and write the index (several shards); every planned tensor must be in."""
        if self.pending:
            raise TensorFileError(f"{len(self.pending)} planned tensor(s) never written, e.g. "
                                  f"{sorted(self.pending)[0]}")
        for _, f in self.files:
            f.flush()
            os.fsync(f.fileno())
            f.close()
        if len(self.files) > 1:
            weight_map = {name: slot[0].name.rsplit("/", 1)[-1] for name, slot in
                          self.slots.items()}
            total = sum(slot[4] for slot in self.slots.values())
            (self.folder / INDEX).write_text(json.dumps(
                {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=1))

    def abort(self):
        """Close and delete every shard (and index) this writer made: a stopped or failed
        write leaves no weights that look whole but are not."""
        for fname, f in self.files:
            f.close()
            (self.folder / fname).unlink(missing_ok=True)
        (self.folder / INDEX).unlink(missing_ok=True)
        self.files = []


def copy_side_files(src, dest, skip=("config.json",)):
    """Everything of a model folder but its weights (tokenizer, template, generation config)."""
    import shutil
    for f in Path(src).iterdir():
        if f.is_file() and f.suffix != ".safetensors" and f.name not in skip \
                and f.name != INDEX and not f.name.startswith("batos-"):
            shutil.copy2(f, Path(dest) / f.name)
