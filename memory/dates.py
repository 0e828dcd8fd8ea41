"""Days a request names ("on May 4th", "2023-04-29", "yesterday", "last Tuesday").

Recall uses them to bring that day's exchanges first: "what did I tell you
on May 4th?" is answered by what was said that day, whatever its words.
A date without a year is the latest such day not after ``now``; days are
local days of this machine, as the dates shown beside recalled exchanges.
"""
import datetime as dt
import re

MONTHS = {m: i + 1 for i, m in enumerate(
    ("january", "february", "march", "april", "may", "june", "july", "august", "september",
     "october", "november", "december"))}
MONTHS.update({m[:3]: i for m, i in list(MONTHS.items())})
MONTHS["sept"] = 9
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_MON = r"(jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|" \
       r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
_DAY = r"(\d{1,2})(?:st|nd|rd|th)?"
PATTERNS = (
    (re.compile(r"\b(\d{4})-(\d{1,2})-(\d{1,2})\b"), "iso"),
    (re.compile(rf"\b{_MON}\.?\s+{_DAY}\b(?:,?\s+(\d{{4}}))?", re.I), "md"),
    (re.compile(rf"\b(?:the\s+)?{_DAY}\s+(?:of\s+)?{_MON}\b(?:,?\s+(\d{{4}}))?", re.I), "dm"),
    (re.compile(r"\b(today|yesterday)\b", re.I), "rel"),
    (re.compile(r"\b(\d{1,2})\s+days?\s+ago\b", re.I), "ago"),
    (re.compile(rf"\b(?:on|last)\s+({'|'.join(WEEKDAYS)})\b", re.I), "weekday"),
)


def _latest(month, day, year, today):
    try:
        if year:
            return dt.date(int(year), month, day)
        d = dt.date(today.year, month, day)
        return d if d <= today else dt.date(today.year - 1, month, day)
    except ValueError:              # 31 June, 29 February of another year
        return None


def named_days(text, now) -> list:
    """The local days ``text`` names, as ``date`` objects, in the order named (no repeats)."""
    today = dt.datetime.fromtimestamp(now).date()
    days = []
    for pattern, kind in PATTERNS:
        for m in pattern.finditer(text):
            g = m.groups()
            d = None
            if kind == "iso":
                d = _latest(int(g[1]), int(g[2]), g[0], today) if 1 <= int(g[1]) <= 12 else None
            elif kind == "md":
                d = _latest(MONTHS[g[0].lower()[:3] if g[0].lower()[:4] != "sept" else "sept"],
                            int(g[1]), g[2], today)
            elif kind == "dm":
                d = _latest(MONTHS[g[1].lower()[:3]], int(g[0]), g[2], today)
            elif kind == "rel":
                d = today - dt.timedelta(days=1 if g[0].lower() == "yesterday" else 0)
            elif kind == "ago":
                d = today - dt.timedelta(days=int(g[0]))
            elif kind == "weekday":
                back = (today.weekday() - WEEKDAYS.index(g[0].lower())) % 7 or 7
                d = today - dt.timedelta(days=back)
            if d is not None and d not in days:
                days.append(d)
    return days


def day_range(day) -> tuple:
    """``(since, until)`` epoch seconds of a local day."""
    start = dt.datetime.combine(day, dt.time())
    return start.timestamp(), (start + dt.timedelta(days=1)).timestamp()


def day_label(when) -> str:
    return dt.datetime.fromtimestamp(when).strftime("%Y-%m-%d") if when else "undated"
