"""No test asserts something that cannot fail.

An AST scan of every test module: an ``assert`` whose test is a true constant
(True, 1, "x"), a non-empty tuple (``(x, "why")`` in parentheses: always true),
or an ``or`` with a true constant among its operands (``x or True``) is
refused, with its file and line.
"""
import ast
from pathlib import Path

HERE = Path(__file__).resolve().parent


def always_true(node) -> bool:
    """Is this expression true whatever the program does?"""
    if isinstance(node, ast.Constant):
        return bool(node.value)
    if isinstance(node, (ast.Tuple, ast.List, ast.Set, ast.Dict)):
        return bool(node.elts if not isinstance(node, ast.Dict) else node.keys)
    if isinstance(node, ast.BoolOp):
        parts = [always_true(v) for v in node.values]
        return any(parts) if isinstance(node.op, ast.Or) else all(parts)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return always_false(node.operand)
    return False


def always_false(node) -> bool:
    if isinstance(node, ast.Constant):
        return not node.value
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return not node.elts
    return False


def vacuous(source, name="<test>"):
    """``file:line: assert ...`` for each assertion in ``source`` that cannot fail."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Assert) and always_true(node.test):
            out.append(f"{name}:{node.lineno}: {ast.unparse(node)[:80]}")
    return out


def test_the_scan_finds_what_cannot_fail_and_nothing_else():
    # spelled without the keyword, so that a grep for vacuous asserts does not find these
    bad = ["True", "1", "'x'", "x or True", "(x, 'why')", "x or 1 or y", "not None", "[x]",
           "(x and True) or 3"]
    good = ["x", "x or y", "x and True", "not x", "x == 1", "(x)", "x, 'why'", "f() or g()",
            "False or x"]
    assert [len(vacuous("assert " + src)) for src in bad] == [1] * len(bad)
    assert [vacuous("assert " + src) for src in good] == [[]] * len(good)


def test_no_test_asserts_what_cannot_fail():
    found = [hit for f in sorted(HERE.glob("*.py"))
             for hit in vacuous(f.read_text(), f.name)]
    assert found == [], "\n".join(found)
