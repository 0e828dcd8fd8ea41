"""Our own red team: attacks on the promise that generated code cannot hurt the image.

Each attack is a method a mind could write, installed on ``target`` as
mind-written (so it runs isolated) and called by ``tests/red_team_run.py``
in a subprocess of its own, with a hard timeout (``tests/test_red_team.py``).
The image each runs against (see ``red_team_run.setup``):

- ``target``: items=[1, 2], cfg={'a': {'b': 1}}, counts={}, tags={'x'}, n=5,
  text='hello', friend=other, boss=hermes, parent ``traits``; an owner-written
  ``helper`` (returns n); ungranted mind methods ``make_writer`` (returns a
  closure writing ``friend.secret``) and ``make_gen`` (a generator doing so);
- ``other``: items=[1], identity='i', secret='s', a method ``greet``;
- ``traits.method_limits``: 1 s, 64 MB, 256 KB.

Expectations: ``rejected`` (the guardians refuse it, with ``rule``),
``fails`` (the call raises; optionally of ``kind``, a LimitExceeded kind or an
exception name), ``ok`` (it succeeds, and ``after`` holds after a reopen:
``"target.kid.items"`` is a path of slots from the root).
For every attack, the host must stay alive and responsive, the image must be
unchanged by a failing call, and a write committed afterwards must survive a
reopen. Categories: escape, limits, host, persistence.
"""
import dataclasses

from guard_corpus import HOSTILE


@dataclasses.dataclass(frozen=True)
class Attack:
    id: str
    category: str
    source: str
    expect: str                 # rejected | fails | ok
    rule: str = None            # for rejected
    kind: str = None            # for fails: LimitExceeded kind or exception type name
    args: tuple = ()
    after: dict = None          # for ok: slot -> value after a reopen
    sigint: bool = False        # the host gets Ctrl-C once the worker runs the call
    limits: dict = None         # traits.method_limits for this attack
    author: str = "mind"        # "console": an owner's method, run in process
    repeat: int = 1             # calls, each in its own transaction (state carried across)
    grants: tuple = ()          # what the owner granted the attack's method


def fn(body, params="self"):
    lines = body.strip("\n").splitlines()
    return f"def f({params}):\n" + "".join(f"    {line}\n" for line in lines)


ATTACKS = [Attack(f"static-{cid}", "escape", src, "rejected", rule=rule)
           for cid, src, rule in HOSTILE]

ATTACKS += [
    # -- state carried from one call to the next (issue 29): each call must start clean
    Attack("helper-default-carries", "persistence",
           "def helper(acc=[]):\n    acc.append(1)\n    return len(acc)\n\n\n"
           "def f(self):\n    self.n = helper()\n    return self.n\n",
           "ok", after={"target.n": 1}, repeat=3),
]

