"""Recall of a mind's own past: indexing as recorded, dates, imports with timestamps, pruning."""
import datetime as dt
import json

import numpy as np
import pytest

from memory import ledger, recall, recall_search
from memory.dates import named_days
from memory.embed import get_embedder
from night.transcripts import TranscriptError, import_transcripts, read_transcripts

FACTS = [
    ("My cat is called Pixel and she is grey.", "A grey cat named Pixel, lovely."),
    ("We moved the SQL schema to version two.", "Schema v2 it is."),
    ("I hate the colour blue.", "No blue, noted."),
    ("My sister lives in Lisbon.", "Lisbon is beautiful."),
    ("The deploy script is in tools/ship.sh.", "Got it: tools/ship.sh."),
]


def put(img, items, when=None):
    emb = get_embedder()
    keys = []
    for i, (p, a) in enumerate(items):
        ex = ledger.packet(emb, "hermes", p, a, when=(when + i * 60) if when else None)
        keys.append(img.run(ledger.record, ex))
    return keys


def found(img, query, **kw):
    with img.view() as root:
        return [r.exchange.prompt for r in recall_search.find(img, root, "hermes", query, **kw)]


def test_an_exchange_is_recallable_from_its_commit_and_after_indexing(mem_image):
    keys = put(mem_image, FACTS)
    with mem_image.view() as root:
        idx = recall.index_of(root, "hermes")
        assert set(idx.pending) == set(keys) and len(idx.segments) == 0
    assert found(mem_image, "what is my cat's name?")[0] == FACTS[0][0]
    assert found(mem_image, "where does my sister live")[0] == FACTS[3][0]
    assert recall.flush(mem_image, "hermes", at_least=1) == len(FACTS)
    with mem_image.view() as root:
        idx = recall.index_of(root, "hermes")
        assert len(idx.pending) == 0 and len(idx.segments) == 1 and len(idx.docid_of) == 5
    assert found(mem_image, "what is my cat's name?")[0] == FACTS[0][0]
    # below the threshold nothing moves; the new exchange is found all the same
    put(mem_image, [("Our wifi password is on the fridge.", "Fridge, noted.")])
    assert recall.flush(mem_image, "hermes") == 0
    assert found(mem_image, "where is the wifi password")[0] == "Our wifi password is on the fridge."


def test_many_flushes_compact_and_change_no_result(mem_image):
    for i in range(12):          # twelve segments: past MAX_SEGMENTS, so compaction merges
        put(mem_image, [(f"Note {i}: the locker code is {1000 + i}.", f"Code {1000 + i}.")])
        recall.flush(mem_image, "hermes", at_least=1)
    put(mem_image, FACTS)
    before = found(mem_image, "what is my cat's name?", k=20)
    recall.flush(mem_image, "hermes", at_least=1)
    with mem_image.view() as root:
        assert len(recall.index_of(root, "hermes").segments) <= 8
    assert found(mem_image, "what is my cat's name?", k=20) == before
    assert found(mem_image, "locker code 1007")[0] == "Note 7: the locker code is 1007."


def test_pruning_forgets_by_age_and_rating_and_recall_follows(mem_image):
    old = put(mem_image, FACTS[:2], when=1_600_000_000)
    new = put(mem_image, FACTS[2:])
    recall.flush(mem_image, "hermes", at_least=1)
    mem_image.run(ledger.rate, "hermes", old[1], "good")
    mem_image.run(ledger.rate, "hermes", new[0], "bad")
    gone = mem_image.run(lambda root: ledger.prune(root, "hermes", before=1_700_000_000))
    assert gone == [old[0]]                       # the good one survives age
    gone = mem_image.run(lambda root: ledger.prune(root, "hermes", rating="bad"))
    assert gone == [new[0]]
    hits = found(mem_image, "cat named Pixel grey", k=10)
    assert FACTS[0][0] not in hits and FACTS[2][0] not in hits and FACTS[1][0] in hits
    with pytest.raises(ValueError, match="say what to prune"):
        mem_image.run(lambda root: ledger.prune(root, "hermes"))


