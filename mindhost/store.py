"""The model store: content-addressed model folders beside the image.

Weights are too big for the image (hundreds of GB), so each model folder
(Hugging Face layout: config.json, *.safetensors, tokenizer files) is copied
into ``MODELS/<id>/`` where ``id`` is derived from the SHA-256 of its
manifest, and the image records it (plain data under ``root['models']``):
path, the size and SHA-256 of every file, parameter count, architecture and
dtype or quantization. Opening a model checks that its files still match:
size and mtime for every file, and a fresh SHA-256 of any that changed.
"""
import datetime
import hashlib
import json
import os
import shutil
from collections import Counter
from pathlib import Path

from image.errors import ImageError
from image.files import copy_hashed, sha256_file, write_json_atomic

MANIFEST = "batos-manifest.json"
MODELS_KEY = "models"
_DTYPE_BITS = {"F64": 64, "F32": 32, "F16": 16, "BF16": 16, "I64": 64, "I32": 32, "I16": 16,
               "I8": 8, "U8": 8, "BOOL": 8, "F8_E4M3": 8, "F8_E5M2": 8, "U32": 32}


class ModelStoreError(ImageError):
    """A model folder is malformed, missing, or no longer matches its manifest."""


def default_store(loc) -> Path:
    env = os.environ.get("BATOS_MODELS")
    if env:
        return Path(env)
    if not loc.is_folder:
        raise ModelStoreError(
            f"a {loc.kind} image has no folder for models; set $BATOS_MODELS to a folder on "
            "each machine that runs a mind (the same models, e.g. a shared mount), then run "
            "the command again")
    return loc.path / "models"


def describe(folder) -> dict:
    """Check a Hugging Face model folder and read what the store records about it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelStoreError(f"{folder} is not a folder; give the path of a Hugging Face model "
                              "folder (config.json + *.safetensors)")
    cfg_path = folder / "config.json"
    try:
        config = json.loads(cfg_path.read_text())
    except FileNotFoundError:
        raise ModelStoreError(f"{folder} has no config.json: not a Hugging Face model folder") from None
    except (OSError, ValueError) as e:
        raise ModelStoreError(f"{cfg_path} is not valid JSON ({e})") from e
    from .tensors import NoWeights, TensorFileError, read_header, weight_files
    try:
        headers = [read_header(w) for w in weight_files(folder)]
    except NoWeights:
        raise ModelStoreError(f"{folder} has no *.safetensors weights (convert .bin/.gguf "
                              "first)") from None
    except TensorFileError as e:
        raise ModelStoreError(str(e)) from None
    params, dtypes = 0, Counter()
    for header in headers:
        for name, t in header.items():
            count = 1
            for dim in t["shape"]:
                count *= dim
            params += count
            dtypes[t["dtype"]] += count
    quant = config.get("quantization") or config.get("quantization_config")
    return {
        "architecture": (config.get("architectures") or [config.get("model_type", "unknown")])[0],
        "model_type": config.get("model_type"),
        "params": params,                       # stored tensors (quantized: packed words)
        "dtype": dtypes.most_common(1)[0][0] if dtypes else None,
        "quantization": _quant_facts(quant, mlx="quantization" in config) if quant else None,
    }


def _quant_facts(quant, mlx):
    facts = {k: quant[k] for k in ("quant_method", "bits", "group_size") if k in quant}
    if mlx and "quant_method" not in facts:     # mlx-lm writes {bits, group_size, mode}
        facts["quant_method"] = f"mlx-{quant.get('mode', 'affine')}"
    return facts


def import_folder(src, store, *, name=None, source=None, progress=None, extra=None) -> dict:
    """Copy ``src`` into the store (hashing as it copies); return its record.

    Importing the same content twice gives the same id and keeps the first
    record. ``extra`` is plain data recorded with it (a runtime's master, its
    engine, the GGUF it came from).
    """
    src, store = Path(src), Path(store)
    facts = describe(src)
    files = sorted(p for p in src.rglob("*") if p.is_file() and p.name != MANIFEST
                   and not any(part.startswith(".") for part in p.relative_to(src).parts))
    staging = store / f".importing-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    manifest_files = {}
    try:
        for f in files:
            rel = f.relative_to(src).as_posix()
            manifest_files[rel] = copy_hashed(f, staging / rel, progress)
        digest = hashlib.sha256(json.dumps(manifest_files, sort_keys=True).encode()).hexdigest()
        model_id = digest[:16]
        final = store / model_id
        record = {"id": model_id, "name": name or src.name, "path": str(final),
                  "source": source or str(src.resolve()), "sha256": digest,
                  "size": sum(f["size"] for f in manifest_files.values()),
                  "imported": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                  "files": manifest_files, **facts, **(extra or {})}
        if final.exists():
            shutil.rmtree(staging)         # same content is already there
            return json.loads((final / MANIFEST).read_text())
        write_json_atomic(staging / MANIFEST, record)
        os.replace(staging, final)
    except BaseException:
        if staging.exists():
            shutil.rmtree(staging)
        raise
    _stamp_mtimes(final, record)
    return record


def find_in_store(store, **match):
    """The manifest of a model already in the store whose fields equal ``match``, or None."""
    for manifest in sorted(Path(store).glob(f"*/{MANIFEST}")):
        try:
            record = json.loads(manifest.read_text())
        except (OSError, ValueError):
            continue
        if all(record.get(k) == v for k, v in match.items()) and not check(record):
            return record
    return None


def _alive(pid) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep(store, *, recorded=(), owned_by=None) -> list:
    """Remove what interrupted work left in the store; return the paths removed.

    Staging folders (``.importing-PID``, ``.quantize-...-PID``, ``.convert-...-PID``)
    whose process is gone go. With ``owned_by``, complete models whose manifest
    ``night`` field starts with ``owned_by`` and whose id is not in ``recorded``
    go too: a night made them and nothing in the image points at them.
    """
    store, removed = Path(store), []
    if not store.is_dir():
        return removed
    for path in sorted(store.iterdir()):
        if path.name.startswith(".") and path.is_dir():
            pid = path.name.rsplit("-", 1)[-1]
            if pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(str(path))
        elif owned_by is not None and (path / MANIFEST).is_file():
            try:
                record = json.loads((path / MANIFEST).read_text())
            except (OSError, ValueError):
                continue
            if str(record.get("night", "")).startswith(owned_by) and record["id"] not in recorded:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(str(path))
    return removed


def update_manifest(record, **fields):
    """Add plain-data fields (measured stats, a quality report) to a stored model's manifest."""
    record = dict(record, **fields)
    write_json_atomic(Path(record["path"]) / MANIFEST, record)
    return record


