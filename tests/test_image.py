import hashlib
import os
import subprocess
import sys

import pytest
from BTrees.OOBTree import OOBTree
from conftest import ROOT, batos_env, run_batos
from persistent.mapping import PersistentMapping
from ZODB.blob import Blob
from ZODB.POSException import ConflictError
from ZODB.utils import oid_repr

from image import ImageCorrupt, ImageLocked, ImageNotFound, MissingBlob, open_image, resolve
from image.blobs import open_blob
from image.dump import check
from image.location import default_image_dir


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fill(img, n, start=0):
    """n one-object transactions; returns file sizes after each."""
    sizes = []
    for i in range(start, start + n):
        with img.transaction() as conn:
            root = conn.root()
            root.setdefault("objs", OOBTree())
            root["objs"][i] = PersistentMapping(i=i)
        if img.location.kind == "folder":
            sizes.append(img.location.data_fs.stat().st_size)
    return sizes


def keys(image_dir):
    img = open_image(image_dir)
    try:
        with img.view() as root:
            return sorted(root["objs"].keys()), img.notes
    finally:
        img.close()


# -- locations ---------------------------------------------------------------------

def test_resolve_order(monkeypatch, tmp_path):
    monkeypatch.delenv("BATOS_IMAGE", raising=False)
    assert resolve(None).path == default_image_dir().resolve()
    monkeypatch.setenv("BATOS_IMAGE", str(tmp_path / "env"))
    assert resolve(None).path == tmp_path / "env"
    assert resolve(str(tmp_path / "flag")).path == tmp_path / "flag"
    assert resolve("memory:").kind == "memory"
    assert resolve("zeo://localhost:8100").address == ("localhost", 8100)
    assert resolve("zeo:///run/batos.sock").address == "/run/batos.sock"
    with pytest.raises(ValueError, match="zeo://HOST:PORT"):
        resolve("zeo://nohostport")


def test_missing_image_says_how_to_create_one(tmp_path):
    with pytest.raises(ImageNotFound, match="batos init"):
        open_image(tmp_path / "none")
    assert not (tmp_path / "none").exists()


@pytest.fixture
def any_image(image_spec):
    """A bootstrapped image on each kind of storage (folder, ZEO, PostgreSQL)."""
    from kernel.schema import bootstrap
    img = open_image(image_spec, create=True)
    bootstrap(img)
    yield img
    img.close()


def test_same_code_on_every_storage(any_image, image_spec):
    with any_image.transaction() as conn:
        conn.root()["orai"].mood = image_spec
        conn.root()["doc"] = Blob(b"bytes in a blob")
    tid = any_image.last_transaction()
    with any_image.view() as root:
        assert root["orai"].mood == image_spec
    any_image.close()
    img = open_image(image_spec)                 # reopened: all of it is there
    with img.view() as root:
        assert root["orai"].mood == image_spec
        with open_blob(root["doc"]) as f:
            assert f.read() == b"bytes in a blob"
    with img.transaction() as conn:
        conn.root()["orai"].mood = "later"
    with img.view(at=tid) as root:               # history: the state as of a tid
        assert root["orai"].mood == image_spec
    if img.location.kind == "folder":
        with pytest.raises(ImageLocked):        # one process holds a FileStorage
            open_image(image_spec)
    else:                                        # two clients see each other's commits
        other = open_image(image_spec)
        with img.transaction() as conn:
            conn.root()["shared"] = 41
        with other.view() as root:
            assert root["shared"] == 41
        other.close()
    img.close()


def test_memory_image_runs_the_same_code():
    from kernel.schema import bootstrap
    img = open_image("memory:")
    bootstrap(img)
    with img.transaction() as conn:
        conn.root()["orai"].mood = "memory"
    with img.view() as root:
        assert root["orai"].mood == "memory"
    img.close()


# -- transactions --------------------------------------------------------------------

def test_transaction_commits_or_aborts(any_image):
    with any_image.transaction() as conn:
        conn.root()["x"] = 1
    with pytest.raises(ZeroDivisionError):
        with any_image.transaction() as conn:
            conn.root()["x"] = 2
            1 / 0
    with any_image.view() as root:
        assert root["x"] == 1


def test_conflicts_are_retried(any_image):
    with any_image.transaction() as conn:
        conn.root()["c"] = PersistentMapping(n=0)
    calls = []

    def bump(root):
        value = root["c"]["n"]
        if not calls:           # another writer commits between our read and our commit
            with any_image.transaction() as other:
                other.root()["c"]["n"] += 10
        calls.append(value)
        root["c"]["n"] = value + 1
    any_image.run(bump)
    assert len(calls) == 2
    with any_image.view() as root:
        assert root["c"]["n"] == 11


