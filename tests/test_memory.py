"""The bifocal memory on a real image with the real embedding model."""
import memory_docs
import numpy as np
import pytest

from memory import DimensionMismatch, EmbedderError, NotMounted, UnknownCorpus
from memory import mount as mnt
from memory.corpus import get_corpus
from memory.ingest import drop, ingest
from memory.search import Filters, rank, search, text_scores


def sources(img, query, **kw):
    with img.view() as root:
        return [h.chunk.source.rsplit("/", 1)[-1] for h in search(img, root, query, **kw)]


def docids_by_source(img, name="kb"):
    with img.view() as root:
        return {p: r["docids"] for p, r in get_corpus(root, name).sources.items()}


def test_every_chunk_is_prose_and_vector_with_its_metadata(kb, docs):
    with kb.view() as root:
        corpus = get_corpus(root, "kb")
        assert corpus.dim == 384 and corpus.model == "all-MiniLM-L6-v2"
        chunks = list(corpus.chunks.values())
        assert {c.source.rsplit("/", 1)[-1] for c in chunks} == set(memory_docs.FILES)
        for c in chunks:
            v = c.vector_array()
            assert v.shape == (384,) and abs(float(v @ v) - 1) < 1e-4
            assert c.corpus == "kb" and c.mind is None and c.time > 0 and c.resonance == 0.0
            if not c.source.endswith(".html"):
                text = open(c.source, encoding="utf-8").read()
                assert text[c.start:c.end] == c.text


def test_ingesting_twice_adds_nothing_and_an_edit_replaces_only_that_file(kb, docs):
    before = docids_by_source(kb)
    with kb.view() as root:
        version = get_corpus(root, "kb").version
    again = ingest(kb, "kb", [docs])
    assert (again["added"], again["replaced"], again["unchanged"]) == (0, 0, len(memory_docs.FILES))
    assert again["chunks_added"] == 0 and docids_by_source(kb) == before
    with kb.view() as root:
        assert get_corpus(root, "kb").version == version

    violin = docs / "violin.txt"
    violin.write_text(memory_docs.TEXT + "\nThe viola is tuned a fifth below the violin.\n")
    edit = ingest(kb, "kb", [docs])
    assert (edit["added"], edit["replaced"], edit["unchanged"]) == (0, 1, len(memory_docs.FILES) - 1)
    after = docids_by_source(kb)
    for path, ids in before.items():
        if path.endswith("violin.txt"):
            assert not set(ids) & set(after[path])
            assert edit["chunks_removed"] == len(ids)
        else:
            assert after[path] == ids
    with kb.view() as root:
        corpus = get_corpus(root, "kb")
        assert len(corpus.chunks) == sum(len(v) for v in after.values())
        assert corpus.text.documentCount() == len(corpus.chunks)
    assert sources(kb, "viola tuned below", mode="text", k=1) == ["violin.txt"]


def test_a_changed_file_is_replaced_in_one_transaction(kb, docs):
    (docs / "violin.txt").write_text("Cellos are bigger than violins.\n")
    before = len(list(kb.storage.iterator()))
    ingest(kb, "kb", [docs])
    notes = [t.description for t in kb.storage.iterator()][before:]
    assert sum(b"ingest" in n for n in notes) == 1


def test_batches_commit_separately(folder_image, docs):
    ingest(folder_image, "kb", [docs], batch_chars=300)
    notes = [t.description for t in folder_image.storage.iterator()]
    assert sum(b"memory: ingest" in n for n in notes) >= 3


