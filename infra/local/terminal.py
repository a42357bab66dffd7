"""`make run`'s terminal: each of the bridge's log records (the JSON line the Lambdas write, for CloudWatch) as
one short line — its time, level, message and its own fields, emails masked as in the JSON — and an error's
traceback indented under it; the CloudWatch metric (EMF) lines, which only CloudWatch reads, not at all.
`make run LOGS=json` shows the lines as they are. The functions' logging is not changed: only what the
local runner shows of it."""
from __future__ import annotations

import io
import json
import threading
from typing import Optional, TextIO

# What every record carries (Powertools' keys): its own fields are the others.
COMMON = {"level", "location", "message", "timestamp", "service", "cold_start", "function_name", "function_arn",
          "function_memory_size", "function_request_id", "correlation_id", "xray_trace_id", "sampling_rate",
          "exception", "exception_name", "stack_trace"}


def human(line: str) -> Optional[str]:
    """A line the bridge wrote, as the terminal shows it (None: not at all)."""
    try:
        record = json.loads(line)
    except ValueError:
        return line
    if not isinstance(record, dict):
        return line
    if "_aws" in record:                    # a metric blob: CloudWatch's, not the reader's
        return None
    if not {"level", "message", "timestamp"} <= record.keys():
        return line
    fields = " ".join(f"{key}={_value(value)}" for key, value in record.items() if key not in COMMON)
    said = f"{str(record['timestamp'])[11:19]} {record['level']:<7} {record['message']}" + (f"  {fields}" if fields else "")
    trace = record.get("exception")
    return said + "".join(f"\n    {part}" for part in str(trace).splitlines()) if trace else said


def _value(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return json.dumps(text, ensure_ascii=False) if not text or any(c.isspace() or c in '"=' for c in text) else text


class Terminal(io.TextIOBase):
    """A stream (`make run`'s stdout) that writes each whole line as `human` shows it. Each thread's line is
    kept until it ends (print writes a line and its end apart, and threads write at once)."""

    def __init__(self, out: TextIO):
        self.out = out
        self._line = threading.local()
        self._lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        *lines, self._line.text = (getattr(self._line, "text", "") + text).split("\n")
        shown = "".join(f"{said}\n" for said in map(human, lines) if said is not None)
        if shown:
            with self._lock:
                self.out.write(shown)
        return len(text)

    def flush(self) -> None:
        self.out.flush()
