"""The search arrays follow the records incrementally: segments, dead rows, compaction, prune."""
import os
import subprocess
import sys
import textwrap

import memory_docs
import numpy as np
import pytest

from image import open_image
from kernel.schema import bootstrap
from memory import accel
from memory import mount as mnt
from memory.corpus import get_corpus
from memory.embed import get_embedder
from memory.ingest import ingest
from memory.search import rank, search, text_scores

QUERIES = ("starter yeast flour", "glacier ice sliding", "bow strings violin", "cello strings",
           "queen workers honey", "orbit period", "how long does a planet take to go round")


def corpus_state(img):
    with img.view() as root:
        c = get_corpus(root, "kb")
        return len(c.segments), len(c.dead), accel.is_current(c), set(c.chunks.keys())


def rankings(img):
    loaded = mnt.load(img, "kb")
    emb = get_embedder(loaded.model)
    out = {}
    for mode in ("text", "vector", "hybrid"):
        for q in QUERIES:
            qv = {loaded.model: emb.encode([q])[0]}
            out[mode, q] = [(int(loaded.docids[r]), round(s, 4))
                            for _, r, s, *_ in rank([loaded], q, mode, k=5, query_vectors=qv)]
    return out


def force_full_rebuild(img):
    with img.transaction() as conn:
        get_corpus(conn.root(), "kb").accel_version = -1
    mnt.forget(img, "kb")
    loaded = mnt.load(img, "kb")
    assert len(loaded.segments) == 1 and loaded.alive is None


def test_an_update_appends_a_segment_and_ranks_as_a_full_rebuild(kb, docs):
    (docs / "violin.txt").write_text("Cellos are bigger than violins. Their strings are thick "
                                     "and a cello player sits down.\n")
    ingest(kb, "kb", [docs])
    segments, dead, current, docids = corpus_state(kb)
    assert segments == 2 and dead > 0 and current
    loaded = mnt.load(kb, "kb")
    assert set(loaded.docids[loaded.alive].tolist()) == docids
    incremental = rankings(kb)
    assert incremental["text", "cello strings"][0][0] in docids
    force_full_rebuild(kb)
    full = rankings(kb)
    for key in full:
        assert [d for d, _ in incremental[key]] == [d for d, _ in full[key]], key
        assert np.allclose([s for _, s in incremental[key]], [s for _, s in full[key]], atol=1e-3)


def test_bm25_after_an_update_still_equals_zope_index(kb, docs):
    from zope.index.text.setops import mass_weightedUnion
    (docs / "bees.html").write_text("<h1>Wasps</h1><p>Wasps sting; honey is for bees.</p>")
    ingest(kb, "kb", [docs])
    loaded = mnt.load(kb, "kb")
    assert loaded.alive is not None and len(loaded.segments) == 2
    with kb.view() as root:
        index = get_corpus(root, "kb").text
        for query in ("honey bees wasps", "starter flour", "orbit"):
            ours = text_scores(loaded, query)
            wids = [w for w in index._lexicon.termToWordIds(query) if w]
            theirs = mass_weightedUnion(index._search_wids(wids), index.family)
            assert len(theirs) > 0
            for docid, score in theirs.items():
                assert ours[loaded.row_of(docid)] == pytest.approx(score, rel=1e-3, abs=1e-3)
            assert int((ours[loaded.alive] > 0).sum()) == len(theirs)


def test_compaction_merges_segments_and_drops_dead_rows(kb, docs, monkeypatch):
    monkeypatch.setattr(accel, "MAX_DEAD", 0.0)        # any dead row asks for a merge
    before = rankings(kb)
    (docs / "mars.json").write_text('{"planet": "Mars", "moons": ["Phobos", "Deimos"]}')
    ingest(kb, "kb", [docs])
    segments, dead, current, _ = corpus_state(kb)
    assert (segments, dead, current) == (1, 0, True)
    after = rankings(kb)
    assert after["text", "glacier ice sliding"][0][0] == before["text", "glacier ice sliding"][0][0]
    force_full_rebuild(kb)
    assert rankings(kb) == after


