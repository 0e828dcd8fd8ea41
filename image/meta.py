"""The image's own record of itself, kept in the root under ``META_KEY``."""
import time

META_KEY = "meta"
SCHEMA_VERSION = 1


def get_meta(root):
    """The meta mapping, or an empty dict for an image not bootstrapped yet."""
    return root.get(META_KEY) or {}


def ensure_meta(root):
    from persistent.list import PersistentList
    from persistent.mapping import PersistentMapping
    meta = root.get(META_KEY)
    if meta is None:
        meta = root[META_KEY] = PersistentMapping(
            schema_version=SCHEMA_VERSION, created=time.time(),
            pack_history=PersistentList())
    return meta


def schema_version(root):
    return get_meta(root).get("schema_version")
