"""Structure and semantic chunking: sentences, headings and code blocks are never cut."""
import pytest
import sentencex
from memory_docs import HTML, MARKDOWN, RST, TEXT

from memory.chunking import chunk_documents
from memory.structure import parse


@pytest.fixture(scope="module")
def embedder():
    from memory.embed import get_embedder
    return get_embedder()


def test_markdown_units_keep_headings_and_fences_whole():
    doc = parse(MARKDOWN, "markdown")
    kinds = [(u.kind, MARKDOWN[u.start:u.end]) for u in doc.units]
    assert ("heading", "# Sourdough baking") in kinds
    assert ("heading", "## Shaping the loaf") in kinds
    code = [t for k, t in kinds if k == "code"]
    assert code == [("```python\ndef feed(starter, flour, water):\n\n    return starter + flour "
                     "+ water\n```")]
    assert doc.units[-1].title == "Shaping the loaf"


def test_rst_headings_and_literal_blocks():
    doc = parse(RST, "rst")
    kinds = [(u.kind, RST[u.start:u.end]) for u in doc.units]
    assert ("heading", "Glacier dynamics") in kinds and ("heading", "Crevasses") in kinds
    assert ("code", "    velocity = deformation + basal_sliding") in kinds


def test_html_text_maps_back_to_source():
    doc = parse(HTML, "html")
    texts = [doc.text[u.start:u.end] for u in doc.units]
    assert not any("color: red" in t for t in texts)          # style is not text
    sentence = next(u for u in doc.units if doc.text[u.start:u.end].startswith("A colony"))
    s, e = doc.source_span(sentence.start, sentence.end)
    assert HTML[s:e].startswith("A colony has one queen")


def test_chunks_never_cut_a_sentence_and_respect_the_budget(embedder):
    text = " ".join([TEXT] * 6)
    doc = parse(text, "text")
    drafts = chunk_documents([doc], embedder, budget=40)[0]
    assert len(drafts) > 3
    spans = [(d.start, d.end) for d in drafts]
    assert spans == sorted(spans)
    for b in sentencex.get_sentence_boundaries("en", text):
        if b["is_paragraph_break"] or not b["text"].strip():
            continue
        s = b["start_index"] + len(b["text"]) - len(b["text"].lstrip())
        e = b["end_index"] - (len(b["text"]) - len(b["text"].rstrip()))
        inside = [d for d in drafts if d.start <= s and e <= d.end]
        assert len(inside) == 1, f"sentence {text[s:e]!r} is cut or missing"
    for d in drafts:
        assert d.text == text[d.start:d.end]
        assert d.tokens <= 40 or d.text.count(". ") == 0     # over budget only when one sentence
        assert abs(float((d.vector ** 2).sum()) - 1.0) < 1e-4


def test_a_heading_starts_a_chunk_and_code_stays_whole(embedder):
    drafts = chunk_documents([parse(MARKDOWN, "markdown")], embedder, budget=500)[0]
    assert any(d.text.startswith("## Shaping the loaf") for d in drafts)
    assert sum("def feed" in d.text for d in drafts) == 1
    code = next(d for d in drafts if "def feed" in d.text)
    assert "return starter + flour + water\n```" in code.text


def test_a_unit_longer_than_the_window_is_cut_at_line_ends(embedder):
    code = "\n".join(f"value_{i} = compute_something_long({i}, {i + 1}, {i + 2})"
                     for i in range(200))
    drafts = chunk_documents([parse(code, "code")], embedder, budget=128)[0]
    assert len(drafts) > 1
    for d in drafts:
        assert d.text.startswith("value_") and d.text.rstrip().endswith(")")


def test_late_chunk_vectors_agree_with_plain_encoding(embedder):
    """A chunk's vector (mean of its token states) points where encode() of its text does."""
    drafts = chunk_documents([parse(TEXT, "text")], embedder, budget=200)[0]
    plain = embedder.encode([d.text for d in drafts])
    for d, v in zip(drafts, plain):
        assert float(d.vector @ v) > 0.9