def test_days_named_in_a_request():
    now = dt.datetime(2023, 5, 10, 15).timestamp()
    d = dt.date
    assert named_days("On May 4th, what did I say?", now) == [d(2023, 5, 4)]
    assert named_days("what about 2023-04-29 and April 27th", now) == [d(2023, 4, 29), d(2023, 4, 27)]
    assert named_days("yesterday", now) == [d(2023, 5, 9)]
    assert named_days("the 3rd of June", now) == [d(2022, 6, 3)]       # latest one not after now
    assert named_days("last Monday", now) == [d(2023, 5, 8)]
    assert named_days("what is 4 plus 5", now) == [] and named_days("May I ask?", now) == []


def test_the_named_day_comes_first(mem_image):
    base = dt.datetime(2023, 5, 4, 12).timestamp()
    put(mem_image, [("I went to the museum and saw a Monet exhibition.", "Lovely.")], when=base)
    put(mem_image, [(f"I went to the museum again, day {i}.", "Nice.") for i in range(6)],
        when=base + 2 * 86400)
    now = base + 6 * 86400
    hits = found(mem_image, "On May 4th I went to the museum: which exhibition?", now=now)
    assert hits[0] == "I went to the museum and saw a Monet exhibition."


def test_import_reads_timestamps_and_keeps_curation_order(mem_image, tmp_path):
    f = tmp_path / "t.jsonl"
    f.write_text("\n".join(json.dumps(x) for x in [
        {"messages": [{"role": "user", "content": "I planted tomatoes.",
                       "timestamp": "2024-03-01T09:00:00Z"},
                      {"role": "assistant", "content": "Good luck with them."}]},
        {"timestamp": "1710000000", "conversations": [
            {"from": "human", "value": "The tomatoes sprouted."}, {"from": "gpt", "value": "Great."}]},
        {"messages": [{"role": "user", "content": "No time here."},
                      {"role": "assistant", "content": "Fine."}]}]) + "\n")
    assert import_transcripts(mem_image, "hermes", f, get_embedder()) == 3
    with mem_image.view() as root:
        items = list(root["hermes"].ledger.items())
        times = [ex.time for _, ex in items]
        assert [ex.prompt for _, ex in items] == ["I planted tomatoes.", "The tomatoes sprouted.",
                                                  "No time here."]     # keys in file order
        assert times[0] == dt.datetime(2024, 3, 1, 9, tzinfo=dt.timezone.utc).timestamp()
        assert times[1] == 1710000000 and times[2] > 1.7e9
        assert len(recall.index_of(root, "hermes").pending) == 0       # indexed at the end
    assert found(mem_image, "what did I plant")[0] == "I planted tomatoes."


@pytest.mark.parametrize("stamp", ['"last tuesday"', "true", '"2024-13-01"', "1710000000000"])
def test_a_bad_timestamp_names_its_line_and_imports_nothing(tmp_path, stamp):
    f = tmp_path / "t.jsonl"
    f.write_text('{"messages": [{"role": "user", "content": "hi"}, '
                 '{"role": "assistant", "content": "hello"}]}\n'
                 f'{{"timestamp": {stamp}, "messages": [{{"role": "user", "content": "a"}}, '
                 '{"role": "assistant", "content": "b"}]}\n')
    with pytest.raises(TranscriptError, match="line 2: timestamp"):
        read_transcripts(f)


def test_a_ledger_of_another_embedder_is_ranked_by_text(mem_image, tiny_st_model):
    from memory.embed import Embedder
    small = Embedder(tiny_st_model)
    for p, a in FACTS:
        mem_image.run(ledger.record, ledger.packet(small, "hermes", p, a))
    with mem_image.view() as root:
        hits = recall_search.find(mem_image, root, "hermes", "my sister Lisbon")      # 384-d query
        assert hits[0].exchange.prompt == FACTS[3][0]
        hits = recall_search.find(mem_image, root, "hermes", "my sister Lisbon", embedder=small)
        assert FACTS[3][0] in [h.exchange.prompt for h in hits]
    assert recall.flush(mem_image, "hermes", at_least=1) == 5
    with mem_image.view() as root:
        assert recall.index_of(root, "hermes").dim == 32
        data = recall_search.view(mem_image, root, "hermes")
        assert data.dim == 32 and np.isfinite(data.segs[0].cosines(np.ones(32, np.float32))).all()


