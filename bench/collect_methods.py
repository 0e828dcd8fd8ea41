"""Collect methods the bundled model writes for the prompts self-extension sends.

For each scenario (an object with slots, and a call it does not understand)
this builds the real self-extension prompt (``kernel.extend.build_prompt``),
asks the bundled SmolLM2-135M-Instruct (greedy, and once more sampled), pulls
the method out of the answer the way self-extension does, and writes every
answer to ``tests/data/model_methods.json``. The guardians' benign-corpus test
(``tests/test_isolation.py``) runs them: each must be accepted, and return
what the same source returns as plain Python.

    python bench/collect_methods.py            # ~10 minutes on 2 CPU cores
"""
import argparse
import json
import logging
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

OUT = pathlib.Path(__file__).resolve().parents[1] / "tests" / "data" / "model_methods.json"

# (object name, slots, selector, args)
SCENARIOS = [
    ("calc", {"base": 10}, "double", [21]),
    ("calc", {"base": 10}, "add", [2, 3]),
    ("calc", {"base": 10}, "square", [7]),
    ("calc", {"base": 10}, "is_even", [4]),
    ("calc", {"base": 10}, "factorial", [5]),
    ("calc", {"base": 10}, "fibonacci", [10]),
    ("calc", {"base": 10}, "average", [[1, 2, 3, 4]]),
    ("calc", {"base": 10}, "percent", [50, 200]),
    ("calc", {"base": 10}, "clamp", [15, 0, 10]),
    ("calc", {"base": 10}, "gcd", [12, 18]),
    ("calc", {"base": 10}, "add_base", [5]),
    ("calc", {"base": 10}, "power", [2, 10]),
    ("calc", {"base": 10}, "sum_of_squares", [10]),
    ("calc", {"base": 10}, "is_prime", [13]),
    ("calc", {"base": 10}, "maximum", [[3, 9, 2]]),
    ("notes", {"items": ["milk", "eggs"]}, "add_note", ["bread"]),
    ("notes", {"items": ["milk", "eggs"]}, "count_notes", []),
    ("notes", {"items": ["milk", "eggs"]}, "last_note", []),
    ("notes", {"items": ["milk", "eggs"]}, "has_note", ["milk"]),
    ("notes", {"items": ["milk", "eggs"]}, "sorted_notes", []),
    ("notes", {"items": ["milk", "eggs"]}, "remove_note", ["milk"]),
    ("notes", {"items": ["milk", "eggs"]}, "join_notes", [", "]),
    ("notes", {"items": ["milk", "eggs"]}, "clear_notes", []),
    ("notes", {"items": ["milk", "eggs"]}, "first_note", []),
    ("counter", {"counts": {"a": 2}}, "bump", ["x"]),
    ("counter", {"counts": {"a": 2}}, "total", []),
    ("counter", {"counts": {"a": 2}}, "get_count", ["a"]),
    ("counter", {"counts": {"a": 2}}, "reset", []),
    ("counter", {"counts": {"a": 2, "b": 5}}, "most_common", []),
    ("text", {"text": "Hello world"}, "word_count", []),
    ("text", {"text": "Hello world"}, "reverse_text", []),
    ("text", {"text": "Hello world"}, "shout", []),
    ("text", {"text": "Hello world"}, "count_vowels", []),
    ("text", {"text": "Hello world"}, "char_frequency", []),
    ("text", {"text": "Hello world"}, "is_palindrome", ["abba"]),
    ("text", {"text": "Hello world"}, "truncate", [5]),
    ("text", {"text": "Hello world"}, "slugify", ["Hello World Again"]),
    ("text", {"text": "Hello world"}, "words", []),
    ("text", {"text": "Hello world"}, "capitalize_words", []),
    ("dates", {"today": "2024-05-17"}, "days_between", ["2024-01-01", "2024-03-01"]),
    ("dates", {"today": "2024-05-17"}, "weekday", ["2024-05-17"]),
    ("dates", {"today": "2024-05-17"}, "year_of", ["2024-05-17"]),
    ("data", {"records": [{"n": 1}, {"n": 2}]}, "to_json", [{"a": 1}]),
    ("data", {"records": [{"n": 1}, {"n": 2}]}, "parse_json", ['{"a": 1}']),
    ("data", {"records": [{"n": 1}, {"n": 2}]}, "sum_field", ["n"]),
    ("data", {"records": [{"n": 1}, {"n": 2}]}, "count_records", []),
    ("data", {"records": [{"n": 1}, {"n": 2}]}, "add_record", [{"n": 3}]),
    ("stats", {"values": [3, 1, 4, 1, 5]}, "mean", []),
    ("stats", {"values": [3, 1, 4, 1, 5]}, "median", []),
    ("stats", {"values": [3, 1, 4, 1, 5]}, "spread", []),
    ("stats", {"values": [3, 1, 4, 1, 5]}, "unique_values", []),
    ("finder", {"text": "a1b22c333"}, "find_numbers", []),
    ("finder", {"text": "a1b22c333"}, "find_emails", ["x@y.com and z@w.org"]),
    ("shop", {"stock": {"apple": 3}}, "add_stock", ["apple", 2]),
    ("shop", {"stock": {"apple": 3}}, "remove_stock", ["apple", 1]),
    ("shop", {"stock": {"apple": 3}}, "in_stock", ["pear"]),
    ("shop", {"stock": {"apple": 3, "pear": 1}}, "total_items", []),
    ("greeter", {"greeting": "Hello"}, "greet", ["Bob"]),
    ("greeter", {"greeting": "Hello"}, "farewell", ["Ann"]),
    ("grid", {"cells": [0, 0, 0]}, "fill", [7]),
    ("grid", {"cells": [0, 0, 0]}, "bump_cell", [1]),
]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=pathlib.Path, default=OUT)
    ap.add_argument("--max-tokens", type=int, default=220)
    ap.add_argument("--limit", type=int, default=None, help="only the first N scenarios")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    collect(args.out, args.max_tokens, args.limit)


