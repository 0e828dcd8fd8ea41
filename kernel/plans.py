"""Parse a mind's plan robustly: any JSON list of steps in its answer, or a one-step plan.

Small models wrap JSON in prose or code fences, use other key names or give
bare strings; all of those are accepted. What cannot be read becomes the
one-step plan "answer the request", with the reason kept for the mission.
"""
import json
import re

ACTIONS = ("answer", "search", "ask", "tool")
MAX_STEPS = 5
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)
_ALIASES = {"action": "do", "type": "do", "step": "input", "query": "input", "text": "input",
            "question": "input", "task": "input"}


def one_step(request, mind):
    return [{"do": "answer", "input": request, "mind": mind}]


def parse_plan(text, request, mind, *, tools=(), max_steps=MAX_STEPS):
    """``(steps, note)``: the steps, and why the fallback was used (None when parsed)."""
    data, why = _find_json(text)
    if data is None:
        return one_step(request, mind), why
    if isinstance(data, dict):
        data = data.get("steps") or data.get("plan")
    if not isinstance(data, list) or not data:
        return one_step(request, mind), "the plan is not a non-empty list of steps"
    steps = []
    for raw in data[:max_steps]:
        step = _step(raw, mind, tools)
        if step is None:
            return one_step(request, mind), f"step {raw!r:.80} is not understood"
        steps.append(step)
    return steps, None


def _find_json(text):
    candidates = [m.group(1) for m in _FENCE.finditer(text)]
    for open_, close in (("[", "]"), ("{", "}")):
        start, end = text.find(open_), text.rfind(close)
        if 0 <= start < end:
            candidates.append(text[start:end + 1])
    for c in candidates:
        try:
            return json.loads(c), None
        except ValueError:
            continue
    return None, "no JSON plan in the answer"


def _step(raw, mind, tools):
    if isinstance(raw, str) and raw.strip():
        return {"do": "answer", "input": raw.strip(), "mind": mind}
    if not isinstance(raw, dict):
        return None
    step = {_ALIASES.get(k, k): v for k, v in raw.items()}
    do = str(step.get("do", "answer")).lower().strip()
    text = step.get("input")
    if text is None and do == "tool":
        text = ""                        # a tool may need no input
    if do not in ACTIONS or not isinstance(text, str) or (do != "tool" and not text.strip()):
        return None
    out = {"do": do, "input": text.strip(), "mind": mind}
    if do == "ask":
        out["mind"] = "orai" if mind == "hermes" else "hermes"
    if do == "tool":
        if step.get("tool") not in tools:
            return None
        out["tool"] = step["tool"]
    return out