ATTACKS += [
    # -- escape: reached only at run time -------------------------------------------
    Attack("computed-getattr-dunder", "escape", fn("return getattr(self, '_' * 2 + 'class' + '_' * 2)"),
           "fails", kind="SandboxError"),
    Attack("computed-p-jar", "escape", fn("return getattr(self, '_p' + '_jar').root()"),
           "fails", kind="SandboxError"),
    Attack("format-computed-dunder", "escape",
           fn("u = '_' * 2\nreturn ('{0.' + u + 'class' + u + '}').format(self)"),
           "fails", kind="SandboxError"),
    Attack("unbound-format-globals", "escape",
           fn("u = '_' * 2\nreturn str.format('{0.helper.' + u + 'globals' + u + '}', self)"),
           "fails", kind="SandboxError"),
    Attack("format-map-walk", "escape",
           fn("u = '_' * 2\nreturn ('{x.' + u + 'dict' + u + '}').format_map({'x': self})"),
           "fails", kind="SandboxError"),
    Attack("type-view-attrs", "escape", fn("t = type(self)\nreturn t.name, t.mro"),
           "rejected", rule="frame-attribute"),
    Attack("type-three-args", "escape", fn("return type('X', (), {})"), "fails",
           kind="SandboxError"),
    Attack("type-of-proxy-call", "escape", fn("return type(self)(1, 2, 3)"), "fails",
           kind="TypeError"),
    Attack("define-from-method", "escape",
           fn("return self.define('g', 'def g(self):\\n    return 1\\n')"), "fails",
           kind="SandboxError"),
    Attack("import-os", "escape", fn("import os\nreturn os.getcwd()"), "rejected", rule="import"),
    Attack("import-submodule", "escape", fn("import collections.abc\nreturn 1"), "rejected",
           rule="import"),
    Attack("from-string-formatter", "escape", fn("from string import Formatter\nreturn 1"),
           "rejected", rule="import"),
    Attack("from-random-os", "escape", fn("from random import _os\nreturn 1"), "rejected",
           rule="import"),
    Attack("module-private", "escape", fn("import random\nreturn getattr(random, '_' + 'os')"),
           "fails", kind="SandboxError"),
    Attack("module-write", "escape", fn("import math\nmath.pi = 3\nreturn math.pi"), "fails",
           kind="SandboxError"),
    Attack("decimal-context", "escape", fn("import decimal\nreturn decimal.getcontext()"),
           "fails", kind="AttributeError"),
    Attack("partial-getattr", "escape",
           fn("import functools\ng = functools.partial(getattr, self)\nreturn g('_' + '_class__')"),
           "fails", kind="SandboxError"),
    Attack("provenance-write", "escape",
           fn("m = self.lookup('helper')\nm.source = 'def helper(self):\\n    return 0\\n'"),
           "fails", kind="SandboxError"),
    Attack("exception-obj-walk", "escape",
           fn("try:\n    self.nothing_here\nexcept AttributeError as e:\n    return e.obj"),
           "fails", kind="SandboxError"),
    Attack("generator-frame-computed", "escape",
           fn("g = (x for x in [1])\nreturn getattr(g, 'gi_' + 'frame')"), "fails",
           kind="SandboxError"),
    Attack("name-of-proxy", "escape", fn("return self.__name__"), "fails", kind="SandboxError"),
    Attack("lookup-private-slot", "escape", fn("return [self][0].lookup('_' + 'slots')"), "fails",
           kind="SandboxError"),

    # -- limits: one C call, or a loop the interpreter does not meter -----------------
    Attack("doubling-concat", "limits", fn("s = 'a' * 1000\nwhile True:\n    s = s + s"), "fails",
           kind="memory"),
    Attack("join-repeat", "limits", fn("s = 'x' * 1000\nreturn len(''.join([s] * 200000))"),
           "fails", kind="memory"),
    Attack("replace-amplify", "limits",
           fn("s = 'a' * 100000\nreturn len(s.replace('a', 'b' * 30000))"), "fails", kind="memory"),
    Attack("translate-amplify", "limits",
           fn("s = 'a' * 100000\nreturn len(s.translate({97: 'b' * 10000}))"), "fails",
           kind="memory"),
    Attack("percent-key-width", "limits", fn("return len('%(a)900000000s' % {'a': 1})"),
           "fails", kind="memory"),
    Attack("format-width", "limits", fn("return len('{0:>900000000}'.format(1))"), "fails",
           kind="memory"),
    Attack("format-nested-width", "limits", fn("return len('{:>{}}'.format(1, 900000000))"),
           "fails", kind="memory"),
    Attack("fstring-width", "limits", fn("w = 900000000\nreturn len(f'{1:>{w}}')"), "fails",
           kind="memory"),
    Attack("to-bytes", "limits", fn("return len((0).to_bytes(10**9, 'big'))"), "fails",
           kind="memory"),
    Attack("split-chars", "limits", fn("s = 'a ' * 20000000\nreturn len(s.split())"), "fails",
           kind="memory"),
    Attack("encode-utf32", "limits", fn("s = 'a' * 30000000\nreturn len(s.encode('utf-32'))"),
           "fails", kind="memory"),
    Attack("upper-big", "limits", fn("s = 'a' * 40000000\nreturn len(s.upper() + s.lower())"),
           "fails", kind="memory"),
    Attack("list-range", "limits", fn("return len(list(range(10**9)))"), "fails", kind="memory"),
    Attack("bytes-n", "limits", fn("return len(bytes(10**9))"), "fails", kind="memory"),
    Attack("bytearray-n", "limits", fn("return len(bytearray(10**9))"), "fails", kind="memory"),
    Attack("list-repeat", "limits", fn("return len([0] * 10**9)"), "fails", kind="memory"),
    Attack("ljust", "limits", fn("return len('x'.ljust(10**9))"), "fails", kind="memory"),
    Attack("center", "limits", fn("return len('x'.center(10**9))"), "fails", kind="memory"),
    Attack("zfill", "limits", fn("return len('1'.zfill(10**9))"), "fails", kind="memory"),
    Attack("expandtabs", "limits", fn("return len('\\t'.expandtabs(10**9))"), "fails",
           kind="memory"),
    Attack("set-range", "limits", fn("return len(set(range(10**8)))"), "fails", kind="memory"),
    Attack("dict-fromkeys", "limits", fn("return len(dict.fromkeys(range(10**8)))"), "fails",
           kind="memory"),
    Attack("growing-list", "limits", fn("out = []\nwhile True:\n    out.append('y' * 10**6)"),
           "fails", kind="memory"),
    Attack("deque-count", "limits",
           fn("import collections, itertools\nreturn len(collections.deque(itertools.count()))"),
           "fails", kind="memory"),
    Attack("big-power", "limits", fn("return 10 ** 10 ** 8 % 7"), "fails"),
    Attack("pow-mod-huge", "limits", fn("e = 2 ** 1000000\nreturn pow(3, e, e + 1) % 7"),
           "fails", kind="time"),
    Attack("factorial", "limits", fn("import math\nreturn math.factorial(10**7) % 7"), "fails",
           kind="time"),
    Attack("bigint-division-loop", "limits",
           fn("x = 7 ** 200000\nwhile True:\n    y = x // 3 + x % 11"), "fails", kind="time"),
    Attack("sorted-key-lambda", "limits",
           fn("xs = list(range(400000))\nreturn sorted(xs, key=lambda x: sum(range(x % 2000)))[0]"),
           "fails", kind="time"),
    Attack("hash-collisions", "limits",
           fn("d = {}\nfor i in range(200000):\n    d[i * (2**61 - 1)] = i\nreturn len(d)"),
           "fails", kind="time"),
    Attack("busy-loop", "limits", fn("while True:\n    pass"), "fails", kind="time"),
    Attack("busy-loop-except", "limits",
           fn("while True:\n    try:\n        pass\n    except Exception:\n        pass"),
           "fails", kind="time"),
    Attack("sum-count", "limits", fn("import itertools\nreturn sum(itertools.count())"), "fails",
           kind="time"),
    Attack("redos", "limits", fn("import re\nreturn bool(re.match('(a+)+$', 'a' * 40 + 'b'))"),
           "fails", kind="time"),
    Attack("product-list", "limits",
           fn("import itertools\nreturn len(list(itertools.product(range(100), repeat=6)))"),
           "fails"),
    Attack("statistics-endless", "limits",
           fn("import statistics, itertools\nreturn statistics.mean(itertools.repeat(1, 10**10))"),
           "fails"),
    Attack("textwrap-huge", "limits", fn("import textwrap\nreturn len(textwrap.fill('a ' * 10**7))"),
           "fails"),
    Attack("json-deep", "limits", fn("import json\nreturn json.loads('[' * 100000 + ']' * 100000)"),
           "fails", kind="RecursionError"),
    Attack("recursion", "limits", fn("def g(n):\n    return g(n + 1)\nreturn g(0)"), "fails",
           kind="RecursionError"),
    Attack("output-big-string", "limits", fn("return 'x' * (2 * 2**20)"), "fails", kind="output"),
    Attack("output-shared-structure", "limits",
           fn("a = [1] * 1000\nb = [a] * 1000\nc = [b] * 1000\nreturn c"), "fails"),
    Attack("output-exception", "limits", fn("return ValueError('x' * 10**6)"), "fails",
           kind="TypeError"),
    Attack("output-generator", "limits",
           fn("def g():\n    while True:\n        yield 1\nreturn g()"), "fails", kind="TypeError"),
    Attack("output-lambda", "limits", fn("return lambda: 1"), "fails", kind="TypeError"),
    Attack("print-flood", "limits", fn("while True:\n    print('x' * 10000)"), "fails"),
    Attack("zip-star", "limits", fn("return len(list(zip(*[range(10**6)] * 1000)))"), "fails"),
    Attack("random-sample-huge", "limits",
           fn("import random\nreturn len(random.sample(range(10**9), 10**8))"), "fails"),
    Attack("fraction-power", "limits",
           fn("import fractions\nreturn fractions.Fraction(10**1000, 3) ** 100000 > 1"), "fails"),

    # -- host: things that used to take the host down with them ------------------------
    Attack("deep-tuple-hash", "host",
           fn("t = ()\nfor i in range(300000):\n    t = (t,)\nreturn hash(t)"), "fails",
           kind="crash"),
    Attack("deep-map-chain", "host",
           fn("m = map(abs, [1])\nfor i in range(300000):\n    m = map(abs, m)\nreturn next(m)"),
           "fails", kind="crash"),
    Attack("finally-endless", "host",
           fn("def g():\n    try:\n        yield 1\n    finally:\n        while True:\n"
              "            pass\nit = g()\nnext(it)\nreturn 1"), "fails", kind="time"),
    Attack("finally-writes-after-failure", "host",
           fn("def g():\n    try:\n        yield 1\n    finally:\n        self.n = 99\n"
              "it = g()\nnext(it)\nreturn 1 / 0"), "fails", kind="ZeroDivisionError"),
    Attack("generator-kept-in-default", "host",
           fn("def g():\n    try:\n        yield 1\n    finally:\n        self.n = 77\n"
              "keep.append(g())\nnext(keep[-1])\nreturn 1 / 0", params="self, keep=[]"),
           "fails", kind="ZeroDivisionError"),
    # host work a method drives (issue 29): each must stay within the call's budget
    Attack("diamond-cycle-message", "host",
           fn("dead = [self.clone(), self.clone()]\nfor i in range(40):\n"
              "    a = self.clone()\n    b = self.clone()\n"
              "    for o in (a, b):\n        o.set_slot('p1*', dead[0])\n"
              "        o.set_slot('p2*', dead[1])\n    dead = [a, b]\n"
              "top = self.clone()\nn = self.clone()\nn.set_slot('p1*', dead[0])\n"
              "n.set_slot('p2*', top)\ntop.set_slot('back*', n)\nreturn 1"), "fails",
           kind="RemoteError"),
    Attack("all-slot-names-quadratic", "host",
           fn("c = self\nfor k in range(3):\n"
              "    c = c.clone(**{'s%d_%d' % (k, i): 0 for i in range(12000)})\n"
              "return len(c.all_slot_names())"), "ok", after={"target.n": 5}),
    Attack("astral-writes-grow-host", "host",
           fn("s = 'a' * (250 * 1024) + chr(0x1F600)\nfor i in range(90):\n"
              "    self.set_slot('t%d' % i, s)\nreturn 1"), "fails", kind="output"),
    Attack("bare-except-ctrl-c", "host",
           fn("while True:\n    try:\n        x = 1\n    except:\n        pass"), "fails",
           kind="KeyboardInterrupt", sigint=True),
    Attack("dnu-trap-on-traits", "host",
           fn("traits = self.lookup_chain()[-1]\ntraits.doesNotUnderstand = 1\nreturn 1"), "fails",
           kind="PermissionError"),
    Attack("raise-own-limits", "host",
           fn("self.method_limits = {'seconds': 1000.0}\nreturn 1"), "fails",
           kind="PermissionError"),
    Attack("raise-traits-limits", "host",
           fn("traits = self.lookup_chain()[-1]\ntraits.method_limits['seconds'] = 1000.0\nreturn 1"),
           "fails", kind="PermissionError"),
    Attack("mutate-inherited-limits", "host",
           fn("self.method_limits['seconds'] = 1000.0\nreturn 1"), "fails",
           kind="PermissionError"),
    Attack("caught-refusal-still-fails", "host",
           fn("try:\n    self.friend.secret = 'leaked'\nexcept Exception:\n    pass\nreturn 'fine'"),
           "fails", kind="PermissionError"),
    Attack("system-exit", "host", fn("raise SystemExit(1)"), "fails", kind="NameError"),
    Attack("keyboard-interrupt-raise", "host", fn("raise KeyboardInterrupt"), "fails",
           kind="NameError"),
    Attack("exit-call", "host", fn("exit(1)"), "rejected", rule="forbidden-name"),
    Attack("many-calls-one-worker", "host",
           fn("total = 0\nfor i in range(20):\n    total = total + self.helper()\nreturn total"),
           "ok", after={"target.n": 5}),

    # -- persistence: writes that used to be lost, or land where they should not ---------
    Attack("append-persists", "persistence", fn("self.items.append(3)\nreturn len(self.items)"),
           "ok", after={"target.items": [1, 2, 3]}),
    Attack("nested-setitem-persists", "persistence", fn("self.cfg['a']['b'] = 2\nreturn 1"),
           "ok", after={"target.cfg": {"a": {"b": 2}}}),
    Attack("counts-augitem-persists", "persistence",
           fn("for w in ['a', 'b', 'a']:\n    self.counts[w] = self.counts.get(w, 0) + 1\n"
              "self.counts['a'] += 10\nreturn dict(self.counts)"),
           "ok", after={"target.counts": {"a": 12, "b": 1}}),
    Attack("set-add-persists", "persistence", fn("self.tags.add('y')\nreturn len(self.tags)"),
           "ok", after={"target.tags": {"x", "y"}}),
    Attack("assign-then-append", "persistence",
           fn("self.log = []\nself.log.append('one')\nself.log.append('two')\nreturn 1"),
           "ok", after={"target.log": ["one", "two"]}),
    Attack("sort-in-place-persists", "persistence",
           fn("self.items.append(0)\nself.items.sort()\nreturn list(self.items)"),
           "ok", after={"target.items": [0, 1, 2]}),
    Attack("pop-and-remove-persist", "persistence",
           fn("self.items.pop()\nself.items.remove(1)\nreturn len(self.items)"),
           "ok", after={"target.items": []}),
    Attack("clone-and-keep", "persistence",
           fn("c = self.clone(n=1)\nc.items.append(9)\nself.kid = c\nreturn c.n"),
           "ok", after={"target.items": [1, 2], "target.kid.items": [1, 2, 9], "target.kid.n": 1}),
    Attack("append-then-raise", "persistence", fn("self.items.append(3)\nreturn 1 / 0"), "fails",
           kind="ZeroDivisionError"),
    Attack("write-then-limit", "persistence", fn("self.n = 6\nwhile True:\n    pass"), "fails",
           kind="time"),
    Attack("write-then-crash", "persistence",
           fn("self.n = 6\nself.items.append(4)\nt = ()\nfor i in range(300000):\n"
              "    t = (t,)\nreturn hash(t)"), "fails", kind="crash"),
    Attack("write-parent", "persistence", fn("traits = self.lookup_chain()[-1]\ntraits.x = 1"),
           "fails", kind="PermissionError"),
    Attack("replace-parent", "persistence", fn("self.set_slot('parent*', self.friend)"), "fails",
           kind="PermissionError"),
    Attack("write-other-identity", "persistence", fn("self.friend.identity = 'evil'"), "fails",
           kind="PermissionError"),
    Attack("append-other-items", "persistence", fn("self.friend.items.append(666)"), "fails",
           kind="PermissionError"),
    Attack("alias-other-items", "persistence",
           fn("self.mine = self.friend.items\nself.mine.append(666)\nreturn list(self.friend.items)"),
           "ok", after={"other.items": [1], "target.mine": [1, 666]}),
    Attack("alias-then-mutate-later", "persistence",
           fn("self.backup = self.friend.items\nreturn 1"), "ok",
           after={"other.items": [1], "target.backup": [1]}),
    Attack("smuggle-in-append", "persistence",
           fn("self.items.append(self.friend.items)\nself.items[-1].append(5)\nreturn 1"), "ok",
           after={"other.items": [1], "target.items": [1, 2, [1, 5]]}),
    Attack("delete-other-method", "persistence", fn("del self.friend.greet"), "fails",
           kind="PermissionError"),
    Attack("overwrite-own-method", "persistence", fn("self.helper = 'gone'"), "fails",
           kind="PermissionError"),
    Attack("delete-own-method", "persistence", fn("self.remove_slot('helper')"), "fails",
           kind="PermissionError"),
    Attack("delete-inherited-describe", "persistence",
           fn("traits = self.lookup_chain()[-1]\ndel traits.describe"), "fails",
           kind="PermissionError"),
    Attack("lambda-in-slot", "persistence", fn("self.cb = lambda: 1\nreturn 1"), "fails",
           kind="TypeError"),
    Attack("generator-in-slot", "persistence", fn("self.g = (i for i in range(3))\nreturn 1"),
           "fails", kind="TypeError"),
    Attack("private-slot-write", "persistence", fn("setattr(self, '_' + 'slots', {})"), "fails",
           kind="SandboxError"),
    Attack("set-slot-private", "persistence", fn("self.set_slot('_' + 'p_jar', 1)"), "fails",
           kind="SandboxError"),
    Attack("clone-private-slot", "persistence", fn("return self.clone(**{'_' + 'x': 1})"),
           "fails", kind="SandboxError"),
    Attack("clone-raises-limits", "host",
           fn("self.kid = self.clone(method_limits={'seconds': 30.0, 'memory_mb': 100000.0})"),
           "fails", kind="PermissionError"),
    Attack("clone-then-set-limits", "host",
           fn("c = self.clone()\nc.method_limits = {'seconds': 30.0}\nself.kid = c"), "fails",
           kind="PermissionError"),
    Attack("shadow-inherited-method", "persistence", fn("self.describe = 'gone'"), "fails",
           kind="PermissionError"),
    Attack("clone-keeps-others-list", "persistence",
           fn("self.kid = self.clone(items=self.friend.items)\nself.kid.items.append(666)\n"
              "return 1"), "ok", after={"other.items": [1], "target.kid.items": [1, 666]}),
    Attack("huge-write", "limits", fn("self.s0 = [0] * 1500000"), "fails", kind="output"),
    Attack("write-hermes-routing", "persistence",
           fn("self.boss.routing['keywords'].append('mine')\nreturn 1"), "fails",
           kind="PermissionError"),
    Attack("replace-hermes-identity", "persistence", fn("self.boss.identity = 'evil'"), "fails",
           kind="PermissionError"),
    Attack("write-own-slot-of-well-known", "persistence",
           fn("self.boss.set_slot('extra', 1)"), "fails", kind="PermissionError"),
    # writes that were lost or half-undone (issue 29): each persists as plain Python says
    Attack("alias-imul-list", "persistence", fn("L = self.items\nL *= 2\nreturn len(self.items)"),
           "ok", after={"target.items": [1, 2, 1, 2]}),
    Attack("alias-ixor-set", "persistence", fn("t = self.tags\nt ^= {'y'}\nreturn len(t)"),
           "ok", after={"target.tags": {"x", "y"}}),
    Attack("alias-isub-set", "persistence", fn("t = self.tags\nt -= {'x'}\nreturn len(t)"),
           "ok", after={"target.tags": set()}),
    Attack("alias-iand-set", "persistence", fn("t = self.tags\nt &= {'z'}\nreturn len(t)"),
           "ok", after={"target.tags": set()}),
    Attack("popitem-last", "persistence",
           fn("self.cfg['z'] = 1\nk, v = self.cfg.popitem()\nself.text = k\nreturn k"),
           "ok", after={"target.text": "z", "target.cfg": {"a": {"b": 1}}}),
    # a grant lent to code another method made (issue 29): bound to its maker's rights
    Attack("granted-runs-ungranted-closure", "persistence", fn("self.make_writer()()\nreturn 1"),
           "fails", kind="PermissionError", grants=("others",)),
    Attack("granted-iterates-ungranted-generator", "persistence",
           fn("for _ in self.make_gen():\n    pass\nreturn 1"), "fails", kind="PermissionError",
           grants=("others",)),
    Attack("granted-own-closure-writes", "persistence",
           fn("def w():\n    self.friend.secret = 'mine'\nw()\nreturn 1"), "ok",
           after={"other.secret": "mine"}, grants=("others",)),
    Attack("raw-data-append", "persistence", fn("self.items.data.append(3)\nreturn 1"),
           "fails", kind="AttributeError"),
    Attack("raw-data-set", "persistence", fn("self.tags.data.add('y')\nreturn 1"),
           "fails", kind="AttributeError"),
    Attack("store-deque", "persistence",
           fn("import collections\nself.q = collections.deque([1])\nself.q.append(2)\nreturn 1"),
           "fails", kind="TypeError"),
    Attack("store-bytearray", "persistence",
           fn("self.b = bytearray(b'a')\nself.b.extend(b'b')\nreturn 1"), "fails"),
    Attack("store-chainmap", "persistence",
           fn("import collections\nself.m = collections.ChainMap({'a': 1})\nself.m['b'] = 2\n"
              "return 1"), "fails", kind="TypeError"),
    Attack("store-namedtuple-with-list", "persistence",
           fn("import collections\nP = collections.namedtuple('P', 'a')\nself.p = P([1])\n"
              "return 1"), "fails", kind="TypeError"),
]

# The owner's path (in process, the interpreter's budget): an owner's mistakes are contained too.
ATTACKS += [
    dataclasses.replace(a, id=f"owner-{a.id}", author="console")
    for a in ATTACKS if a.id in (
        "busy-loop", "busy-loop-except", "list-repeat", "growing-list", "ljust", "bytes-n",
        "list-range", "big-power", "output-big-string", "recursion", "append-then-raise",
        "write-then-limit", "append-persists", "counts-augitem-persists", "alias-imul-list",
        "alias-ixor-set", "alias-isub-set", "alias-iand-set", "popitem-last", "store-deque",
        "store-bytearray", "store-chainmap", "store-namedtuple-with-list",
        "finally-writes-after-failure", "generator-kept-in-default", "raw-data-append",
        "raw-data-set")]
ATTACKS += [
    Attack("owner-repeat-huge", "limits", fn("return len('x' * 10**10)"), "fails", kind="memory",
           author="console"),
]

IDS = {a.id: a for a in ATTACKS}
assert len(IDS) == len(ATTACKS), "attack ids are unique"
