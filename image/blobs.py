"""Reading blobs with an error that names the object when the file is gone."""
from ZODB.POSException import POSKeyError
from ZODB.utils import oid_repr

from .errors import MissingBlob


def open_blob(blob, mode="r", *, owner=None):
    """``blob.open(mode)``, raising MissingBlob naming the blob and its owner."""
    try:
        return blob.open(mode)
    except POSKeyError as e:
        raise missing(blob._p_oid, owner=owner) from e


def missing(oid, owner=None) -> MissingBlob:
    who = f" (held by {owner!r})" if owner is not None else ""
    return MissingBlob(
        f"the file of blob {oid_repr(oid)}{who} is missing from the blob directory. "
        "Restore it from a snapshot (`batos snapshot list`, then "
        "`batos restore NAME --to DIR`); `batos image check` lists every missing blob.",
        oid=oid)
