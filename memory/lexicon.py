"""The text index's lexicon: zope.index's splitter, case folding and stop words, plus stemming.

These pipeline elements are pickled inside each corpus's Lexicon, so their
classes must stay importable here under these names.
"""
import snowballstemmer
from zope.index.text.lexicon import CaseNormalizer, Lexicon, Splitter, StopWordRemover


class EnglishStemmer:
    """Snowball (Porter 2) stems, so 'compressing' finds 'compression'."""

    def process(self, lst):
        return _stemmer().stemWords(lst)

    def processGlob(self, lst):      # globs are matched unstemmed
        return lst


class CodeSplitter(Splitter):
    """zope.index's word splitter that also splits snake_case and camelCase identifiers.

    The whole identifier is kept beside its parts, so both 'dumps' and
    'json_dumps' match.
    """

    def process(self, lst):
        out = []
        for word in super().process(lst):
            out.append(word)
            parts = [p for p in _split_identifier(word) if p]
            if len(parts) > 1:
                out.extend(parts)
        return out


def _split_identifier(word):
    parts, cur = [], ""
    for i, ch in enumerate(word):
        if ch == "_":
            parts.append(cur)
            cur = ""
        elif ch.isupper() and cur and (cur[-1].islower() or
                                       (i + 1 < len(word) and word[i + 1].islower())):
            parts.append(cur)
            cur = ch
        else:
            cur += ch
    parts.append(cur)
    return parts


_cache = []


def _stemmer():
    if not _cache:
        _cache.append(snowballstemmer.stemmer("english"))
    return _cache[0]


def make_lexicon() -> Lexicon:
    return Lexicon(CodeSplitter(), CaseNormalizer(), StopWordRemover(), EnglishStemmer())


def query_terms(pipeline, text) -> list:
    """The normalised terms of a query, through a lexicon's pipeline (``lexicon._pipeline``)."""
    words = [text]
    for element in pipeline:
        words = element.process(words)
    return words