def test_skips_say_why(folder_image, tmp_path):
    d = tmp_path / "mixed"
    d.mkdir()
    (d / "ok.md").write_text("# Fine\n\nA real sentence about kites.\n")
    (d / "bin.txt").write_bytes(b"\x00\x01\x02 binary")
    (d / "empty.md").write_text("  \n\n")
    (d / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (d / "big.txt").write_text("word " * 400)
    (d / "photo.png").write_bytes(b"\x89PNG")
    summary = ingest(folder_image, "mixed", [d, tmp_path / "nowhere"], max_bytes=1000)
    why = {s["path"].rsplit("/", 1)[-1]: s["reason"] for s in summary["skipped"]}
    assert why["bin.txt"] == "binary" and why["empty.md"] == "empty"
    assert why["latin1.txt"].startswith("undecodable") and why["big.txt"].startswith("oversized")
    assert why["photo.png"].startswith("unsupported") and why["nowhere"] == "does not exist"
    assert summary["added"] == 1


def test_text_scores_rank_exactly_as_zope_index_okapi(kb):
    from zope.index.text.setops import mass_weightedUnion
    loaded = mnt.load(kb, "kb")
    with kb.view() as root:
        index = get_corpus(root, "kb").text
        for query in ("starter yeast flour", "glacier ice sliding", "bow strings violin",
                      "queen workers honey", "orbit period"):
            ours = text_scores(loaded, query)
            wids = [w for w in index._lexicon.termToWordIds(query) if w]
            theirs = mass_weightedUnion(index._search_wids(wids), index.family)
            assert len(theirs) > 0
            for docid, score in theirs.items():
                row = int(np.searchsorted(loaded.docids, docid))
                assert ours[row] == pytest.approx(score, rel=1e-3, abs=1e-3)
            assert int((ours > 0).sum()) == len(theirs)


@pytest.mark.parametrize("mode", ["text", "vector", "hybrid"])
def test_each_mode_finds_the_right_document(kb, mode):
    if mode != "text":      # a paraphrase with no shared word is the vector side's job
        assert sources(kb, "how long does a satellite take to go around a planet", mode=mode,
                       k=1) == ["orbits.py"]
    assert sources(kb, "wild yeast culture for bread", mode=mode, k=1) == ["bread.md"]
    assert sources(kb, "ice flowing slowly downhill", mode=mode, k=1) == ["glacier.rst"]


def test_hits_carry_per_mode_scores_and_ranks(kb):
    with kb.view() as root:
        hits = search(kb, root, "honey bees colony", mode="hybrid", k=3)
        top = hits[0]
        assert {"text", "vector", "hybrid", "page_text", "page_vector"} <= set(top.scores)
        assert top.score == top.scores["hybrid"]
        assert top.ranks and all(r >= 1 for r in top.ranks.values())
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        row = top.row()
        assert {"source", "score", "text", "start", "end"} <= set(row)


def test_filters(kb, docs, tmp_path):
    other = memory_docs.write(tmp_path / "more")
    (other / "bread.md").write_text("# Rye bread\n\nRye dough is sticky and needs a starter.\n")
    ingest(kb, "kb", [other / "bread.md"], mind="orai")
    prefix = str(other)
    only = Filters(source_prefix=prefix)
    assert set(sources(kb, "bread starter", filters=only)) == {"bread.md"}
    with kb.view() as root:
        hits = search(kb, root, "bread starter", filters=Filters(mind="orai"))
        assert hits and all(h.chunk.mind == "orai" for h in hits)
        hits = search(kb, root, "bread starter", filters=Filters(mind=""))
        assert hits and all(h.chunk.mind is None for h in hits)
        newest = max(c.time for c in get_corpus(root, "kb").chunks.values())
        hits = search(kb, root, "bread starter", filters=Filters(since=newest))
        assert hits and all(h.chunk.source.startswith(prefix) for h in hits)
        assert not search(kb, root, "bread starter", filters=Filters(until=0))
        target = search(kb, root, "glacier crevasses", k=1)[0].docid
    with kb.transaction() as conn:
        get_corpus(conn.root(), "kb").chunks[target].resonance = 0.9
    with kb.view() as root:
        hits = search(kb, root, "glacier", filters=Filters(min_resonance=0.5))
        assert [h.docid for h in hits] == [target]


def test_unknown_and_unmounted_corpora_are_clear_errors(folder_image, docs):
    with folder_image.view() as root:
        with pytest.raises(UnknownCorpus, match="no corpus named 'nope'.*batos memory ingest"):
            search(folder_image, root, "x", corpora=["nope"])
    ingest(folder_image, "kb", [docs])
    with folder_image.view() as root:
        with pytest.raises(NotMounted, match="batos memory mount kb --mind hermes"):
            search(folder_image, root, "x", corpora=["kb"])
        assert search(folder_image, root, "yeast") == []      # nothing mounted, nothing searched
    with pytest.raises(ValueError, match="no mind named 'zeus'"):
        mnt.mount(folder_image, "kb", "zeus")


def test_mounts_are_per_mind_persist_and_unmount_frees(image_dir, docs):
    from image import open_image
    from kernel.schema import bootstrap
    with open_image(image_dir, create=True) as img:
        bootstrap(img)
        ingest(img, "kb", [docs])
        mnt.mount(img, "kb", "orai")
    mnt._loaded.clear()                     # a new process: nothing in RAM
    with open_image(image_dir) as img:
        assert mnt.mounted(img, "orai") == ["kb"] and mnt.mounted(img, "hermes") == []
        assert sources(img, "yeast starter", mind="orai", k=1) == ["bread.md"]
        assert mnt._key(img, "kb") in mnt._loaded
        with img.view() as root, pytest.raises(NotMounted):
            search(img, root, "yeast", corpora=["kb"], mind="hermes")
        assert mnt.unmount(img, "kb", "orai") is True
        assert mnt._key(img, "kb") not in mnt._loaded
        assert mnt.mounted(img, "orai") == []


def test_stale_search_arrays_are_rebuilt_on_load(kb):
    """An ingest interrupted after its chunk commits: the arrays lag; mounting catches up."""
    from memory.chunking import Draft
    vec = np.zeros(384, dtype=np.float32)
    vec[0] = 1.0
    with kb.transaction() as conn:
        corpus = get_corpus(conn.root(), "kb")
        corpus.replace_source("/virtual/zebra.txt", {"sha256": "x", "size": 1},
                              [Draft("Zebras have stripes.", 0, 20, "", 4, vec)])
    assert sources(kb, "zebras stripes", mode="text", k=1) == ["zebra.txt"]
    with kb.view() as root:
        corpus = get_corpus(root, "kb")
        assert corpus.accel_version == corpus.version


def test_dimensions_never_mix(kb, docs, tiny_st_model):
    with pytest.raises(DimensionMismatch, match="32-dimensional.*384-dimensional"):
        ingest(kb, "kb", [docs], model=tiny_st_model)
    loaded = mnt.load(kb, "kb")
    with pytest.raises(DimensionMismatch, match="query vector has 32 dimensions"):
        rank([loaded], "x", "vector", query_vectors={loaded.model: np.ones(32, np.float32)})
    # any sentence-transformers folder works for a corpus of its own
    summary = ingest(kb, "tiny", [docs], model=tiny_st_model)
    assert summary["added"] == len(memory_docs.FILES)
    with kb.view() as root:
        assert get_corpus(root, "tiny").dim == 32


def test_a_bad_model_folder_is_a_clear_error(folder_image, docs, tmp_path):
    bad = tmp_path / "not-a-model"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    with pytest.raises(EmbedderError, match="could not load the embedding model"):
        ingest(folder_image, "bad", [docs], model=bad)
    with pytest.raises(EmbedderError, match="does not exist"):
        ingest(folder_image, "bad", [docs], model=tmp_path / "nowhere")
    with folder_image.view() as root:
        assert "bad" not in root["memory"].corpora


def test_drop_removes_the_corpus_and_its_mounts(kb):
    drop(kb, "kb")
    assert mnt.mounted(kb, "hermes") == []
    with kb.view() as root, pytest.raises(UnknownCorpus):
        get_corpus(root, "kb")


def test_a_corpus_dropped_and_made_again_is_not_served_from_the_old_arrays(kb, tmp_path):
    assert sources(kb, "yeast", k=1) == ["bread.md"]
    other = tmp_path / "other"
    other.mkdir()
    (other / "kites.md").write_text("# Kites\n\nA kite flies on the wind at the end of a line.\n")
    drop(kb, "kb")
    mnt._loaded.clear()          # as if another process had dropped it
    ingest(kb, "kb", [other])
    mnt.mount(kb, "kb", "hermes")
    assert sources(kb, "kite wind", k=1) == ["kites.md"]
