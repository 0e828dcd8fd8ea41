"""Two evaluation corpora of real text nobody here wrote, available offline.

- ``numpy``: the reference of NumPy's public functions, one page per
  function: its signature and docstring, as NumPy ships them (API-reference
  style: terse, with Parameters / Returns / Notes / Examples sections).
  Many pages share a subject (sum, nansum, cumsum...), so they are each
  other's distractors.
- ``vim``: the Vim user manual (Bram Moolenaar and the Vim authors) from
  Debian's ``vim-runtime`` package, one page per numbered section (usr_41.3
  and so on): tutorial prose with commands in it.

``write(name, folder)`` writes a corpus's pages as ``<page>.txt`` files and
returns the page names. A page name is the file's stem, which is what the
query sets in ``bench/data/`` name as answers.
"""
import hashlib
import inspect
import re
from pathlib import Path

VIM_DOC = Path("/usr/share/vim/vim90/doc")
MIN_PAGE = 300          # characters; shorter sections (a few links) are not pages


class CorpusMissing(RuntimeError):
    pass


def numpy_pages():
    """{page: text} for NumPy's public functions (top level, linalg, fft), aliases once."""
    import numpy as np
    pages, seen = {}, set()
    for prefix, mod in (("numpy", np), ("numpy.linalg", np.linalg), ("numpy.fft", np.fft)):
        for name in sorted(dir(mod)):
            if name.startswith("_"):
                continue
            obj = getattr(mod, name)
            if inspect.ismodule(obj) or not callable(obj) or inspect.isclass(obj):
                continue
            doc = inspect.getdoc(obj)
            if not doc or len(doc) < MIN_PAGE:
                continue
            key = hashlib.sha1(doc.encode()).hexdigest()
            if key in seen:             # an alias (round/around, abs/absolute): one page
                continue
            seen.add(key)
            try:
                sig = str(inspect.signature(obj))
            except (TypeError, ValueError):
                sig = "(...)"
            page = f"{prefix}.{name}"
            pages[page] = f"{page}{sig}\n\n{doc}\n"
    return pages


_SECTION = re.compile(r"^={20,}\n\*(\d+\.\d+)\*[^\n]*\n", re.M)


def vim_pages(doc=VIM_DOC):
    """{page: text} for the sections of the Vim user manual (usr_NN.M)."""
    files = sorted(Path(doc).glob("usr_[0-9][0-9].txt"))
    if not files:
        raise CorpusMissing(f"no Vim user manual under {doc}; install Debian's vim-runtime "
                            "(apt-get install vim-runtime) or skip it with --corpus numpy")
    pages = {}
    for f in files:
        text = f.read_text(encoding="utf-8", errors="replace")
        chapter = f.stem                         # usr_41
        cuts = [(m.start(), m.group(1)) for m in _SECTION.finditer(text)]
        bounds = [(0, f"{chapter}.0")] + [(s, f"usr_{num}") for s, num in cuts]
        for (s, page), (e, _) in zip(bounds, bounds[1:] + [(len(text), None)]):
            body = text[s:e].strip("=\n ")
            if len(body) >= MIN_PAGE:
                pages[page] = body + "\n"
    return pages


CORPORA = {"numpy": numpy_pages, "vim": vim_pages}


def write(name, folder) -> list:
    """Write corpus ``name``'s pages into ``folder``; return the page names.

    The pages are read in a fresh interpreter: importing scipy rewrites some
    NumPy docstrings (numpy.sinc gains an "Array API" table), so what the
    calling process imported must not change the text.
    """
    import subprocess
    import sys
    if name == "vim" and not list(VIM_DOC.glob("usr_[0-9][0-9].txt")):
        vim_pages(VIM_DOC)              # raises CorpusMissing, with what to install
    folder = Path(folder)
    subprocess.run([sys.executable, __file__, "--one", name, str(folder)], check=True,
                   cwd=Path(__file__).parent)
    return sorted(f.stem for f in folder.glob("*.txt"))


def _write_here(name, folder):
    folder.mkdir(parents=True, exist_ok=True)
    for page, text in CORPORA[name]().items():
        (folder / f"{page}.txt").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    import sys
    if sys.argv[1:2] == ["--one"]:
        _write_here(sys.argv[2], Path(sys.argv[3]))
        sys.exit(0)
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/corpora")
    for name in CORPORA:
        pages = write(name, out / name)
        size = sum((out / name / f"{p}.txt").stat().st_size for p in pages)
        print(f"{name}: {len(pages)} pages, {size:,} bytes in {out / name}")
