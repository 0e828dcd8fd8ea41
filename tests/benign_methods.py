"""Benign methods written the way language models write them.

Hand-written in the style of the answers models give to self-extension's
prompt (helper functions named ``_x``, ``for _ in``, in-place changes to slot
containers, imports of math/re/collections, annotated locals, ``nonlocal``,
``type(x).__name__``, ``str.format`` with a template); every pattern the issue
found refused or broken is here. The answers the bundled model actually gave
are in ``tests/data/model_methods.json`` (``bench/collect_methods.py``).

Each entry: (id, source, slots of the receiver, args, expected result,
slot values after the call has committed and the image was reopened).
"""

BENIGN = [
    ("underscore-loop", "def repeat(self, n):\n    out = []\n    for _ in range(n):\n"
     "        out.append(self.word)\n    return ' '.join(out)\n", {"word": "hi"}, (3,), "hi hi hi", {}),
    ("divmod-underscore", "def fives(self, x):\n    q, _ = divmod(x, 5)\n    return q\n",
     {}, (17,), 3, {}),
    ("lambda-underscore", "def constant(self, xs):\n    f = lambda _: 7\n    return [f(x) for x in xs]\n",
     {}, ([1, 2],), [7, 7], {}),
    ("private-helper", "def quad(self, x):\n    def _double(y):\n        return y * 2\n"
     "    return _double(_double(x))\n", {}, (3,), 12, {}),
    ("private-locals", "def total(self, xs):\n    _sum = 0\n    for _x in xs:\n        _sum += _x\n"
     "    return _sum\n", {}, ([1, 2, 3],), 6, {}),
    ("word-counts", "def count_words(self, text):\n    counts = {}\n    for w in text.split():\n"
     "        counts.setdefault(w.lower(), 0)\n        counts[w.lower()] += 1\n    return counts\n",
     {}, ("A a b",), {"a": 2, "b": 1}, {}),
    ("grid-augitem", "def spread(self, n):\n    grid = [0] * (n + 1)\n    for i in range(n):\n"
     "        grid[i + 1] += i\n    return grid\n", {}, (3,), [0, 0, 1, 2], {}),
    ("annotated-local", "def area(self, w: float, h: float) -> float:\n    result: float = w * h\n"
     "    return result\n", {}, (2.0, 3.0), 6.0, {}),
    ("annotation-only", "def describe_n(self):\n    label: str\n    label = f'n={self.n}'\n"
     "    return label\n", {"n": 4}, (), "n=4", {}),
    ("nonlocal-counter", "def tally(self, xs):\n    count = 0\n    def bump():\n        nonlocal count\n"
     "        count += 1\n    for x in xs:\n        if x:\n            bump()\n    return count\n",
     {}, ([1, 0, 2],), 2, {}),
    ("type-name", "def kind_of(self, x):\n    return type(x).__name__\n", {}, ([1],), "list", {}),
    ("type-name-slot", "def kind_of_items(self):\n    return type(self.items).__name__\n",
     {"items": [1]}, (), "list", {}),
    ("template-format", "def greet(self, name):\n    template = self.template\n"
     "    return template.format(name)\n", {"template": "Hello, {}!"}, ("Bob",), "Hello, Bob!", {}),
    ("format-index", "def show(self, d):\n    return '{0[name]} is {0[age]}'.format(d)\n",
     {}, ({"name": "Ann", "age": 5},), "Ann is 5", {}),
    ("format-kw", "def card(self):\n    return '{name}: {n:>3}'.format(name=self.name, n=self.n)\n",
     {"name": "box", "n": 7}, (), "box:   7", {}),
    ("format-map", "def fill(self, values):\n    return 'x={x}'.format_map(values)\n",
     {}, ({"x": 1},), "x=1", {}),
    ("import-math", "def hyp(self, a, b):\n    import math\n    return math.hypot(a, b)\n",
     {}, (3, 4), 5.0, {}),
    ("from-import", "def root(self, x):\n    from math import sqrt, floor\n    return floor(sqrt(x))\n",
     {}, (17,), 4, {}),
    ("import-as", "def mean_of(self, xs):\n    import statistics as st\n    return st.mean(xs)\n",
     {}, ([1, 2, 3],), 2, {}),
    ("counter", "def top(self, text):\n    from collections import Counter\n"
     "    return Counter(text.split()).most_common(1)[0][0]\n", {}, ("a b a",), "a", {}),
    ("defaultdict", "def group(self, words):\n    from collections import defaultdict\n"
     "    out = defaultdict(list)\n    for w in words:\n        out[w[0]].append(w)\n"
     "    return dict(out)\n", {}, (["ab", "ac", "b"],), {"a": ["ab", "ac"], "b": ["b"]}, {}),
    ("regex", "def numbers(self, text):\n    import re\n    return [int(n) for n in re.findall(r'\\d+', text)]\n",
     {}, ("a1b22",), [1, 22], {}),
    ("json", "def roundtrip(self, d):\n    import json\n    return json.loads(json.dumps(d))\n",
     {}, ({"a": [1, 2]},), {"a": [1, 2]}, {}),
    ("datetime", "def days(self, a, b):\n    from datetime import date\n"
     "    return (date.fromisoformat(b) - date.fromisoformat(a)).days\n",
     {}, ("2024-01-01", "2024-03-01"), 60, {}),
    ("itertools", "def pairs(self, xs):\n    import itertools\n    return list(itertools.combinations(xs, 2))\n",
     {}, ([1, 2, 3],), [(1, 2), (1, 3), (2, 3)], {}),
    ("functools", "def product(self, xs):\n    from functools import reduce\n"
     "    return reduce(lambda a, b: a * b, xs, 1)\n", {}, ([2, 3, 4],), 24, {}),
    ("textwrap", "def wrap(self, text):\n    import textwrap\n    return textwrap.wrap(text, 5)\n",
     {}, ("aaa bbb ccc",), ["aaa", "bbb", "ccc"], {}),
    ("string-consts", "def letters(self, text):\n    import string\n"
     "    return ''.join(c for c in text if c in string.ascii_letters)\n", {}, ("a1b2",), "ab", {}),
    ("fractions", "def half(self, n):\n    from fractions import Fraction\n    return str(Fraction(n, 2))\n",
     {}, (3,), "3/2", {}),
    ("decimal", "def money(self, a, b):\n    from decimal import Decimal\n"
     "    return str(Decimal(a) + Decimal(b))\n", {}, ("0.10", "0.20"), "0.30", {}),
    ("random-seeded", "def pick(self, xs):\n    import random\n    random.seed(1)\n"
     "    return sorted(random.sample(xs, 2)) == sorted(set(random.sample(xs, 2))) or True\n",
     {}, ([1, 2, 3, 4],), True, {}),
    ("range-attrs", "def span(self, n):\n    r = range(n)\n    return r.start, r.stop, isinstance(r, range)\n",
     {}, (10**6,), (0, 10**6, True), {}),
    ("big-sum", "def squares(self, n):\n    return sum(i * i for i in range(n))\n",
     {}, (10**6,), 333332833333500000, {}),
    ("isinstance-list", "def flatten(self, xs):\n    out = []\n    for x in xs:\n"
     "        if isinstance(x, list):\n            out.extend(x)\n        else:\n            out.append(x)\n"
     "    return out\n", {}, ([1, [2, 3]],), [1, 2, 3], {}),
    ("isinstance-slot-list", "def is_list(self):\n    return isinstance(self.items, list)\n",
     {"items": [1]}, (), True, {}),
    ("append-slot", "def add_item(self, item):\n    self.items.append(item)\n    return len(self.items)\n",
     {"items": ["a"]}, ("b",), 2, {"items": ["a", "b"]}),
    ("dict-slot-inplace", "def remember(self, key, value):\n    self.memory[key] = value\n"
     "    return sorted(self.memory)\n", {"memory": {"a": 1}}, ("b", 2), ["a", "b"],
     {"memory": {"a": 1, "b": 2}}),
    ("counter-slot", "def bump(self, word):\n    self.counts[word] = self.counts.get(word, 0) + 1\n"
     "    return self.counts[word]\n", {"counts": {}}, ("x",), 1, {"counts": {"x": 1}}),
    ("augitem-slot", "def tally(self, k):\n    self.counts[k] += 1\n    return self.counts[k]\n",
     {"counts": {"x": 1}}, ("x",), 2, {"counts": {"x": 2}}),
    ("nested-slot", "def set_deep(self, v):\n    self.tree['a']['b'] = v\n    return self.tree['a']\n",
     {"tree": {"a": {"b": 1}}}, (5,), {"b": 5}, {"tree": {"a": {"b": 5}}}),
    ("set-slot", "def tag(self, t):\n    self.tags.add(t)\n    return sorted(self.tags)\n",
     {"tags": {"x"}}, ("y",), ["x", "y"], {"tags": {"x", "y"}}),
    ("alias-slot", "def push(self, x):\n    items = self.items\n    items.extend([x, x])\n"
     "    return len(items)\n", {"items": []}, (1,), 2, {"items": [1, 1]}),
    ("del-key", "def forget(self, k):\n    del self.cfg[k]\n    return list(self.cfg)\n",
     {"cfg": {"a": 1, "b": 2}}, ("a",), ["b"], {"cfg": {"b": 2}}),
    ("pop-item", "def take(self):\n    return self.items.pop(0)\n", {"items": [4, 5]}, (), 4,
     {"items": [5]}),
    ("sort-slot", "def order(self):\n    self.items.sort(reverse=True)\n    return self.items[0]\n",
     {"items": [1, 3, 2]}, (), 3, {"items": [3, 2, 1]}),
    ("new-slot-then-append", "def start_log(self, line):\n    self.log = []\n"
     "    self.log.append(line)\n    return len(self.log)\n", {}, ("x",), 1, {"log": ["x"]}),
    ("counter-attr", "def increment(self):\n    self.count += 1\n    return self.count\n",
     {"count": 1}, (), 2, {"count": 2}),
    ("short-name", "def label(self):\n    return f'<{self.short_name()}>'\n", {"name": "box"}, (),
     "<box>", {}),
    ("slot-names", "def fields(self):\n    return [n for n in self.slot_names() if not n.endswith('*')]\n",
     {"name": "o", "a": 1}, (), ["name", "a", "fields"], {}),
    ("lookup-default", "def current_mood(self):\n    return self.lookup('mood', 'calm')\n", {}, (), "calm", {}),
    ("getattr-default", "def color_or_none(self):\n    return getattr(self, 'color', 'none')\n", {}, (),
     "none", {}),
    ("hasattr", "def has_n(self):\n    return hasattr(self, 'n')\n", {"n": 1}, (), True, {}),
    ("call-other-method", "def twice(self, x):\n    return self.double(x) + self.double(x)\n",
     {"methods": {"double": "def double(self, x):\n    return 2 * x\n"}}, (3,), 12, {}),
    ("clone-child", "def spawn(self):\n    child = self.clone(name='child')\n    child.n = 9\n"
     "    self.kid = child\n    return child.n\n", {"name": "mom", "n": 1}, (), 9, {"n": 1}),
    ("try-except-key", "def safe_get(self, k):\n    try:\n        return self.cfg[k]\n"
     "    except KeyError:\n        return None\n", {"cfg": {}}, ("x",), None, {}),
    ("while-loop", "def collatz(self, n):\n    steps = 0\n    while n != 1:\n"
     "        n = n // 2 if n % 2 == 0 else 3 * n + 1\n        steps += 1\n    return steps\n",
     {}, (27,), 111, {}),
    ("recursion", "def fact(self, n):\n    if n <= 1:\n        return 1\n    return n * self.fact(n - 1)\n",
     {}, (10,), 3628800, {}),
    ("generator-helper", "def evens(self, n):\n    def gen():\n        for i in range(n):\n"
     "            if i % 2 == 0:\n                yield i\n    return list(gen())\n", {}, (7,),
     [0, 2, 4, 6], {}),
    ("sorted-key", "def by_len(self, words):\n    return sorted(words, key=lambda w: (len(w), w))\n",
     {}, (["ccc", "a", "bb"],), ["a", "bb", "ccc"], {}),
    ("dict-items", "def inverse(self, d):\n    return {v: k for k, v in d.items()}\n",
     {}, ({"a": 1},), {1: "a"}, {}),
    ("fstring-spec", "def money(self, x):\n    return f'{x:,.2f}'\n", {}, (1234.5,), "1,234.50", {}),
    ("bytes-work", "def checksum(self, text):\n    return sum(text.encode('utf-8')) % 256\n",
     {}, ("abc",), 38, {}),
    ("print-ok", "def noisy(self):\n    print('working')\n    return 1\n", {}, (), 1, {}),
    ("docstring", 'def describe_me(self):\n    """Say what I am."""\n    return self.name\n',
     {"name": "me"}, (), "me", {}),
    ("str-methods", "def slug(self, text):\n    return '-'.join(text.lower().split())\n",
     {}, ("Hello World",), "hello-world", {}),
    ("set-ops", "def common(self, a, b):\n    return sorted(set(a) & set(b))\n",
     {}, ([1, 2, 3], [2, 3, 4]), [2, 3], {}),
    ("enumerate-start", "def numbered(self, xs):\n    return [f'{i}. {x}' for i, x in enumerate(xs, 1)]\n",
     {}, (["a", "b"],), ["1. a", "2. b"], {}),
    ("zip-dict", "def pair_up(self, keys, values):\n    return dict(zip(keys, values))\n",
     {}, (["a", "b"], [1, 2]), {"a": 1, "b": 2}, {}),
    ("min-max-key", "def longest(self, words):\n    return max(words, key=len)\n",
     {}, (["a", "ccc", "bb"],), "ccc", {}),
    ("inherited-method-binds-to-each", "def both(self):\n    kid = self.clone(name='kid')\n"
     "    return self.describe(), kid.describe()\n", {"name": "mom"}, (),
     ("mom: name, both", "kid: name, both"), {}),
    ("big-alloc-within-ceiling", "def buffer(self):\n    block = 'x' * (40 * 2**20)\n"
     "    return len(block)\n", {}, (), 40 * 2**20, {}),
    ("does-not-understand", "def doesNotUnderstand(self, message):\n"
     "    return f'{message.receiver.short_name()} has no {message.selector}{message.args}'\n",
     {"name": "box"}, (), "box has no size()", {}),
    ("top-level-helper", "def _clean(word):\n    return word.strip().lower()\n\n"
     "def normalized(self, words):\n    return [_clean(w) for w in words]\n\n"
     "def describe(self):\n    return 'an echo of the prompt'\n", {}, ([" A", "b "],), ["a", "b"], {}),
    ("same-name-twice", "def twice(self, x):\n    return x\n\ndef twice(self, x):\n    return 2 * x\n",
     {}, (4,), 8, {}),
    ("unbound-container-methods", "def merge(self, extra):\n    dict.update(self.cfg, extra)\n"
     "    list.append(self.items, len(self.cfg))\n    set.add(self.tags, 'z')\n"
     "    return type(self.items) is list, type([]) is list, list.__name__\n",
     {"cfg": {"a": 1}, "items": [], "tags": {"x"}}, ({"b": 2},), (True, True, "list"),
     {"cfg": {"a": 1, "b": 2}, "items": [2], "tags": {"x", "z"}}),
    ("changed-marker", "def remember(self, x):\n    self.items.append(x)\n"
     "    self._p_changed = True\n    return len(self.items)\n", {"items": [1]}, (2,), 2,
     {"items": [1, 2]}),
    ("mutable-default-per-call", "def count(self, seen=[]):\n    seen.append(1)\n"
     "    return len(seen)\n", {}, (), 1, {}),
    ("any-all", "def checks(self, xs):\n    return any(x > 2 for x in xs), all(x > 0 for x in xs)\n",
     {}, ([1, 3],), (True, True), {}),
]

assert len({b[0] for b in BENIGN}) == len(BENIGN), "benign ids are unique"
