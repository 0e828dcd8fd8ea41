"""The image verbs of the CLI: thin wrappers over image/ and prototypes/."""
from image import ImageError, open_image, resolve
from image import snapshot as snap
from image.dump import check
from image.pack import pack
from image.repair import recover
from image.snapshot import tid_time
from kernel.schema import bootstrap

from . import ui


def cmd_init(args):
    loc = resolve(args.image)
    installed = []
    with open_image(loc, create=True) as img:
        created = bootstrap(img)
        show_notes(img)
        if loc.is_folder:
            from kernel.api_token import ensure_token
            ensure_token(loc)
        if not args.no_models:
            from mindhost import minds
            if minds.needs_models(img):
                minds.bundled_gguf()        # missing: says how to get it, before any work
            for mind in minds.needs_models(img):
                with ui.status(f"{mind}: importing the bundled SmolLM2-135M-Instruct as "
                               "generation 0", not args.json):
                    installed.append(minds.install(img, mind))
    if args.json:
        ui.print_json({"image": str(loc), "created": created, "models": installed})
        return 0
    if created:
        ui.out.print(f"created image at [bold]{ui.escape(str(loc))}[/] with {', '.join(created)}")
    elif not installed:
        ui.out.print(f"image at [bold]{ui.escape(str(loc))}[/] is already bootstrapped; nothing changed")
    from .mind_cmd import _report_install
    for entry in installed:
        _report_install(entry, False)
    return 0


def cmd_info(args):
    loc = resolve(args.image)
    with open_image(loc, read_only=args.read_only) as img:
        show_notes(img)
        tid = img.last_transaction()
        info = {"image": str(loc), "kind": loc.kind, "last_tid": tid.hex(),
                "last_commit": tid_time(tid), "schema_version": img.schema_version(),
                "objects": len(img.storage) if hasattr(img.storage, "__len__") else None}
        if loc.is_folder:
            info["data_fs_bytes"] = loc.data_fs.stat().st_size
        if loc.is_database:
            info["objects"], info["database_bytes"] = _database_facts(img)
        if loc.persistent:
            info["snapshots"] = [s.name for s in snap.list_snapshots(loc)]
        from kernel import runners
        with img.view() as root:
            if "runners" in root:
                info["runners"] = [
                    {k: r[k] for k in ("id", "role", "minds", "silent_s", "alive", "running",
                                       "done")} for r in runners.rows(root)]
    info["second_wall"] = _wall_facts()
    _emit(args, info)
    return 0


def _wall_facts():
    """The rules a worker's call processes enter on this machine, and those it lacks."""
    from guardians import wall, workers
    try:
        w = workers.POOL.acquire()
    except workers.WorkerError as e:
        return {"in_force": [], "missing": sorted(wall.expected()), "error": str(e)}
    workers.POOL.release(w)
    return {"in_force": sorted(w.wall), "missing": sorted(wall.expected() - w.wall)}


def _database_facts(img):
    """(current objects, pg_database_size) of a PostgreSQL image; None where the server
    will not say."""
    from image.relstore import keyword_dsn
    try:
        import psycopg2
        with psycopg2.connect(keyword_dsn(img.location)) as conn, conn.cursor() as cur:
            cur.execute("SELECT (SELECT count(*) FROM current_object), "
                        "pg_database_size(current_database())")
            return tuple(cur.fetchone())
    except Exception:        # facts for info, never a reason to fail
        return None, None


def cmd_image_copy(args):
    from image.copy import copy_image
    src, dest = resolve(args.source), resolve(args.destination)
    with ui.phase_progress(not args.json) as start:
        report = copy_image(src, dest, progress=start)
    if args.json:
        ui.print_json(report)
        return 0
    fp = report["copy_fingerprint"]
    ui.out.print(f"copied {ui.escape(str(src))} -> [bold]{ui.escape(str(dest))}[/]: "
                 f"{report['copied']} transactions, {fp['objects']} objects, {fp['blobs']} "
                 f"blob revisions ({fp['blob_bytes']:,} bytes), last tid {fp['last_tid']}")
    ui.out.print(f"verified: every record and blob matches (sha256 {fp['digest'][:16]}…)")
    if src.kind == "folder" and (src.path / "models").is_dir() and dest.kind != "folder":
        ui.out.print(f"models stay in {ui.escape(str(src.path / 'models'))}: point $BATOS_MODELS "
                     "there (or at a copy of it) on each machine that opens the new image")
    return 0


def cmd_snapshot_create(args):
    loc = resolve(args.image)
    total = loc.data_fs.stat().st_size if loc.is_folder and loc.data_fs.exists() else 0
    with ui.byte_progress(f"snapshot {args.name}", total, not args.json) as advance:
        s = snap.create_snapshot(loc, args.name, progress=advance)
    m = s.manifest
    if args.json:
        ui.print_json(m | {"files": len(m["files"]), "path": str(s.path)})
    else:
        ui.out.print(f"snapshot [bold]{s.name}[/] at tid {m['tid']} ({m['tid_time']}): "
                     f"{m['objects']} objects, {m['blobs']} blobs, {m['bytes']:,} bytes -> {ui.escape(str(s.path))}")
    return 0


def cmd_snapshot_list(args):
    loc = resolve(args.image)
    rows = [{k: s.manifest[k] for k in ("name", "tid", "tid_time", "created", "objects",
                                        "blobs", "bytes", "schema_version")}
            for s in snap.list_snapshots(loc)]
    if args.json:
        ui.print_json(rows)
        return 0
    if not rows:
        ui.out.print(f"no snapshots of {loc} yet; take one with `batos snapshot create NAME`")
        return 0
    from rich.table import Table
    t = Table("name", "tid", "consistent at", "objects", "blobs", "bytes")
    for r in rows:
        t.add_row(r["name"], r["tid"], r["tid_time"], str(r["objects"]), str(r["blobs"]),
                  f"{r['bytes']:,}")
    ui.out.print(t)
    return 0


