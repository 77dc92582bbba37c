"""The node's log lines: ``key=value`` text (the default) or one JSON object a line.

Every log call in keyquorum writes a fixed event name and then ``key=value`` fields
(``log.info("node_started id=%s kmip=%s", ...)``). The text format prints that as it
is after a timestamp, the level and the logger. The JSON format (``[node]
log_format = "json"``) splits the same message into ``event`` and one member per
field, for log pipelines that index fields: the fields are the ones the call wrote,
so nothing reaches the JSON line that the text line would not hold. Neither holds
key material: no call logs any.

A value runs up to the next `` key=``; a message that does not start with an event
name (a third-party library's prose) is kept whole as ``message``.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

LOG_FORMATS = ("text", "json")

TEXT_FORMAT = "%(asctime)s level=%(levelname)s logger=%(name)s event=%(message)s"

_EVENT = re.compile(r"[a-z][a-z0-9_]*")
_FIELD = re.compile(r" ([a-z_][a-z0-9_]*)=")


def fields_of(message: str) -> dict[str, Any]:
    """``event`` and each ``key=value`` of a message in keyquorum's log style."""
    event, _, rest = message.partition(" ")
    if not _EVENT.fullmatch(event) or (rest and not _FIELD.match(" " + rest)):
        return {"message": message}
    found: dict[str, Any] = {"event": event}
    starts = list(_FIELD.finditer(" " + rest))
    for index, match in enumerate(starts):
        end = starts[index + 1].start() if index + 1 < len(starts) else len(rest) + 1
        found.setdefault(match.group(1), (" " + rest)[match.end():end])
    return found


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        for key, value in fields_of(record.getMessage()).items():
            line.setdefault(key, value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def configure_logging(level: str, log_format: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), handlers=[handler])
