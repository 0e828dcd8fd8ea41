"""Semantic chunking: sentence units grouped by embedding similarity, within a token budget.

One forward pass of the embedding model serves both jobs ("late chunking"):
units are packed whole into windows of the model's length, each window is run
once, and every unit and chunk vector is the mean of its contextual token
states, which is the model's own mean pooling restricted to the span. So
ingesting costs about one plain ``encode`` of the text, and each chunk's
vector has seen its neighbours. Models that do not pool by mean get their
chunk vectors from a second, ordinary ``encode`` of the chunk texts.

A chunk never cuts a unit (a sentence, a heading, a code paragraph); only a
unit longer than the model's window is cut, code at line ends, prose at spaces.
A heading always starts a chunk.
"""
from dataclasses import dataclass

import numpy as np

DEFAULT_BUDGET = 64         # tokens per chunk: best text and hybrid MRR on bench/memory.py (64 vs 128)
DEFAULT_MIN_TOKENS = 24     # below this a chunk takes its neighbour whatever the similarity
DEFAULT_PERCENTILE = 25     # a gap in the lowest quarter of a document's similarities is a break


@dataclass
class Draft:
    text: str
    start: int          # span in the source file
    end: int
    title: str
    tokens: int
    vector: np.ndarray  # float32, normalised


@dataclass
class _Piece:
    start: int          # span in document text
    end: int
    kind: str
    title: str
    ids: list


def chunk_documents(docs, embedder, budget=DEFAULT_BUDGET, min_tokens=DEFAULT_MIN_TOKENS,
                    percentile=DEFAULT_PERCENTILE):
    """Drafts for each of ``docs`` (structure.Document), one model pass for all of them."""
    capacity = max(8, embedder.max_tokens - 2)
    pieces = [_pieces(d, embedder.tokenize, capacity) for d in docs]
    windows, where = [], []              # where[w] = (doc index, [piece indexes])
    for di, ps in enumerate(pieces):
        for group in _pack(ps, capacity):
            windows.append([t for i in group for t in ps[i].ids])
            where.append((di, group))
    states = embedder.token_states(windows) if windows else []
    out = [[] for _ in docs]
    piece_states = [[None] * len(ps) for ps in pieces]
    for (di, group), st in zip(where, states):
        pos = 0
        for i in group:
            n = len(pieces[di][i].ids)
            piece_states[di][i] = st[pos:pos + n]
            pos += n
    windows_of = [[] for _ in docs]
    for di, group in where:
        windows_of[di].append(group)
    for di, (doc, ps) in enumerate(zip(docs, pieces)):
        out[di] = _group(doc, ps, piece_states[di], windows_of[di], budget, min_tokens, percentile)
    if not embedder.mean_pooling:
        flat = [d for drafts in out for d in drafts]
        vecs = embedder.encode([d.text for d in flat])
        for d, v in zip(flat, vecs):
            d.vector = v
    return out


def _pieces(doc, tokenize, capacity):
    units = doc.units
    if not units:
        return []
    texts = [doc.text[u.start:u.end] for u in units]
    enc = tokenize(texts, add_special_tokens=False, return_offsets_mapping=True)
    out = []
    for u, ids, offs in zip(units, enc["input_ids"], enc["offset_mapping"]):
        if not ids:
            continue
        if len(ids) <= capacity:
            out.append(_Piece(u.start, u.end, u.kind, u.title, list(ids)))
            continue
        text = doc.text[u.start:u.end]
        i = 0
        while i < len(ids):
            j = min(i + capacity, len(ids))
            if j < len(ids):            # back off to a line end (code) or a space (prose)
                stop = "\n" if u.kind == "code" else " "
                k = j
                while k > i + capacity // 2 and stop not in text[offs[k - 1][1]:offs[k][0] + 1]:
                    k -= 1
                if k > i + capacity // 2:
                    j = k
            s, e = u.start + offs[i][0], u.start + offs[j - 1][1]
            out.append(_Piece(s, e, u.kind, u.title, list(ids[i:j])))
            i = j
    return out


def _pack(pieces, capacity):
    """Consecutive piece indexes in windows of at most ``capacity`` tokens."""
    groups, cur, n = [], [], 0
    for i, p in enumerate(pieces):
        if cur and n + len(p.ids) > capacity:
            groups.append(cur)
            cur, n = [], 0
        cur.append(i)
        n += len(p.ids)
    if cur:
        groups.append(cur)
    return groups


def _unit(v):
    norm = float(np.linalg.norm(v))
    return (v / norm).astype(np.float32) if norm > 0 else v.astype(np.float32)


def _group(doc, pieces, states, windows, budget, min_tokens, percentile):
    means = [_unit(s.mean(axis=0)) for s in states]
    sims = [float(means[i] @ means[i + 1]) for i in range(len(means) - 1)]
    cut = float(np.percentile(sims, percentile)) if len(sims) >= 4 else -2.0
    drafts = []
    for window in windows:
        cur, n = [], 0
        for i in window:
            p = pieces[i]
            size = len(p.ids)
            if cur and (p.kind == "heading" or n + size > budget or
                        (n >= min_tokens and sims[i - 1] < cut)):
                drafts.append(_draft(doc, pieces, states, cur))
                cur, n = [], 0
            cur.append(i)
            n += size
        if cur:
            drafts.append(_draft(doc, pieces, states, cur))
    return drafts


def _draft(doc, pieces, states, idx):
    first, last = pieces[idx[0]], pieces[idx[-1]]
    vec = _unit(np.concatenate([states[i] for i in idx]).mean(axis=0))
    start, end = doc.source_span(first.start, last.end)
    return Draft(text=doc.text[first.start:last.end], start=start, end=end, title=first.title,
                 tokens=sum(len(pieces[i].ids) for i in idx), vector=vec)
