"""Real storage servers for the tests: a scratch PostgreSQL cluster, and ZEO over a folder.

PostgreSQL refuses to run as root, so as root the cluster belongs to the
``postgres`` user the Debian package creates (or ``nobody``). The server
listens on 127.0.0.1 and a socket in its own folder, with fsync off: the
tests need its semantics, not its durability. ``.ci/run`` installs the
server; ``BATOS_REQUIRE_POSTGRES=1`` (set there) turns a missing server into
a failure instead of a skip.
"""
import glob
import os
import pwd
import shutil
import socket
import subprocess
import uuid
from pathlib import Path

REQUIRE_VAR = "BATOS_REQUIRE_POSTGRES"
USER = "batos"


def pg_bindir():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    def __init__(self, folder: Path):
        self.bindir = pg_bindir()
        if self.bindir is None:
            raise FileNotFoundError("no PostgreSQL server here (initdb not found); "
                                    "install Debian's postgresql package")
        self.folder = Path(folder)
        self.data = self.folder / "data"
        self.port = free_port()
        self.owner = None
        if os.geteuid() == 0:
            for name in ("postgres", "nobody"):
                try:
                    self.owner = pwd.getpwnam(name)
                    break
                except KeyError:
                    continue

    def _run(self, *cmd, check=True):
        user = ["runuser", "-u", self.owner.pw_name, "--"] if self.owner else []
        return subprocess.run(user + [str(self.bindir / cmd[0]), *cmd[1:]], check=check,
                              capture_output=True, text=True, timeout=120, cwd=self.folder)

    def start(self):
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.owner:
            os.chown(self.folder, self.owner.pw_uid, self.owner.pw_gid)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", USER, "-E", "UTF8")
        opts = (f"-k {self.folder} -p {self.port} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.folder / "server.log"),
                  "-w", "-t", "60", "-o", opts, "start")
        return self

    def stop(self):
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)

    def url(self, database=None):
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database or new_name()}"


def new_name():
    return "img_" + uuid.uuid4().hex[:12]
