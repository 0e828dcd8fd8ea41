import inspect
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


# Lanes. unit: in-process logic on small data (seconds). integration: real
# subprocesses (the CLI, a kernel, consoles) and real models (the tiny Llama, the
# embedder, the bundled SmolLM2). slow: long end-to-end runs, only with -m slow.
# A test is integration if it needs one of these fixtures or makes one of these calls.
INTEGRATION_FIXTURES = {"tiny_llama", "tiny_llama_kv", "smol_master", "model_store",
                        "tiny_st_model", "embedder"}
INTEGRATION_CALLS = ("run_batos(", "KernelProcess(", "pexpect.", "subprocess.", "get_embedder(",
                     "model_path(", "lint_imports(", "Popen(")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("slow"):
            continue
        fn = getattr(item, "function", None)
        try:
            src = inspect.getsource(fn) if fn is not None else ""
        except (OSError, TypeError):
            src = ""
        heavy = (set(item.fixturenames) & INTEGRATION_FIXTURES
                 or any(call in src for call in INTEGRATION_CALLS))
        item.add_marker("integration" if heavy else "unit")


@pytest.fixture
def image_dir(tmp_path):
    return tmp_path / "image"


@pytest.fixture
def folder_image(image_dir):
    from image import open_image
    from kernel.schema import bootstrap
    img = open_image(image_dir, create=True)
    bootstrap(img)
    yield img
    img.close()

STORAGES = ("folder", "zeo", "postgresql")


@pytest.fixture(scope="session")
def postgres():
    """One real PostgreSQL server for the session (tests/storages.py); each test its own
    database. Its folder is outside pytest's, which only root may enter."""
    import shutil
    import tempfile

    import storages
    folder = Path(tempfile.mkdtemp(prefix="batos-pg-"))
    try:
        server = storages.PostgresServer(folder).start()
    except (FileNotFoundError, subprocess.CalledProcessError) as e:
        why = getattr(e, "stderr", "") or str(e)
        if os.environ.get(storages.REQUIRE_VAR) == "1":
            pytest.fail(f"PostgreSQL is required here ({storages.REQUIRE_VAR}=1): {why}")
        pytest.skip(f"no PostgreSQL server to test on: {why}")
    yield server
    server.stop()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(params=STORAGES)
def image_spec(request, tmp_path):
    """A location for a new image on each kind of storage: a folder (FileStorage), a
    folder served over ZEO, a PostgreSQL database (RelStorage)."""
    if request.param == "folder":
        yield str(tmp_path / "image")
    elif request.param == "zeo":
        from image.location import Location
        from image.serve import serve
        folder = tmp_path / "served"
        folder.mkdir()              # empty: the server's FileStorage makes Data.fs
        sock = tmp_path / "zeo.sock"
        _, stop = serve(Location("folder", path=folder), str(sock))
        yield f"zeo://{sock}"
        stop()
    else:
        yield request.getfixturevalue("postgres").url()


@pytest.fixture
def docs(tmp_path):
    """The memory tests' small documents, in a folder."""
    import memory_docs
    return memory_docs.write(tmp_path / "docs")


@pytest.fixture
def kb(folder_image, docs):
    """An image with those documents ingested as corpus 'kb', mounted for hermes."""
    from memory import mount
    from memory.ingest import ingest
    ingest(folder_image, "kb", [docs])
    mount.mount(folder_image, "kb", "hermes")
    return folder_image



@pytest.fixture
def mem_image():
    from image import open_image
    from kernel.schema import bootstrap
    img = open_image("memory:")
    bootstrap(img)
    yield img
    img.close()


