"""The console, driven as a person would: a real `batos console` in a pty."""
import sys

import pexpect
from conftest import ROOT, batos_env

from batos.console import Console, SlotCompleter
from image import open_image

PROMPT = "batos>"


def spawn(tmp_path, *args):
    env = batos_env(tmp_path, TERM="xterm", NO_COLOR="1", PROMPT_TOOLKIT_NO_CPR="1",
                    COLUMNS="160")
    child = pexpect.spawn(sys.executable, ["-m", "batos", "console", *map(str, args)],
                          cwd=str(ROOT), env=env, encoding="utf-8", timeout=30,
                          dimensions=(50, 160))
    child.expect(PROMPT)
    return child


def say(child, line, expect=None):
    child.sendline(line)
    text = ""
    if expect:
        child.expect(expect)
        text = child.before + child.after
    child.expect(PROMPT)
    return text + child.before


def define(child, *lines):
    for line in lines:
        child.sendline(line)
        child.expect(r"\.\.\.")
    child.sendline("")


def test_console_session_commits_aborts_defines_inspects_and_snapshots(tmp_path):
    image = tmp_path / "img"
    c = spawn(tmp_path, "--image", image)
    say(c, 'orai.mood = "curious"')
    say(c, "orai.mood", "curious")
    say(c, 'orai.mood = "lost"; 1/0', "transaction aborted")
    define(c, ":define orai greet", "def greet(self, who):",
           '    return self.name + " greets " + who')
    c.expect("installed")
    c.expect(PROMPT)
    say(c, 'orai.greet("you")', "orai greets you")
    define(c, ":define orai evil", "return open('/etc/passwd').read()")
    c.expect("rejected")
    c.expect(PROMPT)
    out = say(c, ":inspect orai", "lookup chain")
    for expected in ("identity", "greet", "introduce", "mind", "traits"):
        assert expected in out
    say(c, ":snapshot first", "objects")
    c.sendline("for i in range(3):")
    c.expect(r"\.\.\.")
    c.sendline("    hermes.count = i")
    c.expect(r"\.\.\.")
    say(c, "")
    c.sendcontrol("d")
    c.expect(pexpect.EOF)
    c.close()
    assert c.exitstatus == 0
    img = open_image(image)
    with img.view() as root:
        assert root["orai"].mood == "curious"                 # the failed input left nothing
        assert root["orai"].greet("me") == "orai greets me"
        assert "evil" not in root["orai"].slot_names()
        assert root["hermes"].count == 2
    img.close()
    assert (image / "snapshots" / "first" / "manifest.json").exists()
    assert 'orai.greet("you")' in (tmp_path / "history").read_text()


def test_tab_completion_over_slot_names(tmp_path):
    c = spawn(tmp_path, "--image", tmp_path / "img")
    say(c, 'orai.moodiness = 3')
    c.send("orai.moo\t")
    c.expect("moodiness")
    c.sendcontrol("c")
    c.expect(PROMPT)
    c.sendline(":quit")
    c.expect(pexpect.EOF)


def test_history_persists_between_sessions(tmp_path):
    c = spawn(tmp_path, "--image", tmp_path / "img")
    say(c, "orai.marker = 12345")
    c.sendline(":quit")
    c.expect(pexpect.EOF)
    c = spawn(tmp_path, "--image", tmp_path / "img")
    c.send("\x1b[A")                 # up arrow: ':quit', then the line before it
    c.expect(":quit")
    c.send("\x1b[A")
    c.expect("marker = 12345")
    c.sendcontrol("c")
    c.sendline(":quit")
    c.expect(pexpect.EOF)


def test_read_only_console_never_writes(tmp_path, folder_image):
    folder = folder_image.location.path
    tid = folder_image.last_transaction()
    folder_image.close()
    c = spawn(tmp_path, "--image", folder, "--read-only")
    say(c, 'orai.mood = "x"')
    say(c, "orai.introduce()", "orai")
    c.sendline(":quit")
    c.expect(pexpect.EOF)
    img = open_image(folder)
    assert img.last_transaction() == tid
    img.close()


def test_completer_candidates_without_a_terminal(mem_image):
    con = Console(mem_image)
    comp = SlotCompleter(con)
    names = [n for n, _ in comp.candidates("orai.ide")]
    assert names == ["identity"]
    assert ("introduce", -2) in comp.candidates("orai.in")       # inherited method
    assert [n for n, _ in comp.candidates(":ins")] == [":inspect"]
    assert comp.candidates("nosuch.x") == []
    con.close()


def test_image_at_opens_a_read_only_console_on_the_past(tmp_path, folder_image):
    from image.snapshot import create_snapshot
    with folder_image.transaction() as conn:
        conn.root()["orai"].mood = "then"
    create_snapshot(folder_image.location, "past")
    with folder_image.transaction() as conn:
        conn.root()["orai"].mood = "now"
    folder = folder_image.location.path
    folder_image.close()
    env = batos_env(tmp_path, TERM="xterm", NO_COLOR="1", PROMPT_TOOLKIT_NO_CPR="1")
    c = pexpect.spawn(sys.executable, ["-m", "batos", "image", "at", "past", "--image", str(folder)],
                      cwd=str(ROOT), env=env, encoding="utf-8", timeout=30, dimensions=(50, 160))
    c.expect(PROMPT)
    say(c, "orai.mood", "then")
    c.sendline(":quit")
    c.expect(pexpect.EOF)


def test_two_consoles_at_once_on_a_postgresql_image(tmp_path, postgres, monkeypatch):
    """Two people's consoles (as on two machines) on one database: each sees the other's
    commits at its next input; a snapshot from a console is a verified folder."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))      # where snapshots go
    url = postgres.url()
    a = spawn(tmp_path, "--image", url)
    b = spawn(tmp_path, "--image", url)
    say(a, 'orai.mood = "set by a"')
    say(b, "orai.mood", "set by a")
    say(b, "hermes.count = 41")
    say(a, "hermes.count + 1", "42")
    say(a, ":snapshot pg-first", "objects")
    for c in (a, b):
        c.sendcontrol("d")
        c.expect(pexpect.EOF)
        c.close()
        assert c.exitstatus == 0
    img = open_image(url)
    with img.view() as root:
        assert root["orai"].mood == "set by a" and root["hermes"].count == 41
    img.close()
    from image import resolve
    from image.snapshot import get_snapshot
    snap = get_snapshot(resolve(url), "pg-first")
    assert snap.verify() and str(snap.path).startswith(str(tmp_path / "data"))
