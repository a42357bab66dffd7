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


def test_a_vendor_call_whose_connection_breaks_writes_no_line_outside_the_functions_logger():
    """urllib3 says each retry of a broken connection ("Retrying (Retry(total=2, ...)) after connection broken by
    'RemoteDisconnected(...)': /contacts/c1") as a warning of its own logger. In a Lambda that reaches the runtime's
    root handler: plain lines outside the functions' JSON (and their masking), three beside the one line that says
    what failed. Here the root logger has a handler as the Lambda runtime gives it."""
    import io
    import logging
    import socket
    import threading

    from chalicelib.adapters.intercom import IntercomClient
    from chalicelib.errors import Transient

    server = socket.create_server(("127.0.0.1", 0))

    def hang_up():
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            connection.recv(65536)
            connection.close()                            # no answer: the connection breaks
    threading.Thread(target=hang_up, daemon=True).start()
    runtimes = io.StringIO()
    root_handler = logging.StreamHandler(runtimes)
    logging.getLogger().addHandler(root_handler)
    try:
        client = IntercomClient(f"http://127.0.0.1:{server.getsockname()[1]}", "tok_4f9a2c7e1b8d",
                                sleeper=lambda seconds: None)
        with pytest.raises(Transient, match="Intercom unreachable after retries"):
            client.get_contact("c1")
    finally:
        logging.getLogger().removeHandler(root_handler)
        server.close()
    assert runtimes.getvalue() == ""
