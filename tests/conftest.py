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
