"""The bearer token of the kernel's HTTP API: ``IMAGE/api-token``, readable by its owner only.

Made by ``batos init`` (or the kernel's first start); printed by ``batos
api-token``. A token file that others can read is refused, not used.
"""
import os
import secrets
import stat

from image.errors import ImageError

TOKEN_FILE = "api-token"


class TokenError(ImageError):
    """The token file is missing, unreadable or readable by others."""


def token_path(loc):
    """IMAGE/api-token; for a PostgreSQL image, in this machine's folder for it
    (``image.location.local_dir``), beside the kernel that serves its API."""
    if not loc.hosts_kernel:
        raise TokenError(f"the API token lives beside the kernel's image; {loc} is not one "
                         "(use the folder or the postgresql:// URL the kernel runs on)")
    from image.location import local_dir
    return local_dir(loc) / TOKEN_FILE


def ensure_token(loc, rotate=False) -> str:
    """The token, made (mode 0600) when there is none or ``rotate`` is asked."""
    path = token_path(loc)
    if path.exists() and not rotate:
        return read_token(loc)
    path.parent.mkdir(parents=True, exist_ok=True)
    token = "batos-" + secrets.token_urlsafe(32)
    tmp = path.with_name(TOKEN_FILE + ".new")
    if tmp.exists():
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    os.replace(tmp, path)
    return token


def read_token(loc) -> str:
    path = token_path(loc)
    try:
        mode = path.stat().st_mode
        text = path.read_text().strip()
    except FileNotFoundError:
        raise TokenError(f"no API token at {path}; make one with `batos api-token --rotate` "
                         "(or `batos init`)") from None
    except OSError as e:
        raise TokenError(f"cannot read the API token {path}: {e}") from e
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise TokenError(f"the API token {path} can be read by others (mode "
                         f"{stat.S_IMODE(mode):o}); run `chmod 600 {path}`, or make a new one "
                         "with `batos api-token --rotate`")
    if not text:
        raise TokenError(f"the API token file {path} is empty; run `batos api-token --rotate`")
    return text
