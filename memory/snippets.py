"""Query-focused snippets: the sentences of a long text that bear on a request.

A recalled exchange is shown whole when it is short; a long one is cut to
its sentences that share the most terms with the request (stemmed, stop
words out, as the text index sees them), kept in their order, with "…"
where text was left out. So a share of the context holds more past
exchanges, and of each the part that matters; the whole exchange stays in
the ledger (``batos ledger show``).
"""
import re

from .lexicon import make_lexicon, query_terms

_SENTENCE = re.compile(r"(?<=[.!?。])\s+|\n+")
_pipeline = []


def _terms(text):
    if not _pipeline:
        _pipeline.append(list(make_lexicon()._pipeline))
    return set(query_terms(_pipeline[0], text))


def focus(text, request, limit) -> str:
    """``text`` if it fits in ``limit`` characters, else its sentences that share most terms
    with ``request`` (ties: the earlier), in order, within ``limit``."""
    text = text.strip()
    if len(text) <= limit:
        return text
    sentences = [s for s in _SENTENCE.split(text) if s.strip()]
    wanted = _terms(request)
    scored = sorted(range(len(sentences)),
                    key=lambda i: (-len(_terms(sentences[i]) & wanted), i))
    keep, used = [], 0
    for i in scored:
        size = len(sentences[i]) + 2
        if used + size <= limit:
            keep.append(i)
            used += size
    if not keep:                      # one long sentence: its start
        return text[: max(limit - 1, 0)].rstrip() + "…"
    keep.sort()
    out = []
    for j, i in enumerate(keep):
        if j == 0 and i > 0 or j > 0 and i != keep[j - 1] + 1:
            out.append("…")
        out.append(sentences[i].strip())
    if keep[-1] != len(sentences) - 1:
        out.append("…")
    return " ".join(out)
