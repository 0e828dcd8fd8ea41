"""The package layering (import-linter contract in pyproject.toml), import-time cycles,
and images written before a class moved."""
import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("batos", "kernel", "night", "mindhost", "memory", "prototypes", "guardians", "image")


def lint_imports(cwd):
    exe = Path(sys.executable).with_name("lint-imports")
    return subprocess.run([str(exe), "--no-cache"], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"})


def test_the_layer_contract_holds():
    proc = lint_imports(ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 kept, 0 broken" in proc.stdout


@pytest.mark.parametrize("where, back", [
    ("image/files.py", "import batos.cli"),                   # at import time
    ("memory/chunking.py", "def f():\n    from night import dream\n"),   # lazily
])
def test_a_back_import_breaks_the_contract(tmp_path, where, back):
    for name in PACKAGES:
        shutil.copytree(ROOT / name, tmp_path / name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    with open(tmp_path / where, "a") as f:
        f.write("\n" + back + "\n")
    proc = lint_imports(tmp_path)
    assert proc.returncode != 0 and "BROKEN" in proc.stdout, proc.stdout + proc.stderr


def _import_time_edges(package):
    """module -> modules of the same package it imports at import time (not in functions)."""
    edges = {}
    for path in (ROOT / package).rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        is_pkg = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_pkg else parts)
        here = name if is_pkg else name.rpartition(".")[0]
        out = edges.setdefault(name, set())
        tree = ast.parse(path.read_text())
        todo = list(tree.body)
        while todo:                 # module level, including under if/try/with
            node = todo.pop()
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(node, ast.Import):
                out |= {a.name for a in node.names if a.name.split(".")[0] == package}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here.split(".")[:len(here.split(".")) - node.level + 1]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                if mod.split(".")[0] == package:
                    subs = {f"{mod}.{a.name}" for a in node.names}
                    mods = {s for s in subs if (ROOT / (s.replace(".", "/") + ".py")).exists()
                            or (ROOT / s.replace(".", "/") / "__init__.py").exists()}
                    # `from . import sub` loads only sub; other names need mod itself
                    out |= mods if mods == subs else mods | {mod}
            else:
                todo.extend(ast.iter_child_nodes(node))
    return {m: {t for t in ts if t in edges or (ROOT / (t.replace('.', '/') + '.py')).exists()
                or (ROOT / t.replace('.', '/') / '__init__.py').exists()} - {m}
            for m, ts in edges.items()}


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_time_cycle_inside_a_package(package):
    edges = _import_time_edges(package)
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for t in edges.get(m, ()):
            if state.get(t) == "open":
                cycle = stack[stack.index(t):] + [t]
                pytest.fail("import-time cycle: " + " -> ".join(cycle))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = "done"
    for m in sorted(edges):
        if m not in state:
            visit(m)


def test_a_moved_class_loads_through_the_rename_map(tmp_path, monkeypatch):
    """A record whose class moved (module renamed) loads as the class at its new home."""
    import types

    import persistent

    from image import classes, open_image
    old = types.ModuleType("batos_old_home")

    class Thing(persistent.Persistent):
        pass
    Thing.__module__ = "batos_old_home"
    old.Thing = Thing
    monkeypatch.setitem(sys.modules, "batos_old_home", old)
    with open_image(tmp_path / "img", create=True) as img, img.transaction() as conn:
        conn.root()["thing"] = Thing()
        conn.root()["thing"].colour = "blue"
    new = types.ModuleType("batos_new_home")
    new.Thing = Thing
    monkeypatch.delitem(sys.modules, "batos_old_home")
    monkeypatch.setitem(sys.modules, "batos_new_home", new)
    with open_image(tmp_path / "img", read_only=True) as img, img.view() as root:
        from ZODB.broken import Broken
        assert isinstance(root["thing"], Broken)      # no mapping: Broken, as ZODB does
    monkeypatch.setitem(classes.MOVED, ("batos_old_home", "Thing"), ("batos_new_home", "Thing"))
    with open_image(tmp_path / "img", read_only=True) as img, img.view() as root:
        assert type(root["thing"]) is Thing and root["thing"].colour == "blue"


OLD = "94b6192"        # main before the re-layout
WRITE_OLD_IMAGE = r'''
import sys, time
from image import open_image
from prototypes.bootstrap import bootstrap
from memory.ledger import Exchange, record
from kernel.missions import new_mission
img = open_image(sys.argv[1], create=True)
bootstrap(img)
with img.transaction() as conn:
    root = conn.root()
    ex = Exchange("hermes", "What is 2 + 2?", "4", b"\0" * 16, time.time(), signals={"rating": "good"})
    key = record(root, ex)
    root["hermes"].curation = {"since": key, "threshold": 0.4}
    new_mission(root, "hermes", "hello")
img.close()
'''


def test_an_image_written_before_the_re_layout_opens_and_migrates(tmp_path):
    """An image written by the code before the re-layout: every record loads (no Broken
    class) and bootstrap moves the curation cursor out of the settings."""
    old_tree = tmp_path / "old"
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", OLD],
                             capture_output=True, timeout=60)
    if archive.returncode != 0:
        pytest.skip(f"commit {OLD} is not in this clone's history (shallow clone?)")
    old_tree.mkdir()
    subprocess.run(["tar", "-x", "-C", str(old_tree)], input=archive.stdout, check=True)
    folder = tmp_path / "image"
    proc = subprocess.run([sys.executable, "-c", WRITE_OLD_IMAGE, str(folder)], cwd=old_tree,
                          env={"PYTHONPATH": str(old_tree), "PATH": "/usr/bin:/bin",
                               "HOME": str(tmp_path)}, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr

    from ZODB.broken import Broken

    from image import open_image
    from kernel.schema import WELL_KNOWN, bootstrap
    from night.schema import cursor
    with open_image(folder) as img:
        with img.view() as root:
            key = next(iter(root["hermes"].ledger.keys()))
        before = img.last_transaction()
        bootstrap(img)
        assert img.last_transaction() != before       # the migration wrote something
        seen = 0
        with img.view() as root:
            assert all(k in root for k in WELL_KNOWN)
            h = root["hermes"]
            assert cursor(h) == key and dict(h.curation) == {"threshold": 0.4}
            conn = h._p_jar
            from ZODB.utils import p64
            oid, misses = 0, 0
            while misses < 50:
                try:
                    obj = conn.get(p64(oid))
                    obj._p_activate()
                except KeyError:
                    misses += 1
                else:
                    misses = 0
                    seen += 1
                    assert not isinstance(obj, Broken), (oid, type(obj))
                oid += 1
        assert seen > 30


def test_every_batos_verb_a_message_names_exists():
    """Errors and hints tell users what to run next; each `batos VERB` they name is real."""
    import re

    from batos.cli import build_parser
    parser = build_parser()
    verbs = set(next(a for a in parser._actions if a.dest == "command").choices) \
        if any(a.dest == "command" for a in parser._actions) else set()
    if not verbs:
        sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
        verbs = set(sub.choices)
    named = set()
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            named |= {(m.group(1), m.group(2), path.name) for m in
                      re.finditer(r"`batos ([a-z][a-z-]*)(?: ([a-z][a-z-]+))?", path.read_text())}
    missing = sorted((v, f) for v, _, f in named if v not in verbs)
    assert not missing, f"messages name verbs that do not exist: {missing}"

    def parses(words):
        import contextlib
        import io
        with contextlib.redirect_stderr(io.StringIO()):
            try:
                parser.parse_args(words)
                return True
            except SystemExit:
                return False
    # `batos kernel missions`: a second word the verb does not take
    wrong = sorted((f"{v} {w}", f) for v, w, f in named
                   if w and parses([v]) and not parses([v, w]))
    assert not wrong, f"messages name verbs that do not exist: {wrong}"
