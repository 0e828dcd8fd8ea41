"""``batos``: the command line. Each verb parses and calls an importable function."""
import argparse
import logging
import sys

from image.location import ENV_VAR, default_image_dir

EPILOG = f"""\
The image: --image takes a folder (FileStorage + blobs, the default), 'memory:'
(scratch, gone on exit) or a ZEO address (zeo://HOST:PORT, zeo:///path/socket,
or a socket path). Without --image, ${ENV_VAR} is used, then {default_image_dir()}.

Start here:  batos init        (create the image with the well-known prototypes)
             batos console     (a REPL on the live image)
"""


def _image_arg(p, top=False):
    p.add_argument("--image", metavar="PATH", default=None if top else argparse.SUPPRESS,
                   help=f"image folder, memory: or zeo://... (default: ${ENV_VAR}, "
                        f"then {default_image_dir()})")


def _json_arg(p):
    p.add_argument("--json", action="store_true", help="print data as JSON")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="batos", description="BAT OS: a living image for two local LLM minds.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _image_arg(parser, top=True)
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more log output (-v info, -vv debug)")
    parser.add_argument("--log-json", action="store_true", default=None,
                        help="log one JSON object per line (also: BATOS_LOG_JSON=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def verb(name, func, help, parent=sub, json=False):
        p = parent.add_parser(name, help=help, description=help)
        _image_arg(p)
        if json:
            _json_arg(p)
        p.set_defaults(func=func)
        return p

    from . import image_cmds as ic
    p = verb("init", ic.cmd_init, "create the image (if needed) with the well-known prototypes "
             "and give each mind without a model the bundled SmolLM2 as generation 0; "
             "idempotent", json=True)
    p.add_argument("--no-models", action="store_true",
                   help="prototypes only: import no model (minds answer nothing until "
                        "`batos mind set`)")
    p = verb("console", _console, "open the interactive console on the image")
    p.add_argument("--read-only", action="store_true", help="look, never write")
    p.add_argument("--attach", action="store_true",
                   help="attach to the kernel serving the image (over ZEO); :send then "
                        "queues missions for it")
    p = verb("info", ic.cmd_info, "facts about the image", json=True)
    p.add_argument("--read-only", action="store_true", help="open without taking the write lock")

    snap = sub.add_parser("snapshot", help="named, verifiable copies of the image",
                          description="Named, consistent, verifiable copies of a folder image "
                                      "(records, blobs and a manifest of SHA-256 checksums). "
                                      "Works while another process writes to the image.")
    ssub = snap.add_subparsers(dest="snapshot_command", metavar="ACTION", required=True)
    verb("create", ic.cmd_snapshot_create, "take a snapshot now", ssub, json=True).add_argument("name")
    verb("list", ic.cmd_snapshot_list, "list snapshots, oldest first", ssub, json=True)
    verb("verify", ic.cmd_snapshot_verify, "re-hash every file of a snapshot", ssub,
         json=True).add_argument("name")

    p = verb("restore", ic.cmd_restore, "verify a snapshot and restore it into a folder", json=True)
    p.add_argument("name")
    p.add_argument("--to", required=True, metavar="DIR", help="target folder (must be empty)")
    p.add_argument("--force", action="store_true", help="overwrite image files in a non-empty DIR")

    img = sub.add_parser("image", help="history, packing, repair, serving and copying",
                         description="History, packing, repair, serving of the image, and "
                                     "copying it between storages.")
    isub = img.add_subparsers(dest="image_command", metavar="ACTION", required=True)
    p = verb("at", ic.cmd_image_at, "open the image read-only as of a snapshot (console, or --json)",
             isub, json=True)
    p.add_argument("name", help="snapshot name")
    p = verb("pack", ic.cmd_pack, "drop history older than --keep-days, with its blob files; "
             "snapshots are untouched", isub, json=True)
    p.add_argument("--keep-days", type=float, default=7.0, metavar="N",
                   help="days of history to keep (default 7; 0 keeps only current state)")
    verb("check", ic.cmd_check, "load every record and look for every blob file", isub, json=True)
    p = isub.add_parser(
        "copy", help="copy the image into a new one on any storage, then verify the copy",
        description="Copy every transaction (with its tid), record and blob of SOURCE into "
                    "the new, empty image DESTINATION, through ZODB's copy-transactions path, "
                    "then read both back and compare counts, the last transaction id and a "
                    "SHA-256 of every record and blob. Each is a folder, zeo://... or "
                    "postgresql://USER@HOST:PORT/DBNAME (a missing database is created). The "
                    "source may be in use; the copy stops at its last transaction when the "
                    "copy began. A snapshot folder is a valid SOURCE.")
    p.add_argument("source", metavar="SOURCE")
    p.add_argument("destination", metavar="DESTINATION")
    _json_arg(p)
    p.set_defaults(func=ic.cmd_image_copy)
    verb("recover", ic.cmd_recover, "salvage a damaged Data.fs with ZODB's fsrecover "
         "(the damaged file is kept)", isub)
    p = verb("serve", ic.cmd_serve, "serve the image over ZEO so other processes can attach", isub)
    p.add_argument("--address", help="unix socket path or HOST:PORT (default IMAGE/zeo.sock)")
    verb("info", ic.cmd_info, "facts about the image", isub, json=True).add_argument(
        "--read-only", action="store_true", help="open without taking the write lock")

    model = sub.add_parser("model", help="the content-addressed model store",
                           description="Model folders live in a content-addressed store beside "
                                       "the image (IMAGE/models, or $BATOS_MODELS); the image "
                                       "records each with the SHA-256 of every file.")
    from . import model_cmd
    model_cmd.add_arguments(model.add_subparsers(dest="model_command", metavar="ACTION",
                                                 required=True), verb)

    mem = sub.add_parser("memory", help="the bifocal memory: corpora of prose + vectors",
                         description="Corpora of chunks (prose and embedding together) with "
                                     "text (BM25), vector and hybrid search. A mind searches "
                                     "only the corpora it has mounted.")
    from . import memory_cmd

    def memory_verb(name, func, help, parent, json=False):
        return verb(name, memory_cmd.cli(func), help, parent, json)
    memory_cmd.add_arguments(mem.add_subparsers(dest="memory_command", metavar="ACTION",
                                                required=True), memory_verb)

    from . import mind_cmd
    mind = sub.add_parser("mind", help="the minds' models: show them, point one at real weights",
                          description="Each mind runs a model from the store: Orai its FP16 "
                                      "master, Hermes an 8-bit copy of its FP16 Gold Master.")
    mind_sub = mind.add_subparsers(dest="mind_command", metavar="ACTION", required=True)
    mind_cmd.add_mind_arguments(mind_sub, verb)
    from . import context_cmd
    context_cmd.add_notebook_arguments(verb(
        "notebook", context_cmd.cmd_notebook, "read or edit a mind's notebook: the capped "
        "block of its system prompt where it keeps facts about the owner and the work "
        "(every version kept)", mind_sub, json=True))
    context_cmd.add_context_arguments(verb(
        "context", context_cmd.cmd_context, "show exactly what a chat mission for a request "
        "would send to a mind: identity, notebook, recalled past exchanges with their dates, "
        "corpus memory, and each part's source and tokens (the PSM's own path)", json=True))
    p = verb("ask", mind_cmd.cmd_ask, "send one prompt straight to a mind's deployed runtime "
             "and stream the answer (no kernel needed)")
    mind_cmd.add_ask_arguments(p)
    p = verb("engines", mind_cmd.cmd_engines, "the inference engines and whether this host runs "
             "them", json=True)

    from . import kernel_cmd
    p = verb("kernel", kernel_cmd.cmd_kernel,
             "run the kernel: serve a folder image over ZEO (a postgresql:// one needs no "
             "server), run missions from the queue, the heartbeat, the night and the "
             "OpenAI-compatible HTTP API; with --runner, only claim and run missions, on "
             "any machine that reaches the image; SIGTERM stops it cleanly")
    kernel_cmd.add_kernel_arguments(p)
    p = verb("api-token", kernel_cmd.cmd_api_token, "print the HTTP API's bearer token "
             "(IMAGE/api-token, mode 0600)")
    p.add_argument("--rotate", action="store_true", help="make a new token (restart the kernel)")
    p = verb("missions", kernel_cmd.cmd_missions, "recent missions and their states, and the "
             "kernel and runners running them (when each was last seen)", json=True)
    p.add_argument("-n", type=int, default=20, help="how many (default 20)")

    from . import night_cmd
    ledger = sub.add_parser("ledger", help="each mind's record of exchanges",
                            description="Each mind's ledger: every exchange as a bifocal "
                                        "packet (prose + embedding + signals).")
    ledger_sub = ledger.add_subparsers(dest="ledger_command", metavar="ACTION", required=True)
    night_cmd.add_arguments(sub, verb, ledger_sub)
    context_cmd.add_prune_arguments(verb(
        "prune", context_cmd.cmd_prune, "forget exchanges from a mind's ledger and recall: "
        "older than some days (good-rated ones kept unless --forget-good), or rated bad",
        ledger_sub, json=True))
    context_cmd.add_reindex_arguments(verb(
        "reindex", context_cmd.cmd_reindex, "make a mind's recall index again from its whole "
        "ledger (after a lost or damaged index blob; the ledger itself is the truth)",
        ledger_sub, json=True))

    report = sub.add_parser("report", help="measurements: what quantization costs and buys "
                            "(Q8 weights, a quantized KV cache at long context)",
                            description="Measurements the owner asked for, as tables and PNG plots.")
    rsub = report.add_subparsers(dest="report_command", metavar="ACTION", required=True)
    from . import report_cmd
    report_cmd.add_arguments(verb("quant", report_cmd.cmd_quant,
                                  "KL divergence and top-1 agreement of a mind's Q8 runtime "
                                  "against its FP16 master, memory saved and speed ratio",
                                  rsub, json=True))
    report_cmd.add_context_arguments(verb(
        "context", report_cmd.cmd_context,
        "long context, weights (FP16 master, Q8 runtime) x KV cache (fp16, q8, q4): KL and "
        "top-1 agreement against FP16 + fp16 KV on real text, needle recall over lengths x "
        "depths, tokens/s, and the KV bytes held against the planner", rsub, json=True))

    from . import plan_cmd
    p = sub.add_parser("plan", help="memory budget for both minds: weights, KV cache, headroom",
                       description="Memory budget for both minds: weights at a precision, KV cache "
                                   "per token and at a context (GQA-aware), embedder, OS reserve, "
                                   "and the headroom on the machine. Exit 1 if it does not fit. "
                                   "Sizes: 512G = 512 GiB; output in GB (10^9 bytes).")
    plan_cmd.add_arguments(p)
    p.set_defaults(func=plan_cmd.cmd_plan)

    guard = sub.add_parser("guard", help="the guardians that vet generated code",
                           description="Run the guardians (security + persistence covenant).")
    gsub = guard.add_subparsers(dest="guard_command", metavar="ACTION", required=True)
    from .guard_cmd import cmd_guard_check
    p = gsub.add_parser("check", help="vet method source files: exit 0 accepted, 1 rejected",
                        description="Vet method source files. Exit 0 when every file is "
                                    "accepted, 1 when any is rejected; every reason is printed "
                                    "with its rule and line.")
    p.add_argument("files", nargs="+", metavar="FILE")
    _json_arg(p)
    p.set_defaults(func=cmd_guard_check)
    return parser


def _console(args):
    from image import open_image, resolve
    from kernel.schema import bootstrap

    from .console import Console
    from .image_cmds import show_notes
    loc = resolve(args.image)
    if args.attach and not loc.through_server:
        loc = _kernel_address(loc)
    img = open_image(loc, create=not args.read_only, read_only=args.read_only)
    with img:
        show_notes(img)
        if not args.read_only:
            bootstrap(img)
        return Console(img).run()


def _kernel_address(loc):
    from image import ImageError, resolve
    from image.storage import serving_address
    addr = serving_address(loc) if loc.is_folder else None
    if not addr:
        raise ImageError(f"no kernel serves the image at {loc}; start one with "
                         f"`batos kernel --image {loc}` (or open the console without --attach)")
    return resolve("zeo://" + addr)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    from kernel import logs
    logs.setup(("WARNING", "INFO", "DEBUG")[min(args.verbose, 2)], args.log_json)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from guardians import GuardianRejection
    from image import ImageError
    from prototypes import SlotError
    try:
        return args.func(args)
    except (ImageError, GuardianRejection, SlotError, ValueError) as e:   # PlanError too
        from rich.markup import escape

        from . import ui
        ui.err.print(f"[red]error:[/] {escape(str(e))}", highlight=False)
        logging.getLogger("batos").debug("failed", exc_info=True)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
