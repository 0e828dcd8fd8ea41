"""Transparent persistence: plain containers stored in slots become tracked ones.

ZODB sees a write to an object it tracks, not an in-place change to a plain
``list``/``dict``/``set`` held by one. So every value stored in a slot goes
through ``tracked``: lists become PersistentLists, dicts (and dict subclasses:
Counter, defaultdict, OrderedDict) PersistentMappings, sets PersistentSets,
recursively, tuples included. ``self.items.append(x)`` then persists from any
code. The slot holds a tracked *copy*: a local list assigned to a slot and
changed afterwards is not the slot's list (read it back from the slot).

Values an image cannot store (functions, generators, modules, bound methods)
are refused when they are assigned, not when the transaction commits.
"""
import collections
import types
from collections.abc import MutableMapping, MutableSequence, MutableSet

from persistent import Persistent
from persistent.list import PersistentList
from persistent.mapping import PersistentMapping

from guardians.containers import SetInPlace


class PersistentSet(SetInPlace, Persistent):
    """A set whose in-place changes ZODB sees (the ``set`` API, results of operators plain;
    ``|=``, ``&=``, ``-=``, ``^=`` in place, so an alias of the slot's set sees them too)."""

    def __init__(self, items=()):
        self.data = set(items)

    def _changed(self):
        self._p_changed = True

    # reads
    def __contains__(self, x):
        return x in self.data

    def __iter__(self):
        return iter(self.data)

    def __len__(self):
        return len(self.data)

    def __eq__(self, other):
        return self.data == (other.data if isinstance(other, PersistentSet) else other)

    __hash__ = None

    def __repr__(self):
        return f"PersistentSet({sorted(self.data, key=repr)!r})"

    def copy(self):
        return set(self.data)

    def __getattr__(self, name):
        # union, issubset, ...: read-only set methods answered by the data
        if name in _READS:
            return getattr(self.data, name)
        raise AttributeError(name)

    # writes
    def add(self, x):
        self.data.add(x)
        self._changed()

    def discard(self, x):
        self.data.discard(x)
        self._changed()

    def remove(self, x):
        self.data.remove(x)
        self._changed()

    def pop(self):
        x = self.data.pop()
        self._changed()
        return x

    def clear(self):
        self.data.clear()
        self._changed()

    def update(self, *others):
        self.data.update(*others)
        self._changed()

    def difference_update(self, *others):
        self.data.difference_update(*others)
        self._changed()

    def intersection_update(self, *others):
        self.data.intersection_update(*others)
        self._changed()

    def symmetric_difference_update(self, other):
        self.data.symmetric_difference_update(other)
        self._changed()

    def __or__(self, other):
        return self.data | set(other)

    def __and__(self, other):
        return self.data & set(other)

    def __sub__(self, other):
        return self.data - set(other)

    def __xor__(self, other):
        return self.data ^ set(other)


def _popitem_last(self):
    """``dict.popitem``: the last key set comes out (UserDict's pops the first)."""
    if not self.data:
        raise KeyError("popitem(): dictionary is empty")
    key = next(reversed(self.data))
    return key, self.pop(key)


# one semantics for a slot's dict, in process and isolated (where it is a real dict)
PersistentMapping.popitem = _popitem_last

_READS = frozenset({"union", "intersection", "difference", "symmetric_difference",
                    "issubset", "issuperset", "isdisjoint"})

# What an image cannot store: pickling it fails at commit, and loses the whole transaction.
UNSTORABLE = (types.FunctionType, types.LambdaType, types.GeneratorType, types.CoroutineType,
              types.AsyncGeneratorType, types.MethodType, types.BuiltinFunctionType,
              types.ModuleType, types.FrameType, types.CodeType, types.TracebackType)


class Unstorable(TypeError):
    """A value that cannot be stored in the image."""


# Mutable containers ZODB cannot see change in place, with what to store instead.
_REFUSED = ((bytearray, "bytes"), (collections.deque, "a list"),
            (collections.ChainMap, "a dict"), (MutableSequence, "a list"),
            (MutableMapping, "a dict"), (MutableSet, "a set"))


def _refuse_container(value):
    t = type(value)
    if isinstance(value, tuple) and t is not tuple:     # a namedtuple: its class is not data
        raise Unstorable(f"a {t.__name__} (a tuple subclass) cannot be stored in the image; "
                         "store a tuple or a dict")
    if t.__module__.startswith("batos.method"):
        raise Unstorable(f"a {t.__name__} is defined in method code; an image stores plain "
                         "data and prototype objects")
    for kind, instead in _REFUSED:
        if isinstance(value, kind):
            raise Unstorable(f"a {t.__name__} cannot be stored in the image (its in-place "
                             f"changes would be lost); store {instead}")