def collect(out, max_tokens, limit=None):
    import tempfile

    from rich.progress import track

    from image import open_image
    from kernel import extend
    from kernel.schema import bootstrap
    from mindhost.engines import get_engine
    from mindhost.minds import bundled_gguf, import_model
    from prototypes import Message, UvmObject

    store = pathlib.Path(tempfile.mkdtemp()) / "models"
    master = import_model(bundled_gguf(), store)
    model = get_engine("torch").load(master["path"])
    img = open_image("memory:")
    bootstrap(img)
    settings = None
    rows = []
    scenarios = SCENARIOS[:limit] if limit else SCENARIOS
    for name, slots, selector, call_args in track(scenarios, description="asking the model"):
        with img.transaction() as conn:
            root = conn.root()
            obj = UvmObject(**{"name": name, "parent*": root["traits"], **slots})
            root[name] = obj
            settings = extend.settings_of(obj)
            message = Message(obj, selector, obj.lookup_chain(), call_args, {})
            prompt = extend.build_prompt(message, settings)
            ident = root["hermes"].identity if "hermes" in root else ""
        for temperature in (0.0, 0.7):
            messages = [{"role": "system", "content": ident}, {"role": "user", "content": prompt}]
            t = time.perf_counter()
            answer = "".join(model.stream(messages, max_tokens=max_tokens,
                                          temperature=temperature))
            source, why = extend.extract(answer, selector)
            rows.append({"object": name, "slots": slots, "selector": selector, "args": call_args,
                         "temperature": temperature, "answer": answer, "source": source,
                         "why": why, "seconds": round(time.perf_counter() - t, 2)})
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"model": "SmolLM2-135M-Instruct (bundled)",
                               "prompt_rules": settings["rules"] if settings else "",
                               "answers": rows}, indent=1) + "\n")
    got = sum(1 for r in rows if r["source"])
    print(f"{len(rows)} answers, {got} with a method, written to {out}")


if __name__ == "__main__":
    main()
