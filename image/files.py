"""File helpers shared by snapshots and the model store: hash while copying."""
import hashlib
import json
import os
from pathlib import Path

BUFSIZE = 1 << 22


def sha256_file(path, bufsize=BUFSIZE) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(bufsize):
            h.update(chunk)
    return h.hexdigest()


def copy_hashed(src, dest, progress=None, bufsize=BUFSIZE) -> dict:
    """Copy ``src`` to ``dest`` (making folders); return ``{"sha256", "size"}`` of what was written."""
    Path(dest).parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    size = 0
    with open(src, "rb") as f, open(dest, "wb") as out:
        while chunk := f.read(bufsize):
            out.write(chunk)
            h.update(chunk)
            size += len(chunk)
            if progress:
                progress(len(chunk))
    return {"sha256": h.hexdigest(), "size": size}


def write_json_atomic(path, data):
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)
