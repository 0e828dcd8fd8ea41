"""``batos memory ...`` end to end in subprocesses, and ``:memory`` in the console."""
import json

import memory_docs
from conftest import run_batos


def test_memory_cli_end_to_end(tmp_path):
    docs = memory_docs.write(tmp_path / "docs")
    image = tmp_path / "image"
    first = run_batos("--image", image, "memory", "ingest", "kb", docs, "--json", check=True)
    summary = json.loads(first.stdout)
    assert summary["added"] == len(memory_docs.FILES) and summary["chunks_added"] > 0
    again = json.loads(run_batos("--image", image, "memory", "ingest", "kb", docs, "--json",
                                 check=True).stdout)
    assert again["added"] == 0 and again["unchanged"] == len(memory_docs.FILES)

    unmounted = run_batos("--image", image, "memory", "search", "kb", "yeast")
    assert unmounted.returncode == 2
    assert "not mounted for hermes" in unmounted.stderr and "batos memory mount kb" in unmounted.stderr
    unknown = run_batos("--image", image, "memory", "search", "nope", "yeast")
    assert unknown.returncode == 2 and "no corpus named 'nope'" in unknown.stderr

    mounted = json.loads(run_batos("--image", image, "memory", "mount", "kb", "--json",
                                   check=True).stdout)
    assert mounted["mind"] == "hermes" and mounted["chunks"] == summary["chunks_added"]

    queries = tmp_path / "queries.txt"
    queries.write_text("wild yeast for bread\n\nice flowing downhill\n")
    out = run_batos("--image", image, "memory", "search", "kb", "--queries", queries,
                    "--mode", "vector", "--k", "2", check=True).stdout.splitlines()
    lines = [json.loads(line) for line in out]
    assert [x["query"] for x in lines] == ["wild yeast for bread", "ice flowing downhill"]
    assert lines[0]["results"][0]["source"].endswith("bread.md")
    assert lines[1]["results"][0]["source"].endswith("glacier.rst")
    for row in lines[0]["results"]:
        assert {"source", "score", "text"} <= set(row)

    rows = json.loads(run_batos("--image", image, "memory", "search", "kb", "queen bees honey",
                                "--json", check=True).stdout)
    assert rows[0]["source"].endswith("bees.html") and len(rows) <= 10

    stats = json.loads(run_batos("--image", image, "memory", "stats", "kb", "--json",
                                 check=True).stdout)
    assert stats["mounted_by"] == ["hermes"] and stats["index_current"] is True


def test_console_memory_verbs(folder_image, tmp_path):
    from io import StringIO

    from rich.console import Console as RichConsole

    from batos.console import Console
    docs = memory_docs.write(tmp_path / "docs")
    buf = StringIO()
    console = Console(folder_image, out=RichConsole(file=buf, width=200, highlight=False))
    console.execute(f":memory ingest kb {docs}")
    console.execute(":memory mount kb --mind orai")
    console.execute(":memory search kb 'wild yeast for bread' --mind orai --k 1")
    console.execute(":memory stats")
    console.execute(":memory search nope x")
    text = buf.getvalue()
    assert "6 added" in text and "orai mounted kb" in text
    assert "bread.md" in text and "orai" in text
    assert "no corpus named 'nope'" in text
    console.execute("len(memory.corpora['kb'].chunks)")
    console.close()