def test_conflict_surfaces_after_the_last_attempt(any_image):
    with any_image.transaction() as conn:
        conn.root()["c"] = PersistentMapping(n=0)

    def always_conflict(root):
        root["c"]["n"] += 1
        with any_image.transaction() as other:
            other.root()["c"]["n"] += 100
    with pytest.raises(ConflictError):
        any_image.run(always_conflict, attempts=2)


def test_a_conflict_is_named_and_retried_after_a_random_pause(any_image, caplog,
                                                               monkeypatch):
    """The log names what collided (an operator's hot spot); tries do not retry in step."""
    import logging
    import time

    from image import image as image_mod
    pauses = []
    monkeypatch.setattr(time, "sleep", pauses.append)
    with any_image.transaction() as conn:
        conn.root()["c"] = PersistentMapping(n=0)

    def conflict_twice(root):
        root["c"]["n"] += 1
        if len(pauses) < 2:
            with any_image.transaction() as other:
                other.root()["c"]["n"] += 100
    with caplog.at_level(logging.INFO, logger="image.image"):
        any_image.run(conflict_twice, attempts=5)
    with any_image.view() as root:
        assert root["c"]["n"] == 201
        oid = root["c"]._p_oid
    said = [r for r in caplog.records if getattr(r, "event", None) == "conflict_on"]
    assert len(said) == 2 and {r.oid for r in said} == {oid_repr(oid)}
    assert {r.error for r in said} == {"ConflictError"} and said[0].levelno == logging.INFO
    assert len(pauses) == 2 and all(0 <= p <= 0.5 for p in pauses)
    draws = {image_mod.backoff(3) for _ in range(20)}
    assert len(draws) > 10 and max(draws) <= 0.04       # random, and bounded by the try


def test_an_error_that_is_not_a_conflict_is_not_retried(any_image):
    calls = []

    def fails(root):
        calls.append(1)
        root["x"] = 1
        raise ValueError("not a conflict")
    with pytest.raises(ValueError):
        any_image.run(fails, attempts=5)
    assert len(calls) == 1
    with any_image.view() as root:
        assert "x" not in root


# -- clear errors, nothing lost ---------------------------------------------------------

def test_locked_image_names_the_process_and_how_to_attach(image_dir):
    img = open_image(image_dir, create=True)
    fill(img, 3)
    img.close()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from image import open_image;"
         f"img = open_image({str(image_dir)!r}); print('ready', flush=True); time.sleep(60)"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True, env=batos_env())
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(ImageLocked) as e:
            open_image(image_dir)
        assert e.value.pid == holder.pid
        assert str(holder.pid) in str(e.value) and "zeo://" in str(e.value)
        proc = run_batos("info", "--image", image_dir)
        assert proc.returncode == 2 and f"process {holder.pid}" in proc.stderr
        # read-only commands still work while it is held
        assert run_batos("info", "--read-only", "--image", image_dir).returncode == 0
    finally:
        holder.kill()
        holder.wait()
    assert keys(image_dir)[0] == [0, 1, 2]


def test_truncated_last_transaction_is_recovered(image_dir):
    img = open_image(image_dir, create=True)
    sizes = fill(img, 3)
    img.close()
    cut = sizes[1] + (sizes[2] - sizes[1]) // 2          # the third commit half-written
    with open(image_dir / "Data.fs", "r+b") as f:
        f.truncate(cut)
    found, notes = keys(image_dir)
    assert found == [0, 1]                                # nothing partial is visible
    assert any("torn last transaction" in n for n in notes)
    assert (image_dir / "Data.fs.tr0").exists()           # the cut bytes are kept
    img = open_image(image_dir)                           # and the image keeps working
    fill(img, 1, start=5)
    img.close()
    assert keys(image_dir)[0] == [0, 1, 5]


@pytest.mark.parametrize("garbage", [
    b"\xff" * 8 + (60).to_bytes(8, "big") + b"\xff" + bytes(6) + os.urandom(150),
    bytes(range(256)) * 3,
], ids=["bad-status", "pattern"])
def test_garbage_after_last_transaction_is_cut_and_kept(image_dir, garbage):
    img = open_image(image_dir, create=True)
    fill(img, 4)
    img.close()
    good = (image_dir / "Data.fs").read_bytes()
    with open(image_dir / "Data.fs", "ab") as f:
        f.write(garbage)
    found, notes = keys(image_dir)
    assert found == [0, 1, 2, 3]
    assert notes, "the repair must be reported"
    kept = list(image_dir.glob("Data.fs.damaged-*")) + list(image_dir.glob("Data.fs.tr*"))
    assert kept and any(k.read_bytes().endswith(garbage) or k.read_bytes() in garbage for k in kept)
    assert (image_dir / "Data.fs").read_bytes() == good


