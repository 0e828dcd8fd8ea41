"""The guardians' test corpus: hostile method sources (each must be rejected)
and benign ones (each must be accepted and then behave as stated).

Hostile cases are sandbox-escape techniques seen against Python sandboxes
(RestrictedPython CVEs, CTF "pyjail" write-ups) plus covenant violations and
text that is not a method at all. Each entry: (id, source, rule expected).
"""

HOSTILE = [
    ("subclasses", "def f(self):\n    return ().__class__.__bases__[0].__subclasses__()\n", "private-attribute"),
    ("import-os", "def f(self):\n    import os\n    return os.getcwd()\n", "import"),
    ("from-import", "def f(self):\n    from os import system\n    system('id')\n", "import"),
    ("dunder-import", "def f(self):\n    return __import__('os').system('id')\n", "forbidden-name"),
    ("eval", "def f(self):\n    return eval('1+1')\n", "forbidden-name"),
    ("exec", "def f(self):\n    exec('x = 1')\n", "forbidden-name"),
    ("compile", "def f(self):\n    return compile('1', 'x', 'eval')\n", "forbidden-name"),
    ("open", "def f(self):\n    return open('/etc/passwd').read()\n", "forbidden-name"),
    ("globals", "def f(self):\n    return globals()\n", "forbidden-name"),
    ("locals", "def f(self):\n    return locals()\n", "forbidden-name"),
    ("vars", "def f(self):\n    return vars(self)\n", "forbidden-name"),
    ("breakpoint", "def f(self):\n    breakpoint()\n", "forbidden-name"),
    ("input", "def f(self):\n    return input('password: ')\n", "forbidden-name"),
    ("getattr-dunder", "def f(self):\n    return getattr(self, '__class__')\n", "private-attribute"),
    ("setattr-p-jar", "def f(self):\n    setattr(self, '_p_jar', None)\n", "private-attribute"),
    ("hasattr-dict", "def f(self):\n    return hasattr(self, '__dict__')\n", "private-attribute"),
    ("delattr-class", "def f(self):\n    delattr(self, '__class__')\n", "private-attribute"),
    ("format-attr", "def f(self):\n    return '{0.__class__.__mro__}'.format(self)\n", "private-attribute"),
    ("format-kw-globals", "def f(self):\n    return '{s.define.__globals__}'.format(s=self)\n", "private-attribute"),
    ("fstring-dunder", "def f(self):\n    return f'{self.__class__}'\n", "private-attribute"),
    ("p-jar", "def f(self):\n    return self._p_jar.root()\n", "private-attribute"),
    ("v-cache", "def f(self):\n    return self._v_function\n", "private-attribute"),
    ("p-changed-false", "def f(self):\n    self._p_changed = False\n", "private-attribute"),
    ("lambda-globals", "def f(self):\n    return (lambda: 0).__globals__\n", "private-attribute"),
    ("gen-frame", "def f(self):\n    g = (x for x in [1])\n    return g.gi_frame.f_back.f_globals\n", "frame-attribute"),
    ("coro-frame", "def f(self, c):\n    return c.cr_frame.f_globals\n", "frame-attribute"),
    ("traceback-frame", "def f(self):\n    try:\n        1 / 0\n    except Exception as e:\n"
     "        return e.__traceback__.tb_frame.f_back.f_globals\n", "private-attribute"),
    ("tb-frame-plain", "def f(self, tb):\n    return tb.tb_frame.f_builtins\n", "frame-attribute"),
    ("func-code", "def f(self):\n    return self.f.__code__.co_consts\n", "private-attribute"),
    ("global", "def f(self):\n    global state\n    state = 1\n", "global"),
    ("two-functions", "def g(self):\n    return 1\n\ndef h(self):\n    return 2\n", "one-function"),
    ("module-code", "x = 1\nprint(x)\n", "one-function"),
    ("class-metaclass", "def f(self):\n    class M(type):\n        pass\n    return M\n", "class"),
    ("decorator", "@staticmethod\ndef f(self):\n    return 1\n", "one-function"),
    ("async", "async def f(self):\n    return 1\n", "one-function"),
    ("no-receiver", "def f():\n    return 1\n", "one-function"),
    ("type-builtin", "def f(self):\n    return type(self).mro()\n", "frame-attribute"),
    ("object-subclasses", "def f(self):\n    return object.__subclasses__()\n", "forbidden-name"),
    ("super", "def f(self):\n    return super()\n", "forbidden-name"),
    ("dir", "def f(self):\n    return dir(self)\n", "forbidden-name"),
    ("builtins-dict", "def f(self):\n    return __builtins__['eval']('1')\n", "forbidden-name"),
    ("catch-warnings", "def f(self):\n    return [c for c in ().__class__.__base__.__subclasses__()"
     " if c.__name__ == 'catch_warnings'][0]()._module.__builtins__\n", "private-attribute"),
    ("walrus-class", "def f(self):\n    return (k := [].__class__)\n", "private-attribute"),
    ("fullwidth-dunder", "def f(self):\n    return ().__\uff43lass__\n", "private-attribute"),
    ("memoryview", "def f(self):\n    return memoryview(b'x')\n", "forbidden-name"),
    ("exit", "def f(self):\n    exit(1)\n", "forbidden-name"),
    ("help", "def f(self):\n    help(self)\n", "forbidden-name"),
    ("mro-attr", "def f(self, x):\n    return x.mro()\n", "frame-attribute"),
    ("cell-contents", "def f(self, fn):\n    return fn.func_closure[0].cell_contents\n", "frame-attribute"),
    ("string-dunder-name", "def f(self, g):\n    return g(self, '__reduce_ex__')\n", "private-attribute"),
    ("default-runs-at-install", "def f(self, x=[print(1) for i in range(9)]):\n    return x\n",
     "definition-time"),
    ("call-note-changed", "def f(self, other):\n    note_changed(other)\n", "forbidden-name"),
    ("prose", "Sure! Here is the method you asked for. It adds two numbers.\n", "syntax"),
    ("syntax-error", "def f(self) return 1\n", "syntax"),
    ("null-byte", "def f(self):\n    return 1\x00\n", "syntax"),
    ("too-large", "def f(self):\n    return 1\n" + "# pad\n" * 5000, "too-large"),
]