def _stamp_mtimes(folder, record):
    """Remember each file's mtime so that opening can skip re-hashing unchanged files."""
    for rel, meta in record["files"].items():
        meta["mtime_ns"] = (folder / rel).stat().st_mtime_ns
    write_json_atomic(folder / MANIFEST, record)


def check(record, *, full=False) -> list:
    """Files that no longer match the manifest: ``[(file, what is wrong)]``.

    ``full`` re-hashes every file; otherwise only files whose size or mtime
    changed are re-hashed.
    """
    folder = Path(record["path"])
    problems = []
    for rel, meta in sorted(record["files"].items()):
        p = folder / rel
        try:
            st = p.stat()
        except FileNotFoundError:
            problems.append((rel, "missing"))
            continue
        if st.st_size != meta["size"]:
            problems.append((rel, f"size {st.st_size}, expected {meta['size']}"))
            continue
        if full or st.st_mtime_ns != meta.get("mtime_ns"):
            if sha256_file(p) != meta["sha256"]:
                problems.append((rel, "SHA-256 differs from the manifest"))
    return problems


def open_checked(record, *, full=False) -> Path:
    """The model folder, after checking it; ModelStoreError names every bad file."""
    problems = check(record, full=full)
    if problems:
        listed = "; ".join(f"{rel}: {why}" for rel, why in problems)
        raise ModelStoreError(
            f"model {record['name']} ({record['id']}) no longer matches its manifest: {listed}. "
            f"Re-import it from {record['source']} with `batos model import`.")
    return Path(record["path"])


# -- the image's record of the store ---------------------------------------------------

def record_in_image(root, record):
    """Store the record as plain data (no library objects) under root['models']."""
    from BTrees.OOBTree import OOBTree
    models = root.get(MODELS_KEY)
    if models is None:
        models = root[MODELS_KEY] = OOBTree()
    models[record["id"]] = json.loads(json.dumps(record))   # plain dicts, lists, str, int


def find(root, key) -> dict:
    """A recorded model by id, id prefix or name."""
    models = root.get(MODELS_KEY) or {}
    hits = [r for mid, r in models.items() if mid.startswith(key) or r.get("name") == key]
    if len(hits) == 1:
        return hits[0]
    if not hits:
        known = ", ".join(f"{r['name']} ({mid})" for mid, r in models.items()) or "none"
        raise ModelStoreError(f"no model {key!r} in the image (known: {known}); "
                              "import one with `batos model import PATH`")
    raise ModelStoreError(f"{key!r} matches several models: "
                          + ", ".join(f"{r['name']} ({r['id']})" for r in hits))
