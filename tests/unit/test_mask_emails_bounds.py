"""observability.mask_emails (the broader address pattern): what it must leave to operators (the URL or
contact id an address is written into), and that a long text without an address is read once, not
re-scanned from every character (a dead letter's raw payload, up to 256 KB, goes through it in
`bridge dlq list --show-payload`)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from chalicelib.observability import mask_emails

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("text, kept, shown", [
    # a link with the person's address in its query: the link itself is what the operator follows
    ("referral link https://rf.example.com/join?email=ann@example.com&code=AB12 written",
     "https://rf.example.com/join?email=", "a***@example.com"),
    ("GET https://api.intercom.io/contacts/search?email=ann@example.com answered 500",
     "https://api.intercom.io/contacts/search?email=", "a***@example.com"),
    # an Intercom contact id before an address: the id is what `bridge explain` is given next
    ("contact 65f1a2b3c4d5e6f7a8b9c0d1/ann@example.com", "65f1a2b3c4d5e6f7a8b9c0d1", "a***@example.com"),
    # the quotes a reason puts around an address (sync's "invalid email: '...'") stay quotes
    ("invalid email: 'ann@example.com' is not on the list", "invalid email: '", "'a***@example.com'"),
])
def test_masking_an_address_inside_a_url_or_after_an_id_keeps_the_url_and_the_id(text, kept, shown):
    """The address is masked, and only the address: the pattern now takes any run of non-space characters
    before an @ as its local part, so `https://rf.example.com/join?email=ann@example.com` became
    `https:/***@example.com` (link, host and code gone) and `65f1.../ann@x` became `6***@x`."""
    out = mask_emails(text)
    assert "ann@" not in out and shown in out, out
    assert kept in out, out


PROBE = """
import sys
from chalicelib.observability import mask_emails
text = "a" * 100_000 + " " + "b" * 50_000 + "@"     # no address in it: nothing to mask
assert mask_emails(text) == text
print("masked")
"""


def test_a_long_text_without_an_address_is_masked_in_one_pass_not_rescanned_from_every_character():
    """100 KB of letters (a token, base64, an unreadable letter's raw body): with the broader pattern, every
    start position re-reads the whole run (`(?:[^...]|')+` before an @ that never comes), ~12 s for 20 KB
    and minutes for 100 KB, where the old pattern took under half a second and one pass takes
    milliseconds. Run apart, so that a hang is killed, not left spinning beside the suite; the bound is
    two orders of magnitude above a linear pass (this asserts no timing, only that it ends)."""
    try:
        out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail("mask_emails on 150 KB without an address did not end within 20 s (quadratic backtracking)")
    assert out.returncode == 0 and out.stdout.strip() == "masked", out.stderr
