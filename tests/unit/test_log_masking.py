"""Every log line of every function carries emails masked, whatever a call site passes: the one logger
(observability.logger) formats through observability.MaskingFormatter."""
from __future__ import annotations

import json

import pytest

from chalicelib.observability import logger
from tests.support.log_lines import written_lines


@pytest.fixture
def lines():
    """What the functions' logger writes (its own handler and formatter), one JSON document a line."""
    with written_lines() as written:
        yield lambda: [json.loads(line) for line in written()]


@pytest.mark.parametrize("said", [("record failed for Bob <bob@example.com>",),
                                  ("record failed for %s", "Bob <bob@example.com>")], ids=["text", "args"])
def test_an_exception_that_quotes_an_email_is_logged_with_the_email_masked_in_its_traceback(lines, said):
    """A vendor's refusal (or any exception) quoting the person's address, logged with logger.exception:
    the message (its text or its %-args), the `extra` fields, the traceback and the structured stack trace
    carry a***@example.com, never the address, and the line is still one valid JSON document."""
    def refuse():
        raise ValueError("Referral Factory answered 422: ann@example.com has no referrer")

    try:
        refuse()
    except ValueError:
        logger.exception(*said,
                         extra={"reason": ("refused", "carl@example.org"), "people": {"who": ["dee@example.net"]},
                                "odd": {"set of eve@example.com"}, "tries": 3})
    [line] = lines()                                  # valid JSON, else json.loads raised
    text = json.dumps(line)
    for address in ("ann@example.com", "bob@example.com", "carl@example.org", "dee@example.net", "eve@example.com"):
        assert address not in text, text
    assert line["message"] == "record failed for Bob <b***@example.com>"
    assert line["exception"].startswith("Traceback") and "ValueError: Referral Factory answered 422: " \
        "a***@example.com has no referrer" in line["exception"]
    assert line["stack_trace"]["value"] == "Referral Factory answered 422: a***@example.com has no referrer"
    assert line["reason"] == ["refused", "c***@example.org"] and line["people"] == {"who": ["d***@example.net"]}
    assert line["odd"] == "{'set of e***@example.com'}" and line["tries"] == 3
    assert line["level"] == "ERROR" and line["service"]


def test_a_line_without_an_address_is_written_as_it_was(lines):
    logger.info("record waits", extra={"reason": "Intercom answered 429", "seconds": 30, "path": "a/b?c=d"})
    [line] = lines()
    assert line["message"] == "record waits" and line["reason"] == "Intercom answered 429"
    assert line["seconds"] == 30 and line["path"] == "a/b?c=d"
