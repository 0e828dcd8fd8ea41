"""Split a document into units: sentences, headings and code blocks, with spans.

A unit is never split later unless it alone exceeds the model's window (then
code is cut at line ends, prose at spaces). Headings start a new chunk; code
blocks (Markdown fences and indented blocks, reST literal blocks and code
directives, whole .py/.json files) are kept whole. Sentences come from
sentencex (Wikimedia's maintained splitter), never from a regex of ours.
"""
import bisect
import re
from dataclasses import dataclass
from html.parser import HTMLParser

import sentencex

FORMATS = {".md": "markdown", ".markdown": "markdown", ".rst": "rst", ".txt": "text",
           ".py": "code", ".json": "code", ".html": "html", ".htm": "html"}
_MD_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_MD_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_RST_ADORN = re.compile(r"""^([=\-`:'"~^_*+#<>.])\1{2,}\s*$""")
_RST_CODE_DIRECTIVE = re.compile(r"^\s*\.\.\s+(code-block|code|sourcecode|literalinclude)::")


@dataclass
class Unit:
    start: int
    end: int
    kind: str = "text"        # text | heading | code
    title: str = ""           # nearest heading at or above


@dataclass
class Document:
    text: str                 # what the units index into (HTML: the extracted text)
    units: list
    offsets: object = None    # HTML only: maps text offsets back to source offsets

    def source_span(self, start, end):
        if self.offsets is None:
            return start, end
        return self.offsets(start), self.offsets(end)


def parse(text: str, fmt: str) -> Document:
    """Units of ``text`` read as ``fmt`` (markdown, rst, text, code, html)."""
    if fmt == "html":
        plain, offsets = html_text(text)
        doc = parse(plain, "markdown-lite")
        return Document(plain, doc.units, offsets)
    lines = _lines(text)
    if fmt == "code":
        units = _code_units(text, 0, len(text))
    elif fmt == "markdown":
        units = _markdown(text, lines)
    elif fmt == "rst":
        units = _rst(text, lines)
    elif fmt == "markdown-lite":
        units = _markdown(text, lines)
    else:
        units = _paragraphs(text, lines)
    _set_titles(text, units)
    return Document(text, [u for u in units if text[u.start:u.end].strip()])


def _lines(text):
    """(start, end-without-newline) per line."""
    out, pos = [], 0
    for line in text.splitlines(keepends=True):
        out.append((pos, pos + len(line.rstrip("\r\n"))))
        pos += len(line)
    return out


def _blank(text, span):
    return not text[span[0]:span[1]].strip()


def sentences(text, start, end):
    """Sentence units of ``text[start:end]``, spans trimmed of surrounding white space."""
    units = []
    for b in sentencex.get_sentence_boundaries("en", text[start:end]):
        if b.get("is_paragraph_break"):
            continue
        s, e = _trim(text, start + b["start_index"], start + b["end_index"])
        if e > s:
            units.append(Unit(s, e))
    return units


def _trim(text, s, e):
    while s < e and text[s].isspace():
        s += 1
    while e > s and text[e - 1].isspace():
        e -= 1
    return s, e


def _code_units(text, start, end):
    """A code block as units: one per blank-line-separated paragraph."""
    units, para = [], None
    for s, e in _lines(text[start:end]):
        s, e = s + start, e + start
        if not text[s:e].strip():
            if para:
                units.append(Unit(*para, kind="code"))
            para = None
        else:
            para = (para[0], e) if para else (s, e)
    if para:
        units.append(Unit(*para, kind="code"))
    return units


def _paragraphs(text, lines):
    units, para = [], None
    for span in lines + [(len(text), len(text))]:
        if _blank(text, span):
            if para:
                units.extend(sentences(text, *para))
            para = None
        else:
            para = (para[0], span[1]) if para else span
    return units


def _markdown(text, lines):
    units, para, i = [], None, 0

    def flush():
        if para:
            units.extend(sentences(text, *para))
    while i < len(lines):
        s, e = lines[i]
        line = text[s:e]
        fence = _MD_FENCE.match(line)
        if fence:
            flush(); para = None
            mark, j = fence.group(1), i + 1
            while j < len(lines) and not text[lines[j][0]:lines[j][1]].lstrip().startswith(mark):
                j += 1
            last = lines[min(j, len(lines) - 1)]
            units.append(Unit(s, last[1], kind="code"))
            i = j + 1
            continue
        heading = _MD_HEADING.match(line)
        if heading:
            flush(); para = None
            units.append(Unit(*_trim(text, s, e), kind="heading"))
        elif not line.strip():
            flush(); para = None
        elif para is None and line.startswith(("    ", "\t")) and \
                (i == 0 or _blank(text, lines[i - 1])):
            j = i
            while j + 1 < len(lines) and (_blank(text, lines[j + 1]) or
                                          text[lines[j + 1][0]:].startswith(("    ", "\t"))):
                j += 1
            while j > i and _blank(text, lines[j]):
                j -= 1
            units.append(Unit(s, lines[j][1], kind="code"))
            i = j + 1
            continue
        else:
            para = (para[0], e) if para else (s, e)
        i += 1
    flush()
    return units