def test_an_image_from_before_recall_is_upgraded_and_indexed(mem_image):
    from BTrees.OOBTree import OOBTree

    from kernel.schema import bootstrap
    keys = put(mem_image, FACTS[:3])

    def older(root):          # as an image made before recall: no tables, exchanges unmarked
        for t in ("recall", "notebooks", "summaries"):
            root["memory"].remove_slot(t)
        root["hermes"].set_slot("ledger", OOBTree({k: v for k, v in root["hermes"].ledger.items()}))
    mem_image.run(older)
    with mem_image.view() as root:
        assert recall.index_of(root, "hermes") is None
    bootstrap(mem_image)
    with mem_image.view() as root:
        assert set(recall.index_of(root, "hermes").pending) == set(keys)
    assert found(mem_image, "what is my cat's name?")[0] == FACTS[0][0]
    assert recall.flush(mem_image, "hermes", at_least=1) == len(keys)
    assert found(mem_image, "what is my cat's name?")[0] == FACTS[0][0]


def test_a_lost_segment_blob_costs_recall_not_the_answer_and_reindex_restores_it(
        folder_image, caplog):
    from pathlib import Path

    from kernel.context import gather
    from memory.recall import reindex
    put(folder_image, FACTS)
    recall.flush(folder_image, "hermes", at_least=1)
    recall_search._cache.clear()
    with folder_image.view() as root:
        blob = recall.index_of(root, "hermes").segments[0]["blob"]
        Path(blob.committed()).unlink()
    with folder_image.view() as root:
        g = gather(folder_image, root, "hermes", "what is my cat's name?")
    assert g.recalled == [] and "batos ledger reindex hermes" in caplog.text
    assert reindex(folder_image, "hermes") == len(FACTS)
    assert found(folder_image, "what is my cat's name?")[0] == FACTS[0][0]


@pytest.mark.parametrize("request_, fact", [
    ("Remember that I hate the colour blue.", "I hate the colour blue"),
    ("Please remember that I hate blue. Thanks!", "I hate blue"),
    ("Hi. From now on, answer in French.", "From now on, answer in French"),
    ("Note: the build runs on Fridays", "The build runs on Fridays"),
    ("Don't forget my birthday is on 3 March.", "My birthday is on 3 March"),
    ("Do you remember what I said?", None),                 # questions are never notes
    ("Please note that the file is big, can you compress it?", None),
    ("I remember that day.", None),
    ("Remember what?", None),
])
def test_what_the_owner_asks_to_remember(request_, fact):
    from memory.notebook import cue
    assert cue(request_) == fact


def test_recall_bm25_equals_zope_index_okapi_over_segments_pending_and_pruned(mem_image):
    """The ranker's BM25 is written again over segment arrays: it must score every live
    exchange exactly as zope.index's OkapiIndex does over the same texts."""
    from zope.index.text.okapiindex import OkapiIndex
    from zope.index.text.setops import mass_weightedUnion

    from memory.lexicon import make_lexicon
    keys = put(mem_image, FACTS)
    recall.flush(mem_image, "hermes", at_least=1)                     # a segment
    keys += put(mem_image, [("The garden gate squeaks; my cat Pixel hates it.", "Oil it."),
                            ("Pixel sleeps in the garden.", "Cats do.")])   # pending

    def prune_one(root):              # as ledger.prune does it, for one exchange
        del root["hermes"].ledger[keys[0]]
        recall.forget(root, "hermes", [keys[0]])
    mem_image.run(prune_one)
    live = [k for k in keys if k != keys[0]]
    index = OkapiIndex(make_lexicon())
    with mem_image.view() as root:
        for i, k in enumerate(live, 1):
            index.index_doc(i, recall.exchange_text(root["hermes"].ledger[k]))
        data = recall_search.view(mem_image, root, "hermes")
        rows = {str(data.segs[j].keys[r]): (j, r) for j in range(len(data.segs))
                for r in range(len(data.segs[j]))}
        offsets = np.cumsum([0] + [len(s) for s in data.segs])
        for query in ("cat Pixel garden", "colour blue", "sister Lisbon", "gate"):
            ours = data.bm25(query)
            wids = [w for w in index._lexicon.termToWordIds(query) if w]
            theirs = mass_weightedUnion(index._search_wids(wids), index.family)
            assert len(theirs) > 0
            for i, k in enumerate(live, 1):
                j, r = rows[k]
                assert ours[offsets[j] + r] == pytest.approx(theirs.get(i, 0.0), rel=1e-3,
                                                             abs=1e-3), (query, k)
