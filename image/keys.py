"""Keys for the image's time-ordered BTrees (ledgers, missions, lineage nights, records)."""
import secrets


def new_key(when, tick=0) -> str:
    """Sortable by time; the random tail keeps two writers in the same microsecond apart.
    ``tick`` adds whole microseconds, to order a batch exactly (float times can collide)."""
    return f"{int(when * 1e6) + tick:017d}-{secrets.token_hex(3)}"