def test_garbage_is_explained_not_repaired_when_read_only(image_dir):
    img = open_image(image_dir, create=True)
    fill(img, 2)
    img.close()
    (image_dir / "Data.fs.index").unlink()
    with open(image_dir / "Data.fs", "ab") as f:
        f.write(b"\xff" * 8 + (60).to_bytes(8, "big") + b"\xff" + bytes(80))
    before = sha(image_dir / "Data.fs")
    with pytest.raises(ImageCorrupt, match="garbage"):
        open_image(image_dir, read_only=True)
    assert sha(image_dir / "Data.fs") == before


def _damage_middle(image_dir):
    """Break the header of the 3rd of 6 transactions; return its offset."""
    import struct
    img = open_image(image_dir, create=True)
    sizes = fill(img, 6)
    img.close()
    (image_dir / "Data.fs.index").unlink()
    with open(image_dir / "Data.fs", "r+b") as f:
        f.seek(sizes[1] + 8)                              # tl of the third transaction
        f.write(struct.pack(">Q", 10))
    return sizes[1]


def test_damage_in_the_middle_is_refused_with_next_steps(image_dir):
    offset = _damage_middle(image_dir)
    before = sha(image_dir / "Data.fs")
    with pytest.raises(ImageCorrupt) as e:
        open_image(image_dir)
    msg = str(e.value)
    assert f"offset {offset}" in msg and "batos image recover" in msg and "batos restore" in msg
    assert sha(image_dir / "Data.fs") == before           # untouched
    proc = run_batos("info", "--image", image_dir)
    assert proc.returncode == 2 and "batos image recover" in proc.stderr


def test_recover_salvages_and_keeps_the_damaged_file(image_dir):
    _damage_middle(image_dir)
    before = sha(image_dir / "Data.fs")
    proc = run_batos("image", "recover", "--image", image_dir)
    assert proc.returncode == 0, proc.stderr
    kept = list(image_dir.glob("Data.fs.damaged-*"))
    assert len(kept) == 1 and sha(kept[0]) == before
    found, _ = keys(image_dir)
    assert {0, 1} <= set(found)                           # everything before the damage


def test_damaged_record_is_reported_by_check(image_dir):
    img = open_image(image_dir, create=True)
    fill(img, 3)
    with img.view() as root:
        oid = root["objs"][1]._p_oid
    data, serial = img.storage.load(oid)
    img.close()
    raw = (image_dir / "Data.fs").read_bytes()
    pos = raw.rindex(data)
    broken = raw[:pos] + b"\x00garbled" + raw[pos + 8:]
    (image_dir / "Data.fs").write_bytes(broken)
    proc = run_batos("image", "check", "--json", "--image", image_dir)
    assert proc.returncode == 1
    import json
    report = json.loads(proc.stdout)
    assert report["broken"] and report["broken"][0]["oid"] == oid_repr(oid)


def test_missing_blob_names_the_object(image_dir):
    img = open_image(image_dir, create=True)
    with img.transaction() as conn:
        conn.root()["holder"] = holder = PersistentMapping()
        holder["doc"] = Blob(b"precious")
        conn.root()["other"] = Blob(b"fine")
    with img.view() as root:
        oid = root["holder"]["doc"]._p_oid
        path = img.storage.loadBlob(oid, img.storage.load(oid)[1])
    os.unlink(path)
    with img.view() as root:
        with pytest.raises(MissingBlob) as e:
            open_blob(root["holder"]["doc"], owner="holder['doc']")
        assert e.value.oid == oid and "holder['doc']" in str(e.value)
        assert "batos restore" in str(e.value)
        with open_blob(root["other"]) as f:                # the rest is intact
            assert f.read() == b"fine"
    report = check(img.storage)
    assert [o for o, _ in report.missing_blobs] == [oid_repr(oid)]
    img.close()
    from image.location import Location
    from image.snapshot import create_snapshot
    with pytest.raises(MissingBlob, match=oid_repr(oid)):
        create_snapshot(Location("folder", path=image_dir), "s")
    assert not (image_dir / "snapshots" / "s").exists()


