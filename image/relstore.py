"""A PostgreSQL image: RelStorage over one database, blobs in the database by default.

The URL (``postgresql://USER@HOST:PORT/DBNAME``) says where; the rest of
RelStorage's options come from the ``[relstorage]`` table of the config file
(``$BATOS_CONFIG``, else ``$XDG_CONFIG_HOME/batos/config.toml``), e.g.::

    [relstorage]
    blob_dir = "/shared/batos-blobs"   # a directory every machine mounts
    shared_blob_dir = true             # blobs live there, not in the database
    cache_local_mb = 50

History is always kept (``image at`` and snapshots read it), so
``keep_history`` may not be turned off.
"""
import hashlib
import logging
import os
from pathlib import Path

from .errors import ImageError, ImageNotFound
from .location import Location

log = logging.getLogger(__name__)
CONFIG_VAR = "BATOS_CONFIG"
CONNECT_TIMEOUT = 5          # seconds before an unreachable server is reported
FIXED = {"keep_history": True}


def config_path() -> Path:
    if os.environ.get(CONFIG_VAR):
        return Path(os.environ[CONFIG_VAR]).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "batos" / "config.toml"


def relstorage_options(loc: Location, read_only=False) -> dict:
    """RelStorage's options for ``loc``: the config file's ``[relstorage]`` table, checked."""
    import tomllib

    from relstorage.options import Options
    path = config_path()
    table = {}
    if path.exists():
        try:
            table = tomllib.loads(path.read_text(encoding="utf-8")).get("relstorage", {})
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
            raise ImageError(f"cannot read the config file {path}: {e}. Fix it, or point "
                             f"${CONFIG_VAR} at another file.") from None
    if not isinstance(table, dict):
        raise ImageError(f"{path}: [relstorage] must be a table of RelStorage options")
    valid = set(Options.valid_option_names())
    bad = sorted(set(table) - valid)
    if bad:
        raise ImageError(f"{path}: [relstorage] has unknown option(s) {', '.join(bad)}; "
                         f"RelStorage knows: {', '.join(sorted(valid))}")
    for key, value in FIXED.items():
        if key in table and table[key] != value:
            raise ImageError(f"{path}: [relstorage] {key} must be {value!r}: the image's "
                             "history is read by `image at` and snapshots")
    opts = {**table, **FIXED, "read_only": read_only}
    if not opts.get("shared_blob_dir"):
        # blobs live in the database; this is only the local cache of them
        opts["shared_blob_dir"] = False
        opts.setdefault("blob_dir", str(_blob_cache(loc)))
    elif not opts.get("blob_dir"):
        raise ImageError(f"{path}: [relstorage] shared_blob_dir = true needs blob_dir (a "
                         "directory every machine that opens the image mounts)")
    return opts


def _blob_cache(loc):
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "batos"
    digest = hashlib.sha1(str(loc).encode()).hexdigest()[:12]
    return base / f"pg-blobs-{digest}"


def keyword_dsn(loc: Location, dbname=None) -> str:
    """libpq's ``key=value`` form of the URL (RelStorage appends to it, so no URL form)."""
    from urllib.parse import parse_qsl, unquote, urlsplit
    url = urlsplit(loc.dsn)
    parts = {"host": url.hostname, "port": loc.address[1], "dbname": dbname or loc.database,
             "user": unquote(url.username) if url.username else None,
             "password": unquote(url.password) if url.password else None}
    parts.update(parse_qsl(url.query))

    def quote(v):
        return "'" + str(v).replace("\\", "\\\\").replace("'", "\\'") + "'"
    return " ".join(f"{k}={quote(v)}" for k, v in parts.items() if v is not None)


def _connect(loc, dbname):
    import psycopg2
    host, port = loc.address
    try:
        return psycopg2.connect(keyword_dsn(loc, dbname), connect_timeout=CONNECT_TIMEOUT)
    except psycopg2.OperationalError as e:
        text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if f'database "{dbname}" does not exist' in text:
            return None
        raise ImageError(f"cannot reach PostgreSQL at {host}:{port} for {loc} ({text}). Is "
                         "the server running, and does the URL name a user it accepts?") from None


def _has_schema(conn) -> bool:
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM information_schema.tables WHERE table_name = 'object_state'")
        return cur.fetchone() is not None


def open_postgresql(loc: Location, *, create=False, read_only=False):
    """A RelStorage on ``loc``; with ``create``, the database is made when missing."""
    from relstorage.adapters.postgresql import PostgreSQLAdapter
    from relstorage.options import Options
    from relstorage.storage import RelStorage
    options = relstorage_options(loc, read_only)
    conn = _connect(loc, loc.database)
    if conn is None:
        if not create or read_only:
            raise ImageNotFound(f"no image at {loc}: the database {loc.database!r} does not "
                                f"exist. Create it with `batos init --image {loc}`.")
        admin = _connect(loc, "postgres")
        if admin is None:
            raise ImageError(f"cannot create {loc.database!r}: the server at {loc} has no "
                             "'postgres' database to connect to; create the database yourself")
        admin.autocommit = True
        try:
            from psycopg2 import sql
            with admin.cursor() as cur:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(loc.database)))
        except Exception as e:
            raise ImageError(f"cannot create the database {loc.database!r} on {loc}: "
                             f"{str(e).strip()}; create it yourself (createdb), or ask for "
                             "the CREATEDB right") from None
        finally:
            admin.close()
        log.info("created database %s", loc.database)
        conn = _connect(loc, loc.database)
    try:
        empty = not _has_schema(conn)
    finally:
        conn.close()
    if empty and (not create or read_only):
        raise ImageNotFound(f"no image at {loc}: the database has no RelStorage tables. "
                            f"Create one with `batos init --image {loc}`.")
    Path(options["blob_dir"]).mkdir(parents=True, exist_ok=True)
    opts = Options(**options)
    try:
        return RelStorage(PostgreSQLAdapter(dsn=keyword_dsn(loc), options=opts), options=opts)
    except Exception as e:
        raise ImageError(f"cannot open RelStorage on {loc}: {type(e).__name__}: "
                         f"{str(e).strip()}") from e
