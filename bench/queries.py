"""The labelled query sets of bench/memory.py: loading, the tuning/test split, and leak checks.

A set is ``bench/data/queries/<corpus>*.json``: a list of
``{"kind": "known-item"|"detail"|"paraphrase", "query": ..., "answer": PAGE,
"evidence": ...}``. ``evidence`` (detail queries) is a sentence copied from
the answer page that states the fact; the checks below make sure it is
there, and that no query gives away its answer's wording.

Run ``python bench/queries.py CORPUS_FOLDER SET.json`` to check a set.
"""
import hashlib
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
KINDS = ("known-item", "detail", "paraphrase")
MAX_SHARED_RUN = {"known-item": 4, "detail": 4, "paraphrase": 3}   # words in a row from the page
MAX_OVERLAP = {"paraphrase": 0.5}    # share of the query's content stems found in the page


def split(answer) -> str:
    """'tune' or 'test', by the answer page, so no page is in both halves."""
    return "tune" if hashlib.sha1(answer.encode()).digest()[0] % 2 == 0 else "test"


def load(corpus):
    out = []
    for f in sorted((HERE / "data" / "queries").glob(f"{corpus}*.json")):
        out += json.loads(f.read_text(encoding="utf-8"))
    return out


_WORD = re.compile(r"[A-Za-z0-9_]+")


def _words(text):
    return [w.lower() for w in _WORD.findall(text)]


def _stems(words):
    from zope.index.text.stopdict import get_stopdict

    from memory.lexicon import _stemmer
    stop = get_stopdict()
    return [s for s in _stemmer().stemWords([w for w in words if w not in stop])]


def longest_shared_run(query, page) -> int:
    q, p = _words(query), " " + " ".join(_words(page)) + " "
    best = 0
    for i in range(len(q)):
        for j in range(i + best + 1, len(q) + 1):
            if " " + " ".join(q[i:j]) + " " in p:
                best = j - i
            else:
                break
    return best


def overlap(query, page) -> float:
    qs = set(_stems(_words(query)))
    ps = set(_stems(_words(page)))
    return len(qs & ps) / len(qs) if qs else 1.0


def check(queries, pages) -> list:
    """Problems, one line each (empty when the set is sound)."""
    problems = []
    norm = {k: " ".join(v.split()) for k, v in pages.items()}
    for i, q in enumerate(queries):
        where = f"#{i} {q.get('query', '')[:60]!r}"
        if q.get("kind") not in KINDS or not q.get("query") or q.get("answer") not in pages:
            problems.append(f"{where}: needs kind in {KINDS}, a query, and an answer page that exists")
            continue
        page = pages[q["answer"]]
        name = q["answer"].split(".")[-1] if q["answer"].startswith("numpy") else q["answer"]
        if re.search(rf"\b{re.escape(name)}\b", q["query"], re.I) or q["answer"] in q["query"]:
            problems.append(f"{where}: names its answer ({name})")
        run = longest_shared_run(q["query"], page)
        if run > MAX_SHARED_RUN[q["kind"]]:
            problems.append(f"{where}: copies {run} words in a row from the page")
        if q["kind"] in MAX_OVERLAP and overlap(q["query"], page) > MAX_OVERLAP[q["kind"]]:
            problems.append(f"{where}: {overlap(q['query'], page):.0%} of its words are in the page")
        if q["kind"] == "detail":
            ev = " ".join(str(q.get("evidence", "")).split())
            if len(ev) < 15 or ev not in norm[q["answer"]]:
                problems.append(f"{where}: evidence is not a sentence copied from the page")
    return problems


def main(argv):
    folder, path = Path(argv[0]), Path(argv[1])
    pages = {f.stem: f.read_text(encoding="utf-8") for f in folder.glob("*.txt")}
    queries = json.loads(path.read_text(encoding="utf-8"))
    problems = check(queries, pages)
    for p in problems:
        print(p)
    counts = {k: sum(1 for q in queries if q.get("kind") == k) for k in KINDS}
    print(f"{len(queries)} queries {counts}; {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))
    sys.exit(main(sys.argv[1:]))