def cmd_snapshot_verify(args):
    s = snap.get_snapshot(resolve(args.image), args.name)
    total = sum(f["size"] for f in s.manifest["files"].values())
    with ui.byte_progress(f"verify {s.name}", total, not args.json) as advance:
        s.verify(progress=advance)
    if args.json:
        ui.print_json({"name": s.name, "ok": True, "files": len(s.manifest["files"])})
    else:
        ui.out.print(f"snapshot [bold]{s.name}[/]: all {len(s.manifest['files'])} files match the manifest")
    return 0


def cmd_restore(args):
    s = snap.get_snapshot(resolve(args.image), args.name)
    total = 2 * sum(f["size"] for f in s.manifest["files"].values())   # verify, then copy
    with ui.byte_progress(f"restore {s.name}", total, not args.json) as advance:
        result = snap.restore_snapshot(s, args.to, force=args.force, progress=advance)
    if args.json:
        ui.print_json(result)
    else:
        ui.out.print(f"restored [bold]{s.name}[/] (tid {result['tid']}) into {ui.escape(result['to'])}; "
                     f"verified {result['files']} files. Open it with --image {ui.escape(result['to'])}")
    return 0


def cmd_image_at(args):
    loc = resolve(args.image)
    img, tid, source = snap.open_at(loc, args.name)
    with img:
        if args.json:
            with img.view(at=tid) as root:
                ui.print_json({"snapshot": args.name, "tid": tid.hex(), "source": source,
                               "root": sorted(root.keys())})
            return 0
        from .console import Console
        ui.err.print(f"[dim]read-only view of {ui.escape(str(loc))} as of snapshot {args.name} "
                     f"(tid {tid.hex()}, from the {source})[/]")
        return Console(img, at=tid).run()


def cmd_pack(args):
    with open_image(resolve(args.image)) as img:
        result = pack(img, args.keep_days)
    if args.json:
        ui.print_json(result)
    else:
        b, a = result["before"], result["after"]
        sizes = (f"; Data.fs {b['data_fs_bytes']:,} -> {a['data_fs_bytes']:,} bytes, blob "
                 f"files {b['blob_files']} -> {a['blob_files']}" if "data_fs_bytes" in b else "")
        ui.out.print(f"packed: history before {result['cutoff']} dropped{sizes}")
    return 0


def cmd_check(args):
    with open_image(resolve(args.image), read_only=True) as img:
        report = check(img.storage)
    data = {"ok": report.ok, "objects": report.objects, "blobs": report.blobs,
            "missing_blobs": [{"oid": o, "held_by": r} for o, r in report.missing_blobs],
            "broken": [{"oid": o, "error": e} for o, e in report.broken]}
    if args.json:
        ui.print_json(data)
    else:
        ui.out.print(f"{report.objects} objects, {report.blobs} blobs checked")
        for o, r in report.missing_blobs:
            ui.out.print(f"[red]missing blob file[/] of object {o} (held by object {r})")
        for o, e in report.broken:
            ui.out.print(f"[red]unreadable record[/] {o}: {ui.escape(e)}")
        if not report.ok:
            ui.out.print("restore from a snapshot (`batos restore NAME --to DIR`) to get them back")
    return 0 if report.ok else 1


def _folder_only(loc, verb, instead):
    if not loc.is_folder:
        raise ImageError(f"`batos image {verb}` works on a folder image (FileStorage); "
                         f"{loc} is a {loc.kind} image. {instead}")


DATABASE_REPAIR = ("A PostgreSQL image is repaired by the database itself: restore a backup "
                   "(pg_dump/pg_restore, or point-in-time recovery), or copy a snapshot back "
                   "with `batos image copy SNAPSHOT_DIR postgresql://...` into a new database.")


def cmd_recover(args):
    loc = resolve(args.image)
    _folder_only(loc, "recover", DATABASE_REPAIR if loc.is_database else
                 "Run it with --image FOLDER on the machine that holds the served folder.")
    kept, note = recover(loc.data_fs)
    with open_image(loc) as img:
        report = check(img.storage)
    ui.out.print(f"{ui.escape(note)}; {report.objects} objects readable"
                 + ("" if report.ok else f", {len(report.broken)} unreadable"))
    return 0


def cmd_serve(args):
    import signal
    import threading

    from image.serve import serve
    loc = resolve(args.image)
    _folder_only(loc, "serve", "Every process (consoles, kernels, runners) opens a PostgreSQL "
                 "image directly, on any machine that reaches the database: no server of ours "
                 "is needed." if loc.is_database else "")
    address = args.address
    if address and ":" in address and not address.startswith("/"):
        host, _, port = address.rpartition(":")
        address = (host, int(port))
    addr, stop = serve(loc, address)
    shown = addr if isinstance(addr, str) else f"{addr[0]}:{addr[1]}"
    ui.out.print(f"serving {loc} over ZEO; attach with --image zeo://{shown}", highlight=False)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *a: done.set())
    done.wait()
    stop()
    return 0


def _emit(args, data):
    if args.json:
        ui.print_json(data)
    else:
        for k, v in data.items():
            ui.out.print(f"{k:>15}: {v}", markup=False)


def show_notes(img):
    for note in img.notes:
        ui.err.print(f"[yellow]repaired:[/] {ui.escape(note)}")

