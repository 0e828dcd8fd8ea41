import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture
def image_dir(tmp_path):
    return tmp_path / "image"


@pytest.fixture
def folder_image(image_dir):
    from image import open_image
    from prototypes.bootstrap import bootstrap
    img = open_image(image_dir, create=True)
    bootstrap(img)
    yield img
    img.close()


@pytest.fixture
def mem_image():
    from image import open_image
    from prototypes.bootstrap import bootstrap
    img = open_image("memory:")
    bootstrap(img)
    yield img
    img.close()


def batos_env(tmp_path=None, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATOS_")}
    env["PYTHONPATH"] = str(ROOT)
    if tmp_path is not None:
        env["BATOS_HISTORY"] = str(tmp_path / "history")
    env.update(extra)
    return env


def run_batos(*args, env=None, check=False, timeout=120):
    """Run the real CLI in a subprocess: ``python -m kernel.cli ...``."""
    proc = subprocess.run([sys.executable, "-m", "kernel", *map(str, args)],
                          capture_output=True, text=True, env=env or batos_env(),
                          cwd=ROOT, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"batos {args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def tiny_st_model(tmp_path_factory):
    """A real sentence-transformers model of 32 dimensions, random weights, built here."""
    import shutil
    from memory.embed import model_path
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, BertModel
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