def test_serve_publishes_its_address_and_others_attach(tmp_path, folder_image):
    import json
    import signal
    folder = folder_image.location.path
    folder_image.close()
    server = subprocess.Popen([sys.executable, "-m", "batos", "image", "serve", "--image", str(folder)],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True, env=batos_env())
    try:
        line = server.stdout.readline()
        assert "attach with --image zeo://" in line, line
        address = json.loads((folder / "serve.json").read_text())["address"]
        with pytest.raises(ImageLocked, match=f"zeo://{address}"):
            open_image(folder)
        img = open_image(f"zeo://{address}")
        with img.transaction() as conn:
            conn.root()["orai"].via = "zeo"
        img.close()
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
    finally:
        if server.poll() is None:
            server.kill()
    assert not (folder / "serve.json").exists()
    with open_image(folder) as img, img.view() as root:
        assert root["orai"].via == "zeo"


def test_unreachable_zeo_server_is_a_clear_error(tmp_path, monkeypatch):
    import image.storage
    from image import ImageError
    monkeypatch.setattr(image.storage, "ZEO_WAIT", 1)
    with pytest.raises(ImageError, match="batos image serve"):
        open_image(f"zeo://{tmp_path}/nothing.sock")


def test_json_logs_carry_the_guardians_verdicts(tmp_path):
    p = tmp_path / "evil.py"
    p.write_text("def f(self):\n    import os\n")
    proc = run_batos("--log-json", "guard", "check", p)
    import json
    records = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    rejected = [r for r in records if r["logger"] == "guardians"]
    assert rejected and rejected[0]["level"] == "warning"
    assert rejected[0]["verdict"]["reasons"][0]["rule"] == "import"


# -- locations a user may mistype, and the PostgreSQL options ----------------------------

def test_an_unknown_scheme_is_refused_and_makes_no_folder(tmp_path):
    env = batos_env(tmp_path, HOME=str(tmp_path / "home"))
    proc = subprocess.run([sys.executable, "-m", "batos", "init", "--no-models", "--image",
                           "mysql://me@127.0.0.1:3306/batos"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "mysql:" in proc.stderr and "postgresql://USER@HOST:PORT/DBNAME" in proc.stderr
    assert not any(p.name.startswith("mysql") for p in tmp_path.iterdir())   # no folder
    with pytest.raises(ValueError, match="postgresql://USER@HOST:PORT/DBNAME"):
        resolve("postgresql://me@127.0.0.1:5432/")          # no database named
    assert str(resolve("postgresql://me:secret@db:5433/b")) == "postgresql://me:***@db:5433/b"


def test_relstorage_options_come_from_the_config_file_and_are_checked(tmp_path, monkeypatch):
    from image import ImageError
    from image.relstore import keyword_dsn, relstorage_options
    loc = resolve("postgresql://me:p'w@db:5433/batos?sslmode=require")
    config = tmp_path / "config.toml"
    monkeypatch.setenv("BATOS_CONFIG", str(config))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    opts = relstorage_options(loc)                      # no file: blobs in the database
    assert opts["keep_history"] and opts["shared_blob_dir"] is False
    assert opts["blob_dir"].startswith(str(tmp_path / "cache"))
    config.write_text('[relstorage]\ncache_local_mb = 50\n')
    assert relstorage_options(loc, read_only=True)["cache_local_mb"] == 50
    for text, why in (('[relstorage]\ncache_mb = 5\n', "unknown option"),
                      ('[relstorage]\nkeep_history = false\n', "keep_history must be"),
                      ('[relstorage]\nshared_blob_dir = true\n', "needs blob_dir"),
                      ('[relstorage\n', "cannot read the config file")):
        config.write_text(text)
        with pytest.raises(ImageError, match=why):
            relstorage_options(loc)
    dsn = keyword_dsn(loc)
    assert "password='p\\'w'" in dsn and "sslmode='require'" in dsn and "port='5433'" in dsn


def test_an_unreachable_database_is_a_clear_error():
    from storages import free_port

    from image import ImageError
    with pytest.raises(ImageError, match="cannot reach PostgreSQL .* Is the server running"):
        open_image(f"postgresql://me@127.0.0.1:{free_port()}/batos")


def test_a_missing_database_says_how_to_create_it(postgres):
    url = postgres.url()
    with pytest.raises(ImageNotFound, match="batos init --image postgresql://"):
        open_image(url)
    with pytest.raises(ImageNotFound, match="batos init"):
        open_image(url, read_only=True)
    img = open_image(url, create=True)                 # made, with its RelStorage tables
    img.close()
    open_image(url, read_only=True).close()
