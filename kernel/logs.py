"""Structured logging for every BAT OS process.

Human-readable lines on stderr by default; one JSON object per line with
``--log-json`` or ``BATOS_LOG_JSON=1`` (what the kernel uses), carrying any
``extra=`` fields a caller attached (verdicts, tids, timings).
"""
import json
import logging
import os
import sys
import time

_STD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record):
        data = {"ts": round(record.created, 3), "level": record.levelname.lower(),
                "logger": record.name, "msg": record.getMessage()}
        data.update({k: v for k, v in vars(record).items() if k not in _STD})
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


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
    # ZODB chatters at INFO about index files; keep it at our level or above.
    logging.getLogger("ZODB").setLevel(max(root.level, logging.WARNING))
