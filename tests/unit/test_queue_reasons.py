"""A dead letter's reason is a message attribute: each character SQS refuses there is written as its escape
(chalicelib/ports/queue.py kept_reason), the rest kept as it is."""
from __future__ import annotations

import sys

from chalicelib.ports.queue import _REFUSED, kept_reason

# What SQS takes in a message attribute, as its documentation says it.
TAKEN = ((0x9, 0x9), (0xA, 0xA), (0xD, 0xD), (0x20, 0xD7FF), (0xE000, 0xFFFD), (0x10000, 0x10FFFF))


def test_the_characters_refused_are_every_code_point_sqs_does_not_take():
    every = "".join(map(chr, range(sys.maxunicode + 1)))
    refused = [c for c in every if not any(low <= ord(c) <= high for low, high in TAKEN)]
    assert _REFUSED.findall(every) == refused and len(refused) == 29 + 2048 + 2


def test_a_reason_keeps_what_sqs_takes_and_escapes_the_rest():
    assert kept_reason("tab\tnew\nline\r Ω 😀 \x00\x1f\ufffe\uffff\ud800 end") == \
        "tab\tnew\nline\r Ω 😀 \\x00\\x1f\\ufffe\\uffff\\ud800 end"