def tracked(value, memo=None, jar=None):
    """``value`` with every plain container in it replaced by a tracked copy.

    Persistent containers are kept (their plain contents converted in place);
    objects with identity (prototypes, methods, blobs) are kept as they are.
    ``jar``: the connection the value is going into; an object of another
    connection (or image) is refused now, not by a commit that loses the rest.
    """
    t = type(value)
    if t in _ATOMS:
        return value
    if isinstance(value, Persistent):
        foreign(value, jar)
    if memo is None:
        memo = {}
    key = id(value)
    if key in memo:
        return memo[key]
    if isinstance(value, UNSTORABLE) or _is_unstorable(value):
        raise Unstorable(f"a {t.__name__} cannot be stored in the image; store plain data "
                         "(numbers, text, lists, dicts, sets) or prototype objects")
    if t is PersistentList:
        memo[key] = value
        for i, v in enumerate(value.data):
            new = tracked(v, memo, jar)
            if new is not v:
                value[i] = new
        return value
    if t is PersistentMapping:
        memo[key] = value
        for k, v in list(value.data.items()):
            new = tracked(v, memo, jar)
            if new is not v:
                value[k] = new
        return value
    if isinstance(value, list):
        new = memo[key] = PersistentList()
        new.data.extend(tracked(v, memo, jar) for v in value)
        return new
    if isinstance(value, dict) and not isinstance(value, Persistent):
        new = memo[key] = PersistentMapping()
        new.data.update((k, tracked(v, memo, jar)) for k, v in value.items())
        return new
    if isinstance(value, set):
        new = memo[key] = PersistentSet(value)
        return new
    if t is tuple:
        items = tuple(tracked(v, memo, jar) for v in value)
        new = value if all(a is b for a, b in zip(items, value)) else items
        memo[key] = new
        return new
    if not isinstance(value, Persistent):
        _refuse_container(value)
    return value


_ATOMS = frozenset({int, float, str, bytes, bool, type(None), complex})


def foreign(obj, jar):
    """Refuse ``obj`` if it lives in a connection other than ``jar`` (None: not known)."""
    other = getattr(obj, "_p_jar", None)
    if jar is None or other is None or other is jar:
        return
    if other.db() is jar.db():
        where, fix = "another connection", "read it through this connection"
    else:
        where, fix = "another image", "copy what you need as plain data"
    raise Unstorable(f"a {type(obj).__name__} from {where} cannot be stored here: the commit "
                     f"would fail and lose the transaction's other writes; {fix}")


def _is_unstorable(value):
    # BoundMethod and friends: callables of the object model that are not data
    return type(value).__name__ in ("BoundMethod", "Send")


def untracked(value, memo=None) -> bool:
    """Does ``value`` hold a plain container (one whose in-place changes ZODB would miss)?"""
    if type(value) in _ATOMS:
        return False
    if isinstance(value, (list, dict, set)) and not isinstance(value, Persistent):
        return True
    if type(value) is tuple:
        return any(untracked(v) for v in value)
    if type(value) in (PersistentList, PersistentMapping):
        data = value.data.values() if isinstance(value, PersistentMapping) else value.data
        return any(untracked(v) for v in data)
    return False


def plain(value, depth=0):
    """``value`` with tracked containers as plain ones again (for JSON, files, other processes)."""
    if depth > 200:
        raise ValueError("a value nested more than 200 deep")
    t = type(value)
    if t in _ATOMS:
        return value
    if t in (PersistentList, list, tuple):
        items = [plain(v, depth + 1) for v in value]
        return tuple(items) if t is tuple else items
    if t is PersistentMapping or isinstance(value, dict):
        return {k: plain(v, depth + 1) for k, v in value.items()}
    if t in (PersistentSet, set, frozenset):
        return {plain(v, depth + 1) for v in value}
    return value


def jsonable(value):
    """``json.dumps(default=jsonable)``: tracked containers as JSON, anything else as text."""
    if isinstance(value, (PersistentList, PersistentMapping)):
        return plain(value)
    if isinstance(value, (PersistentSet, set, frozenset)):
        return sorted(plain(value), key=repr)
    return str(value)


def _register_aliases():
    # in method code a tracked container is a list/dict/set (type(), isinstance())
    from guardians.sandbox import register_alias
    register_alias(list, PersistentList)
    register_alias(dict, PersistentMapping)
    register_alias(set, PersistentSet)


_register_aliases()
