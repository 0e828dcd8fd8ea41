"""``batos guard check FILE...``: run the guardians over method source files."""
from pathlib import Path

from guardians import vet

from . import ui


def check_file(path) -> dict:
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        return {"file": str(p), "accepted": False,
                "reasons": [{"rule": "unreadable", "line": None, "message": str(e)}]}
    try:
        source = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return {"file": str(p), "accepted": False,
                "reasons": [{"rule": "syntax", "line": None,
                             "message": f"not UTF-8 text (byte {e.start}); method source must be Python text"}]}
    verdict = vet(source, name=p.stem)
    return {"file": str(p)} | verdict.as_dict()


def cmd_guard_check(args):
    results = [check_file(f) for f in args.files]
    if args.json:
        ui.print_json(results if len(results) > 1 else results[0])
    else:
        for r in results:
            if r["accepted"]:
                ui.out.print(f"[green]accepted[/] {r['file']}")
            else:
                ui.out.print(f"[red]rejected[/] {r['file']}")
                for reason in sorted(r["reasons"], key=lambda x: x["line"] or 0):
                    where = f"line {reason['line']}: " if reason["line"] else ""
                    ui.out.print(f"  {where}{reason['message']} [dim]\\[{reason['rule']}][/]")
    return 0 if all(r["accepted"] for r in results) else 1