# (id, source, slots to set on a fresh prototype, args, expected result,
#  slot checks after the call: {slot: expected value})
BENIGN = [
    ("constant", "def answer(self):\n    return 42\n", {}, (), 42, {}),
    ("read-slot", "def who(self):\n    return self.name\n", {"name": "probe"}, (), "probe", {}),
    ("counter", "def bump(self):\n    self.count = self.count + 1\n    return self.count\n",
     {"count": 1}, (), 2, {"count": 2}),
    ("augassign-slot", "def bump2(self, n):\n    self.count += n\n    return self.count\n",
     {"count": 1}, (5,), 6, {"count": 6}),
    ("append-marked", "def remember(self, x):\n    self.items.append(x)\n    self._p_changed = True\n"
     "    return len(self.items)\n", {"items": [1]}, (7,), 2, {"items": [1, 7]}),
    ("setitem-marked", "def set_cfg(self, k, v):\n    self.cfg[k] = v\n    self._p_changed = True\n"
     "    return sorted(self.cfg)\n", {"cfg": {"a": 1}}, ("b", 2), ["a", "b"], {"cfg": {"a": 1, "b": 2}}),
    ("augitem-marked", "def tally(self, k):\n    self.counts[k] += 1\n    self._p_changed = True\n"
     "    return self.counts[k]\n", {"counts": {"x": 1}}, ("x",), 2, {"counts": {"x": 2}}),
    ("fstring", "def greet(self, who):\n    return f'{self.name} greets {who}'\n",
     {"name": "orai"}, ("you",), "orai greets you", {}),
    ("format-plain", "def label(self, n):\n    return '{} #{:03d}'.format(self.name, n)\n",
     {"name": "m"}, (7,), "m #007", {}),
    ("squares", "def squares(self, n):\n    return sum([i * i for i in range(n)])\n", {}, (4,), 14, {}),
    ("minmax", "def spread(self, xs):\n    return max(xs) - min(xs)\n", {}, ([3, 9, 1],), 8, {}),
    ("while-break", "def first_over(self, xs, limit):\n    i = 0\n    while True:\n"
     "        if xs[i] > limit:\n            break\n        i += 1\n    return xs[i]\n",
     {}, ([1, 5, 12, 3], 4), 5, {}),
    ("try-except", "def parse(self, text):\n    try:\n        return int(text)\n"
     "    except ValueError:\n        return -1\n", {}, ("x",), -1, {}),
    ("strings", "def shout(self, text):\n    return '-'.join(w.upper() for w in text.split())\n",
     {}, ("a b c",), "A-B-C", {}),
    ("nested-fn", "def twice(self, x):\n    def inc(y):\n        return y + 1\n"
     "    f = lambda z: inc(inc(z))\n    return f(x)\n", {}, (1,), 3, {}),
    ("dict-comp", "def index(self, words):\n    return {w: len(w) for w in words}\n",
     {}, (["ab", "c"],), {"ab": 2, "c": 1}, {}),
    ("unpack", "def swap(self, pair):\n    a, b = pair\n    return (b, a)\n", {}, ((1, 2),), (2, 1), {}),
    ("kwargs", "def scale(self, x, factor=2, **extra):\n    return x * factor + len(extra)\n",
     {}, (3,), 6, {}),
    ("math", "def hyp(self, a, b):\n    return math.sqrt(a * a + b * b)\n", {}, (3, 4), 5.0, {}),
    ("isinstance", "def kind(self, x):\n    if isinstance(x, str):\n        return 'text'\n"
     "    return 'other'\n", {}, (1,), "other", {}),
    ("getattr-default", "def mood_or(self, d):\n    return getattr(self, 'mood', d)\n",
     {"mood": "calm"}, ("none",), "calm", {}),
    ("setattr-plain", "def paint(self, c):\n    setattr(self, 'color', c)\n    return self.color\n",
     {}, ("red",), "red", {"color": "red"}),
    ("clone-in-method", "def offspring(self):\n    c = self.clone()\n    c.name = 'copy'\n"
     "    return c.name + '/' + self.name\n", {"name": "orig"}, (), "copy/orig", {"name": "orig"}),
    ("enumerate-zip", "def pairs(self, a, b):\n    return [(i, x + y) for i, (x, y) in enumerate(zip(a, b))]\n",
     {}, ([1, 2], [10, 20]), [(0, 11), (1, 22)], {}),
    ("send-other-method", "def double_then_inc(self, x):\n    return self.double(x) + 1\n",
     {"methods": {"double": "def double(self, x):\n    return 2 * x\n"}}, (4,), 9, {}),
]
