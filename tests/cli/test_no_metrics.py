"""The CLI runs the services outside a Lambda: what they count is never published, and never printed. Powertools
prints a metric's EMF line to stdout by itself once it holds 100 values, which would land inside the answer."""
from __future__ import annotations

import json

from chalicelib.cli import main
from chalicelib.observability import count, metrics

from .test_progress import backfilling


def test_a_long_backfill_that_meets_hundreds_of_429s_answers_its_json_and_nothing_else(capsys):
    """Each page of RF's list comes after 50 429s, each counted RFRateLimited as the shared limiter counts it:
    150 in the run. stdout is the one JSON answer, with no metrics line in it or left to print later."""
    rt = backfilling()
    listed = rt._rf.users_page

    def users_page(*args, **kw):
        for _ in range(50):
            count("RFRateLimited")
        return listed(*args, **kw)
    rt._rf.users_page = users_page          # type: ignore[method-assign]
    assert main(["backfill", "42", "--json"], rt=rt) == 0
    out = capsys.readouterr().out
    assert json.loads(out)["campaign_id"] == "42" and "_aws" not in out, out
    assert "RFRateLimited" not in metrics.metric_set
