"""Curation and transcript import, on a real image with a real (tiny) embedder."""
import json

import pytest
from conftest import batos_env, run_batos

from image.keys import new_key
from memory.ledger import Exchange
from night.curate import curate, write_dataset
from night.redact import redact
from night.transcripts import TranscriptError, import_transcripts


@pytest.fixture(scope="module")
def embedder():
    """The bundled all-MiniLM-L6-v2: near-duplicates need real semantics."""
    from memory.embed import get_embedder
    return get_embedder()


def day(img, embedder, mind, turns, start=1_800_000_000.0):
    """Record ``turns`` = [(prompt, answer, signals)] a minute apart; return their keys."""
    vecs = embedder.encode([f"{p}\n{a}" for p, a, _ in turns])
    keys = []
    with img.transaction() as conn:
        for i, ((p, a, sig), v) in enumerate(zip(turns, vecs)):
            ex = Exchange(mind, p, a, v.astype("<f4").tobytes(), start + 60 * i, signals=sig)
            keys.append(new_key(ex.time))
            conn.root()[mind].ledger[keys[-1]] = ex
    return keys


def decisions(cur):
    return {r.prompt: (r.decision, r.score) for r in cur.rows}


def test_signals_score_each_exchange_and_noise_goes(folder_image, embedder):
    img = folder_image
    day(img, embedder, "hermes", [
        ("What is the capital of France?", "Paris, sir.", {"rating": "good"}),
        ("Explain tides briefly", "The moon pulls the sea.", {}),
        ("thanks, perfect", "You are welcome, sir.", {}),          # approves the one before
        ("What is 2+2?", "It is 5.", {"rating": "bad", "note": "it is 4"}),
        ("Name a primary colour", "Green is one.", {}),
        ("No, that's wrong", "Red is one, sir.", {"rating": "good"}),   # corrects the one before
        ("ok", "Very well, sir.", {"rating": "good"}),
        ("Who wrote Hamlet?", "Shakespeare", {"rating": "good"}),      # one word
    ])
    with img.view() as root:
        cur = curate(root, "hermes")
    d = decisions(cur)
    assert d["What is the capital of France?"] == ("kept", 3.0)
    assert d["Explain tides briefly"] == ("kept", 1.0)                # approved next turn
    assert d["What is 2+2?"][0] == "dropped: score under threshold"
    assert d["Name a primary colour"] == ("dropped: score under threshold", -2.0)
    assert d["No, that's wrong"][0] == "kept"
    assert d["ok"][0] == "dropped: acknowledgement"
    assert d["Who wrote Hamlet?"][0] == "dropped: answer too short"
    row = next(r for r in cur.rows if r.prompt == "What is 2+2?")
    assert row.reasons == ["rated bad (it is 4)"]
    ex = cur.examples[0]["messages"]
    with img.view() as root:
        assert ex[0] == {"role": "system", "content": root["hermes"].identity}     # anchored
    assert [m["role"] for m in ex] == ["system", "user", "assistant"]


def test_requery_near_duplicates_and_redaction(folder_image, embedder):
    img = folder_image
    day(img, embedder, "hermes", [
        ("What is the capital of France?", "It is Lyon.", {}),
        ("What is the capital of France?", "Paris is the capital.", {"rating": "good"}),
        ("What is the capital of France?", "Paris is the capital.", {"rating": "good"}),
        ("Mail me at bob@example.com", "Noted: bob@example.com, key sk-abcdefghijklmnopqrstuv1234",
         {"rating": "good"}),
    ])
    with img.view() as root:
        cur = curate(root, "hermes")
    reasons = [r.reasons for r in cur.rows]
    assert "asked again next turn" in reasons[0]
    kinds = sorted(r.decision for r in cur.rows)
    assert kinds.count("dropped: near-duplicate") == 1 and kinds.count("kept") == 2
    text = json.dumps(cur.examples)
    assert "bob@example.com" not in text and "[REDACTED:EMAIL]" in text
    assert "sk-abc" not in text and cur.redactions == {"EMAIL": 2, "API_KEY": 1}


def test_each_mind_scores_from_its_own_perspective(folder_image, embedder):
    img = folder_image
    turns = [("Tell me about tides", "The moon pulls the sea.", {"rating": "good"}),
             ("Tell me about tides", "Tides follow the moon.", {"rating": "good"})]
    day(img, embedder, "hermes", turns)
    day(img, embedder, "orai", turns)
    with img.view() as root:
        h, o = curate(root, "hermes"), curate(root, "orai")
    assert h.rows[0].score == 3.0 - 1.5 and o.rows[0].score == 3.0 - 1.0   # re-query costs
    with img.transaction() as conn:                # settings live in the mind's own slot
        from persistent.mapping import PersistentMapping
        conn.root()["orai"].curation = PersistentMapping({"threshold": 5.0})
    with img.view() as root:
        assert {r.decision for r in curate(root, "orai").rows} == {"dropped: score under threshold"}


