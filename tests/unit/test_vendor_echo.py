"""A vendor's refusal that quotes the token it was sent: its words become the failure's reason, which the
worker logs, the dead-letter queue and the person's history keep, and `doctor`, `explain` and `dlq list`
print. docs/operating.md: tokens are never printed, logged, or written to the history or the dead-letter queue."""
from __future__ import annotations

import pytest

from chalicelib.adapters.intercom import IntercomAuthClient, IntercomClient
from chalicelib.adapters.referral_factory import ReferralFactoryClient
from chalicelib.errors import WorkError
from tests.support.answering_server import answering

TOKEN = "tok_4f9a2c7e1b8d"


@pytest.mark.parametrize("client, ask, body", [
    (ReferralFactoryClient, lambda c: c.get_user("1002"), {"message": f"Unauthenticated: token {TOKEN} is invalid"}),
    (IntercomClient, lambda c: c.get_contact("c1"),
     {"type": "error.list", "errors": [{"code": "unauthorized", "message": f"Access Token Invalid ({TOKEN})"}]}),
    # the OAuth callback's question (one try, outside the limiter): which workspace the new token is for
    (lambda url, token, **kw: IntercomAuthClient(url), lambda c: c.whoami(TOKEN, within=5),
     {"type": "error.list", "errors": [{"code": "unauthorized", "message": f"Access Token Invalid ({TOKEN})"}]}),
], ids=["rf", "intercom", "intercom-oauth"])
def test_a_vendors_refusal_that_quotes_the_token_is_said_without_it(client, ask, body):
    with answering(401, body) as (url, _):
        with pytest.raises(WorkError) as refused:
            ask(client(url, TOKEN, sleeper=lambda s: None))
    failure = refused.value
    assert TOKEN not in failure.reason and TOKEN not in str(failure) and TOKEN not in (failure.message or "")
    assert "Referral Factory answered 401" in failure.reason or "Intercom answered 401" in failure.reason
    assert "***" in failure.reason
