"""How the console and the prompts show a value in one line."""
from .method import Method
from .object import UvmObject


def short_repr(value):
    """A one-line description; persistent containers without their connection noise."""
    if isinstance(value, Method):
        return f"method: {value.source.strip().splitlines()[0]}"
    if isinstance(value, UvmObject):
        return repr(value)
    oid = getattr(value, "_p_oid", None)
    if oid is not None:
        try:
            size = f", {len(value)} items"
        except TypeError:
            size = ""
        return f"<{type(value).__name__} oid 0x{oid.hex().lstrip('0') or '0'}{size}>"
    return repr(value)