def batos_env(tmp_path=None, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATOS_")}
    env["PYTHONPATH"] = str(ROOT)
    if tmp_path is not None:
        env["BATOS_HISTORY"] = str(tmp_path / "history")
        env["BATOS_LOG_FILE"] = str(tmp_path / "batos.log")
    env.update(extra)
    return env


def run_batos(*args, env=None, check=False, timeout=120):
    """Run the real CLI in a subprocess: ``python -m batos.cli ...``."""
    proc = subprocess.run([sys.executable, "-m", "batos", *map(str, args)],
                          capture_output=True, text=True, env=env or batos_env(),
                          cwd=ROOT, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"batos {args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def tiny_st_model(tmp_path_factory):
    """A real sentence-transformers model of 32 dimensions, random weights, built here."""
    import shutil

    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, BertModel

    from memory.embed import model_path
    base = model_path()
    out = tmp_path_factory.mktemp("tiny-st")
    bert = out / "bert"
    BertModel(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2,
                         num_attention_heads=2, intermediate_size=64)).save_pretrained(bert)
    for name in ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(base / name, bert / name)
    word = models.Transformer(str(bert), max_seq_length=128)
    st = SentenceTransformer(modules=[word, models.Pooling(32, "mean")], device="cpu")
    st.save(str(out / "model"))
    return out / "model"


@pytest.fixture(scope="session")
def model_store(tmp_path_factory):
    """One model store for the session, so the bundled GGUF is converted once."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def smol_master(model_store):
    """The bundled SmolLM2-135M-Instruct GGUF, dequantized to an FP16 folder in the store."""
    from mindhost.minds import bundled_gguf, import_model
    return import_model(bundled_gguf(), model_store)


def _random_llama(out, smol_master, **shape):
    """A 2-layer Llama with random weights (float16), with SmolLM2's tokenizer."""
    import shutil

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=49152, num_hidden_layers=2, tie_word_embeddings=True,
                         bos_token_id=1, eos_token_id=2, rope_theta=10000.0, **shape)
    LlamaForCausalLM(config).to(torch.float16).save_pretrained(out)
    src = Path(smol_master["path"])
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (src / name).exists():
            shutil.copy(src / name, out / name)
    from mindhost.engines.convert import fix_rope_theta
    fix_rope_theta(out)
    return out


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory, smol_master):
    """A 2-layer Llama with random weights (a few MB), built here, with SmolLM2's tokenizer."""
    return _random_llama(tmp_path_factory.mktemp("tiny-llama") / "tiny", smol_master,
                         hidden_size=64, intermediate_size=128, num_attention_heads=4,
                         num_key_value_heads=2, max_position_embeddings=512)


@pytest.fixture(scope="session")
def tiny_llama_kv(tmp_path_factory, smol_master):
    """The same with a head dimension of 64, which a quantized KV cache needs (mlx quantizes
    in groups of 32 or more; ``tiny_llama``'s heads are 16 wide)."""
    return _random_llama(tmp_path_factory.mktemp("tiny-llama-kv") / "tiny", smol_master,
                         hidden_size=128, intermediate_size=256, num_attention_heads=2,
                         num_key_value_heads=1, max_position_embeddings=2048)


@pytest.fixture(params=("zeo", "postgresql"), ids=("filestorage-served-over-zeo", "postgresql"))
def shared_image(request, tmp_path):
    """An image the kernel and workers share: a folder the kernel serves over ZEO (the
    workers attach through it), or a PostgreSQL database every process opens."""
    from image import open_image
    from kernel.schema import bootstrap
    if request.param == "zeo":
        spec = str(tmp_path / "image")
    else:
        spec = request.getfixturevalue("postgres").url()
    img = open_image(spec, create=True)
    bootstrap(img)
    img.close()
    return spec


@pytest.fixture
def storage_clock(monkeypatch):
    """Move the clock the storage stamps transactions with (and only that: the rules read
    no other). ``storage_clock(30)`` puts it 30 s ahead from now on."""
    real, skew = time.time, [0.0]
    monkeypatch.setattr(time, "time", lambda: real() + skew[0])

    def advance(seconds):
        skew[0] += seconds
    return advance
