"""Secrets and personal data out of text that will be trained on.

Each finding is replaced by ``[REDACTED:KIND]`` and counted. Card numbers
must pass the Luhn check, so order numbers and timestamps survive.
"""
import re

PATTERNS = [
    ("API_KEY", re.compile(
        r"\b(?:sk-(?:proj-)?[A-Za-z0-9_-]{20,}|AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{30,}"
        r"|xox[abprs]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{35}|batos-[A-Za-z0-9_-]{30,})")),
    ("API_KEY", re.compile(
        r"(?i)\b((?:api[_-]?key|secret|token|password|passwd)\s*[:=]\s*)['\"]?([^\s'\"]{8,})")),
    ("EMAIL", re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")),
    ("CARD", re.compile(r"\b(?:\d[ -]?){12,18}\d\b")),
    # international (+CC ...), North American (415) 555-0132, national 020 7946 0958;
    # never inside a longer run of digits (order numbers, timestamps)
    ("PHONE", re.compile(
        r"(?<![\w+])(?:\+\d{1,3}[ .-]?\(?\d{1,4}\)?(?:[ .-]?\d{2,4}){2,4}"
        r"|\(?\d{3}\)?[ .-]\d{3}[ .-]\d{4}|0\d{2,4}[ .-]\d{3,4}[ .-]?\d{3,4})(?![ .-]?\d)")),
]


def _luhn(digits):
    total, parity = 0, len(digits) % 2
    for i, ch in enumerate(digits):
        d = int(ch)
        if i % 2 == parity:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def redact(text, counts=None):
    """``text`` with secrets and personal data replaced; ``counts`` (a dict) tallies kinds."""
    counts = {} if counts is None else counts

    def sub(kind):
        def repl(m):
            if kind == "CARD" and not _luhn(re.sub(r"\D", "", m.group(0))):
                return m.group(0)
            counts[kind] = counts.get(kind, 0) + 1
            if m.re.groups == 2:             # keep "api_key=" and hide what follows
                return m.group(1) + f"[REDACTED:{kind}]"
            return f"[REDACTED:{kind}]"
        return repl
    for kind, pattern in PATTERNS:
        text = pattern.sub(sub(kind), text)
    return text
