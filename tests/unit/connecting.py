"""The OAuth use case's builders, on the in-memory twins: the operator's one-time link, the admin who opened
it and continued to Intercom, and the callback that connected workspace ws1 (the public app's client secret is
app-secret)."""
from __future__ import annotations

import pytest

from chalicelib.services import oauth as flow
from chalicelib.services.connections import configure_oauth
from tests.fakes import FakeConnecting

HERE = flow.Place("https://bridge.example/api", secure=True)


@pytest.fixture
def rt():
    rt = FakeConnecting()
    configure_oauth(rt, "app-id", "app-secret")
    rt.auth.apps["tok-1"] = {"id_code": "ws1", "name": "Acme <b>", "region": "US"}
    return rt


def ticket(rt, workspace=None) -> str:
    """The ticket of a link the operator minted (`bridge workspace oauth-link`)."""
    url = flow.mint_link(rt, HERE.base, workspace)["url"]
    assert url.startswith(f"{HERE.start}?ticket=")
    return url.split("=", 1)[1]


def started(rt, workspace=None, link=None) -> tuple[dict, str]:
    """The admin opened the link (`link`'s ticket, else a new one's) and continued to Intercom: the authorize
    URL's query, the cookie."""
    page = flow.begin(rt, HERE, link or ticket(rt, workspace))
    assert page.status == 303
    query = dict(p.split("=", 1) for p in page.headers["Location"].split("?", 1)[1].split("&"))
    cookie = page.headers["Set-Cookie"].split(";")[0]
    return query, cookie


def connected(rt, code: str = "code=") -> flow.Page:
    query, cookie = started(rt)
    rt.auth.codes[code] = "tok-1"
    page = flow.callback(rt, {"code": code, "state": query["state"]}, cookie, HERE)
    assert page.status == 200
    return page
