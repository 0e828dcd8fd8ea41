"""``batos model import|list|verify``: the content-addressed model store."""
from pathlib import Path

from image import open_image, resolve
from mindhost import store

from . import ui


def add_arguments(sub, verb):
    p = verb("import", cmd_import, "copy a Hugging Face model folder (or a GGUF file, "
             "dequantized to FP16) into the store and record it", sub, json=True)
    p.add_argument("path", help="model folder (config.json + *.safetensors) or .gguf file")
    p.add_argument("--name", help="a name to find it by (default: the folder name)")
    verb("list", cmd_list, "models recorded in the image", sub, json=True)
    p = verb("verify", cmd_verify, "re-hash every file of a model against its manifest", sub, json=True)
    p.add_argument("model", help="id, id prefix or name")


def cmd_import(args):
    loc = resolve(args.image)
    root_dir = store.default_store(loc)
    total = sum(f.stat().st_size for f in Path(args.path).rglob("*") if f.is_file()) \
        if Path(args.path).is_dir() else 0
    from mindhost.minds import import_model, is_gguf
    if is_gguf(args.path):
        with ui.status(f"converting {Path(args.path).name} to FP16", not args.json):
            record = import_model(args.path, root_dir)
    else:
        with ui.byte_progress(f"import {Path(args.path).name}", total, not args.json) as advance:
            record = store.import_folder(args.path, root_dir, name=args.name, progress=advance)
    with open_image(loc, create=True) as img:
        img.run(store.record_in_image, record, note=f"import model {record['name']}")
    if args.json:
        ui.print_json({k: v for k, v in record.items() if k != "files"})
    else:
        ui.out.print(f"imported {ui.escape(record['name'])} as {record['id']}: {record['params']:,} "
                     f"parameters, {record['dtype']}, {record['size'] / 1e9:.2f} GB "
                     f"-> {ui.escape(record['path'])}")
    return 0


def cmd_list(args):
    with open_image(resolve(args.image), read_only=True) as img, img.view() as root:
        rows = [{k: r[k] for k in ("id", "name", "architecture", "params", "dtype", "size", "path")}
                for r in (root.get(store.MODELS_KEY) or {}).values()]
    if args.json:
        ui.print_json(rows)
    elif not rows:
        ui.out.print("no models recorded yet; import one with `batos model import PATH`")
    else:
        from rich.table import Table
        t = Table("id", "name", "architecture", "params", "dtype", "size")
        for r in rows:
            t.add_row(r["id"], r["name"], r["architecture"], f"{r['params']:,}", str(r["dtype"]),
                      f"{r['size'] / 1e9:.2f} GB")
        ui.out.print(t)
    return 0


def cmd_verify(args):
    with open_image(resolve(args.image), read_only=True) as img, img.view() as root:
        record = dict(store.find(root, args.model))
    store.open_checked(record, full=True)
    if args.json:
        ui.print_json({"id": record["id"], "ok": True, "files": len(record["files"])})
    else:
        ui.out.print(f"{ui.escape(record['name'])} ({record['id']}): all "
                     f"{len(record['files'])} files match the manifest")
    return 0
