"""The image verbs of the CLI: thin wrappers over image/ and prototypes/."""
from image import open_image, resolve
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
        if loc.kind == "folder":
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
        if loc.kind == "folder":
            info["data_fs_bytes"] = loc.data_fs.stat().st_size
            info["snapshots"] = [s.name for s in snap.list_snapshots(loc)]
    _emit(args, info)
    return 0


def cmd_snapshot_create(args):
    loc = resolve(args.image)
    total = loc.data_fs.stat().st_size if loc.kind == "folder" and loc.data_fs.exists() else 0
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
        ui.out.print(f"packed: history before {result['cutoff']} dropped; Data.fs "
                     f"{b.get('data_fs_bytes', 0):,} -> {a.get('data_fs_bytes', 0):,} bytes, "
                     f"blob files {b.get('blob_files', 0)} -> {a.get('blob_files', 0)}")
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


def cmd_recover(args):
    loc = resolve(args.image)
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

