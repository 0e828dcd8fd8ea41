"""Guardians: nothing enters the image unvetted.

``vet(source)`` runs the security guardian, the persistence covenant and
RestrictedPython's compiler over method source and returns a Verdict with
every reason (rule, line). Every verdict is logged; a rejected method is
never compiled into a callable, never installed and never persisted.
"""
import ast

from . import covenant, security
from .verdict import GuardianRejection, Reason, Verdict

__all__ = ["vet", "Verdict", "Reason", "GuardianRejection"]


def vet(source, receiver=None, name=None, covenant_check=True, metered=True) -> Verdict:
    """Judge method ``source``; ``receiver`` (a prototype) refines the covenant.

    ``covenant_check=False`` is for recompiling a method that was vetted when
    it was installed (the covenant depends on the receiver it was installed on);
    the security checks always run. ``metered=False`` prepares the code for an
    isolated worker (no in-interpreter meters: the operating system bounds it).
    """
    verdict = Verdict(source if isinstance(source, str) else "", name=name)
    if not isinstance(source, str):
        verdict.reasons.append(Reason("syntax", None, f"source must be text, not {type(source).__name__}"))
        return verdict.log()
    if len(source) > security.MAX_SOURCE:
        verdict.reasons.append(Reason("too-large", None,
                                      f"source is {len(source)} characters (limit {security.MAX_SOURCE})"))
        return verdict.log()
    try:
        tree = ast.parse(source, filename=f"<method {name or ''}>")
    except SyntaxError as e:
        verdict.reasons.append(Reason("syntax", e.lineno, f"not valid Python: {e.msg}"))
        return verdict.log()
    except (ValueError, RecursionError, MemoryError) as e:
        verdict.reasons.append(Reason("syntax", None, f"not valid Python: {type(e).__name__}: {e}"))
        return verdict.log()
    try:
        _judge(verdict, tree, receiver, covenant_check, metered, name)
    except (RecursionError, MemoryError) as e:
        verdict.reasons.append(Reason("too-complex", None,
                                      f"the code nests too deeply to be checked ({type(e).__name__}); "
                                      "split it into simpler statements"))
        verdict.tree = None
    return verdict.log()


def _judge(verdict, tree, receiver, covenant_check, metered=True, name=None):
    verdict.reasons.extend(security.check(tree, name))
    fn, _ = security.find_function(tree, name)
    if fn is not None:
        verdict.function = fn.name
        if covenant_check:
            verdict.reasons.extend(covenant.check(fn, receiver))
    if verdict.accepted:
        from .rewrite import RewriteError, rewrite
        from .sandbox import restricted_errors
        try:
            rewritten = rewrite(tree, fn, metered)
        except RewriteError as e:
            verdict.reasons.append(Reason("restricted-python", None, str(e)))
            return
        for err in restricted_errors(rewritten):
            verdict.reasons.append(Reason("restricted-python", _line_of(err), err))
        if verdict.accepted:
            verdict.tree = rewritten


def _line_of(message):
    import re
    m = re.match(r"Line (\d+):", message)
    return int(m.group(1)) if m else None
