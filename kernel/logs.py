"""Structured logging for every BAT OS process.

Human-readable lines on stderr by default; one JSON object per line with
``--log-json`` or ``BATOS_LOG_JSON=1`` (what the kernel uses), carrying any
``extra=`` fields a caller attached (verdicts, tids, timings).

Libraries are not ours to print: Python warnings (transformers' deprecation
notices, for one, arrive in the middle of a streamed answer) and the loggers
of the model libraries go to the log file only (``$BATOS_LOG_FILE``, default
``$XDG_STATE_HOME/batos/batos.log``; a kernel adds its own ``kernel.jsonl``).
"""
import json
import logging
import os
import sys
import time
from pathlib import Path

_STD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def jsonable(value):
    """JSON for what slots hold (tracked containers), text for anything else; imported lazily."""
    from prototypes.persist import jsonable as convert
    return convert(value)


class JsonFormatter(logging.Formatter):
    def format(self, record):
        data = {"ts": round(record.created, 3), "level": record.levelname.lower(),
                "logger": record.name, "msg": record.getMessage()}
        data.update({k: v for k, v in vars(record).items() if k not in _STD})
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, default=jsonable)


# loggers of the libraries we drive; their messages are for the log, not the terminal
LIBRARIES = ("py.warnings", "transformers", "torch", "sentence_transformers", "peft",
             "accelerate", "mergekit", "datasets", "huggingface_hub", "mlx", "mlx_lm",
             "safetensors", "gguf", "urllib3", "filelock")


def log_file() -> Path:
    if os.environ.get("BATOS_LOG_FILE"):
        return Path(os.environ["BATOS_LOG_FILE"])
    state = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(state) / "batos" / "batos.log"


def route_libraries(handler):
    """Send library warnings and library loggers to ``handler`` (and never to stderr)."""
    logging.captureWarnings(True)
    for name in LIBRARIES:
        lib = logging.getLogger(name)
        lib.propagate = False
        if handler not in lib.handlers:
            lib.addHandler(handler)


def _library_handler():
    path = log_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path, delay=True)
    except OSError:                         # nowhere to write: drop them rather than print
        handler = logging.NullHandler()
    handler.setFormatter(JsonFormatter())
    return handler


def setup(level="WARNING", json_lines=None):
    if json_lines is None:
        json_lines = os.environ.get("BATOS_LOG_JSON") == "1"
    handler = logging.StreamHandler(sys.stderr)
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logging.Formatter.converter = time.gmtime
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper() if isinstance(level, str) else level)
    route_libraries(_library_handler())
    # ZODB chatters at INFO about index files; keep it at our level or above.
    logging.getLogger("ZODB").setLevel(max(root.level, logging.WARNING))
