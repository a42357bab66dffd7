"""Two webhooks answered at once by one process (`make run`, the chaos run's webhook process: Chalice's local
server answers each request in a thread) count and flush the same metrics. The chaos run (seed 5112) saw a join
answered 500 after it was queued: one request flushed both counts between the other's check and its own flush,
which then raised "Must contain at least one metric"."""
from __future__ import annotations

import json
import threading

from chalicelib import observability
from chalicelib.observability import count, flush, metrics


class _Announced:
    """The flush lock, telling the test when a second flush has come to wait for it."""

    def __init__(self, lock, waiting: threading.Event):
        self.lock, self.waiting = lock, waiting

    def __enter__(self):
        if threading.current_thread() is not threading.main_thread():    # the second request's thread
            self.waiting.set()
        return self.lock.__enter__()

    def __exit__(self, *exc):
        return self.lock.__exit__(*exc)


def test_a_flush_while_another_request_flushes_the_same_counts_neither_fails_nor_loses_one(monkeypatch, capsys):
    metrics.clear_metrics()
    second_came = threading.Event()      # the second flush waits for the lock, or (without one) is done
    monkeypatch.setattr(observability, "_lock", _Announced(getattr(observability, "_lock", threading.Lock()),
                                                            second_came), raising=False)
    provider = metrics.provider
    real, errors = provider.serialize_metric_set, []

    def second_flush():
        try:
            flush()
        except Exception as exc:  # what a request's handler would have answered 500 for
            errors.append(exc)
        finally:
            second_came.set()

    def first_flush_meets_the_second(*args, **kwargs):     # past the check that there is something to flush
        monkeypatch.setattr(provider, "serialize_metric_set", real)
        second.start()
        assert second_came.wait(10)
        return real(*args, **kwargs)

    second = threading.Thread(target=second_flush)
    monkeypatch.setattr(provider, "serialize_metric_set", first_flush_meets_the_second)
    count("JoinsReceived")
    count("JoinsReceived")
    try:
        flush()
    except Exception as exc:
        errors.append(exc)
    second.join(10)
    assert errors == []
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert [line["JoinsReceived"] for line in lines] == [[1.0, 1.0]]