def test_replay_buffer_mixes_in_golden_examples(folder_image, embedder):
    img = folder_image
    old = day(img, embedder, "hermes", [(f"Old question {i}?", f"Old answer number {i}.",
                                         {"golden": 1}) for i in range(10)], start=1.7e9)
    with img.transaction() as conn:
        conn.root()["hermes"].generation = 1
    day(img, embedder, "hermes", [(f"New question {i}?", f"New answer number {i}.",
                                   {"rating": "good"}) for i in range(17)])
    with img.view() as root:
        cur = curate(root, "hermes", since=old[-1])
    replay = [r for r in cur.rows if r.decision == "replay"]
    assert len(replay) == 3 and len(cur.examples) == 20           # 3/20 = 15%
    assert all(r.key in old for r in replay) and cur.generation == 2


def test_dataset_is_chat_jsonl_with_a_card(folder_image, embedder, tmp_path):
    img = folder_image
    day(img, embedder, "hermes", [(f"Question {i}?", f"Answer number {i}, sir.",
                                   {"rating": "good"}) for i in range(10)])
    with img.view() as root:
        cur = curate(root, "hermes")
    out = write_dataset(cur, tmp_path / "gen-1")
    train = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    valid = [json.loads(line) for line in (out / "valid.jsonl").read_text().splitlines()]
    assert len(train) == 9 and len(valid) == 1 and train[0]["messages"][1]["role"] == "user"
    card = json.loads((out / "card.json").read_text())
    assert card["examples"] == 10 and card["counts"] == {"kept": 10}
    assert "near-duplicates" in (out / "card.md").read_text()
    assert not (tmp_path / "gen-1.partial").exists()


def test_transcripts_import_both_formats_with_ratings(folder_image, embedder, tmp_path):
    img = folder_image
    f = tmp_path / "chats.jsonl"
    f.write_text("\n".join(json.dumps(x) for x in [
        {"messages": [{"role": "system", "content": "be brief"},
                      {"role": "user", "content": "Hi"},
                      {"role": "assistant", "content": "Good evening, sir.", "rating": "good"},
                      {"role": "user", "content": "Weather?"},
                      {"role": "assistant", "content": "Rain, sir."}]},
        {"conversations": [{"from": "human", "value": "Time?"}, {"from": "gpt", "value": "Noon."}],
         "rating": "bad"},
    ]) + "\n")
    assert import_transcripts(img, "hermes", f, embedder) == 3
    with img.view() as root:
        got = [(e.prompt, e.signals.get("rating")) for e in root["hermes"].ledger.values()]
        assert got == [("Hi", "good"), ("Weather?", None), ("Time?", "bad")]
        assert all(len(e.vector) == 384 * 4 for e in root["hermes"].ledger.values())


def test_a_bad_transcript_imports_nothing(folder_image, embedder, tmp_path):
    img = folder_image
    f = tmp_path / "bad.jsonl"
    f.write_text('{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", '
                 '"content": "Hello"}]}\nnot json\n{"turns": []}\n'
                 '{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", '
                 '"content": "y", "rating": "meh"}]}\n')
    with pytest.raises(TranscriptError) as e:
        import_transcripts(img, "hermes", f, embedder)
    msg = str(e.value)
    assert "3 bad lines" in msg and "line 2" in msg and "line 3" in msg and "line 4" in msg
    assert "nothing was imported" in msg
    with img.view() as root:
        assert len(root["hermes"].ledger) == 0


def test_redaction_keeps_numbers_that_are_not_personal():
    counts = {}
    text = redact("card 4111 1111 1111 1111, order 1234 5678 9012 3456, call (415) 555-0132, "
                  "at 2026-11-21 10:40, pi 3.14159", counts)
    assert "4111" not in text and "555-0132" not in text
    assert "1234 5678 9012 3456" in text and "2026-11-21 10:40" in text and "3.14159" in text
    assert counts == {"CARD": 1, "PHONE": 1}


def test_cli_import_then_curate(tmp_path):
    env = batos_env(tmp_path, BATOS_IMAGE=str(tmp_path / "image"))
    run_batos("init", "--no-models", env=env, check=True)
    f = tmp_path / "past.jsonl"
    topics = ["the tides", "volcanoes", "bread baking", "chess openings", "jazz history",
              "black holes"]
    f.write_text("\n".join(json.dumps({"messages": [
        {"role": "user", "content": f"Tell me about {t}."},
        {"role": "assistant", "content": f"At your service, sir: a word on {t}."}],
        "rating": "good"}) for t in topics))
    out = json.loads(run_batos("ledger", "import", "hermes", f, "--json", env=env,
                               check=True).stdout)
    assert out["imported"] == 6
    dry = json.loads(run_batos("curate", "hermes", "--dry-run", "--json", env=env,
                               check=True).stdout)
    assert dry["out"] is None and dry["card"]["examples"] == 6
    assert not (tmp_path / "image" / "dream").exists()
    done = json.loads(run_batos("curate", "hermes", "--json", env=env, check=True).stdout)
    assert done["out"].endswith("dream/hermes/gen-1")
    assert (tmp_path / "image" / "dream" / "hermes" / "gen-1" / "train.jsonl").exists()
    shown = run_batos("ledger", "show", "hermes", "-n", "2", env=env, check=True).stdout
    assert "rating=good" in shown
    bad = run_batos("ledger", "import", "hermes", tmp_path / "missing.jsonl", env=env)
    assert bad.returncode == 2 and "cannot read" in bad.stderr