def _indent(line):
    return len(line) - len(line.lstrip())


def _rst(text, lines):
    units, para, i = [], None, 0
    literal_next = False

    def flush():
        if para:
            units.extend(sentences(text, *para))
    while i < len(lines):
        s, e = lines[i]
        line = text[s:e]
        nxt = text[lines[i + 1][0]:lines[i + 1][1]] if i + 1 < len(lines) else ""
        if line.strip() and not _RST_ADORN.match(line) and _RST_ADORN.match(nxt) and \
                len(nxt.strip()) >= len(line.strip()) and para is None:
            units.append(Unit(*_trim(text, s, e), kind="heading"))
            i += 2
            continue
        if _RST_ADORN.match(line) and para is None:        # an overline or a transition
            i += 1
            continue
        if _RST_CODE_DIRECTIVE.match(line) or (literal_next and line.strip()):
            flush(); para = None
            # A directive's body is indented past the directive; a literal
            # block runs while lines stay at least as indented as its first.
            floor = _indent(line) if literal_next else _indent(line) + 1
            j = i
            while j + 1 < len(lines) and (
                    _blank(text, lines[j + 1]) or
                    _indent(text[lines[j + 1][0]:lines[j + 1][1]]) >= floor):
                j += 1
            while j > i and _blank(text, lines[j]):
                j -= 1
            units.append(Unit(s, lines[j][1], kind="code"))
            literal_next = False
            i = j + 1
            continue
        if not line.strip():
            if para and text[para[0]:para[1]].rstrip().endswith("::"):
                literal_next = True
            flush(); para = None
        else:
            para = (para[0], e) if para else (s, e)
        i += 1
    flush()
    return units


def _set_titles(text, units):
    title = ""
    for u in units:
        if u.kind == "heading":
            title = text[u.start:u.end].strip().lstrip("#").strip()
        u.title = title


# -- HTML -------------------------------------------------------------------
_BLOCK = {"p", "div", "br", "li", "ul", "ol", "tr", "table", "section", "article", "header",
          "footer", "blockquote", "dd", "dt", "hr"}
_HEAD = {"h1", "h2", "h3", "h4", "h5", "h6", "title"}
_SKIP = {"script", "style", "noscript", "template"}


class _HTMLText(HTMLParser):
    def __init__(self, source):
        super().__init__(convert_charrefs=True)
        self.source = source
        self.line_starts = [0] + [m.end() for m in re.finditer("\n", source)]
        self.parts, self.map, self.pos = [], [], 0     # map: (text_pos, source_pos)
        self.skip = 0
        self.pre = 0

    def _emit(self, s, src=None):
        if src is not None:
            self.map.append((self.pos, src, len(s)))
        self.parts.append(s)
        self.pos += len(s)

    def _src(self):
        line, col = self.getpos()
        return self.line_starts[line - 1] + col

    def handle_starttag(self, tag, attrs):
        if tag in _SKIP:
            self.skip += 1
        elif tag in _HEAD:
            self._emit("\n\n# ")
        elif tag == "pre":
            self.pre += 1
            self._emit("\n\n```\n")
        elif tag in _BLOCK:
            self._emit("\n\n")

    def handle_endtag(self, tag):
        if tag in _SKIP:
            self.skip = max(0, self.skip - 1)
        elif tag == "pre":
            self.pre = max(0, self.pre - 1)
            self._emit("\n```\n\n")
        elif tag in _HEAD or tag in _BLOCK:
            self._emit("\n\n")

    def handle_data(self, data):
        if self.skip:
            return
        if not self.pre:
            data = re.sub(r"\s+", " ", data)
        self._emit(data, self._src())


def html_text(source):
    """Text of an HTML page (Markdown-like marks for headings and <pre>) and an offset map."""
    p = _HTMLText(source)
    p.feed(source)
    p.close()
    text = "".join(p.parts)
    starts = [t for t, _, _ in p.map]

    def offsets(pos):
        # Inside a data run: its source offset plus the distance (exact without
        # entities); in a mark of ours between runs: the next run's start.
        i = bisect.bisect_right(starts, pos) - 1
        if i >= 0 and pos - starts[i] <= p.map[i][2]:
            return min(p.map[i][1] + (pos - starts[i]), len(source))
        return p.map[i + 1][1] if i + 1 < len(p.map) else len(source)
    return text, offsets