def test_prune_drops_missing_files_in_one_transaction(kb, docs):
    (docs / "violin.txt").unlink()
    before = len(list(kb.storage.iterator()))
    summary = ingest(kb, "kb", [docs], prune=True)
    assert summary["pruned"] == 1 and summary["chunks_pruned"] > 0 and summary["added"] == 0
    notes = [t.description for t in kb.storage.iterator()][before:]
    assert sum(b"prune" in n for n in notes) == 1 and not any(b"ingest" in n for n in notes)
    with kb.view() as root:
        corpus = get_corpus(root, "kb")
        assert not any(p.endswith("violin.txt") for p in corpus.sources.keys())
        assert accel.is_current(corpus)
        hits = search(kb, root, "bow strings violin", mode="text")
        assert all(not h.chunk.source.endswith("violin.txt") for h in hits)
    assert ingest(kb, "kb", [docs], prune=True)["pruned"] == 0


CHILD = textwrap.dedent("""
    import os, signal, sys
    from image import open_image
    from memory.ingest import ingest
    img = open_image(sys.argv[1])
    batches = []
    def progress(done, total):
        if done:
            batches.append(done)
            if len(batches) == 2:           # two batches committed: die without a word
                os.kill(os.getpid(), signal.SIGKILL)
    ingest(img, "kb", [sys.argv[2]], batch_chars=300, progress=progress)
""")


def test_an_ingest_killed_midway_is_consistent_and_resumes(tmp_path, docs):
    path = tmp_path / "image"
    img = open_image(path, create=True)
    bootstrap(img)
    ingest(img, "kb", [docs / "bread.md"])
    img.close()
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-c", CHILD, str(path), str(docs)], env=env,
                          timeout=300, capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    img = open_image(path)
    try:
        segments, dead, current, docids = corpus_state(img)
        assert current and segments >= 2                # each batch brought its own segment
        with img.view() as root:
            done = len(get_corpus(root, "kb").sources)
        assert 1 < done < len(memory_docs.FILES)
        loaded = mnt.load(img, "kb")
        live = loaded.docids if loaded.alive is None else loaded.docids[loaded.alive]
        assert set(live.tolist()) == docids
        summary = ingest(img, "kb", [docs])
        assert summary["unchanged"] == done and summary["added"] == len(memory_docs.FILES) - done
        with img.view() as root:
            corpus = get_corpus(root, "kb")
            assert len(corpus.sources) == len(memory_docs.FILES) and accel.is_current(corpus)
        with img.transaction() as conn:
            from memory.corpus import mounts
            mounts(conn.root(), "hermes").add("kb")
        with img.view() as root:
            assert search(img, root, "lively starter doubles", mode="text", k=1)[0].chunk.source \
                .endswith("bread.md")
    finally:
        img.close()


def test_a_corpus_from_before_segments_is_rebuilt_on_mount(kb):
    """Images written before segments hold one blob in ``accel`` and no ``segments``."""
    with kb.transaction() as conn:
        corpus = get_corpus(conn.root(), "kb")
        corpus.accel = corpus.segments[0]["blob"]            # stands for the old single blob
        del corpus.segments, corpus.dead, corpus.next_segment
    mnt.forget(kb, "kb")
    with kb.view() as root:
        assert not accel.is_current(get_corpus(root, "kb"))
    assert sources_top(kb, "glacier ice sliding") == "glacier.rst"
    segments, dead, current, _ = corpus_state(kb)
    assert (segments, dead, current) == (1, 0, True)
    with kb.view() as root:
        assert get_corpus(root, "kb").accel is None


def sources_top(img, query):
    with img.view() as root:
        return search(img, root, query, mode="text", k=1)[0].chunk.source.rsplit("/", 1)[-1]
