"""The queue messages: one model per kind, tagged by `kind`; the wire format earlier versions
wrote still parses; what a message cannot be is said in one line."""
import json

import pytest

from chalicelib import messages
from chalicelib.messages import CheckMessage, ContactMessage, JoinMessage, PersonRef, Unreadable, VerifyMessage
from chalicelib.webhooks import CONTACT_TOPICS
from tests.support.log_lines import written_lines

# Bodies exactly as the previous version's intake and reconciliation put them on the queue.
OLD_JOIN = {"kind": "rf.join", "campaign_id": "42", "rf_user_id": "7", "received_at": 1790000000.5,
            "person": {"id": "7", "campaign_id": "42", "email": "ann@example.com", "referrer_id": "3",
                       "type": "lead", "meta.company": "Acme"}}
OLD_CONTACT = {"kind": "intercom.contact", "workspace": "vne310wv", "topic": "contact.lead.updated",
               "notification_id": "notif_1", "created_at": 1692131388,
               "item": {"type": "contact", "id": "64dbc8be", "email": "ann@example.com", "role": "lead",
                        "signed_up_at": None, "custom_attributes": {"signed_up": "Yes"}, "tags": {"data": []}}}
OLD_CHECK = {"kind": "intercom.check", "campaign_id": "42", "rf_user_id": "7", "workspace": "vne310wv"}


@pytest.mark.parametrize("old,model", [(OLD_JOIN, JoinMessage), (OLD_CONTACT, ContactMessage),
                                       (OLD_CHECK, CheckMessage)])
def test_messages_already_in_the_queue_parse_and_go_back_unchanged(old, model):
    message = messages.parse(json.dumps(old))
    assert type(message) is model
    assert message.wire() == old            # nothing added (no nulls, no replayed_from), nothing lost


def test_a_replayed_dead_letter_keeps_where_it_came_from():
    replayed = messages.parse(json.dumps({**OLD_CHECK, "replayed_from": "dead-1"}))
    assert replayed.replayed_from == "dead-1" and replayed.wire()["replayed_from"] == "dead-1"
    again = messages.parse(json.dumps(OLD_JOIN)).replayed("dead-2")
    assert again.wire() == {**OLD_JOIN, "replayed_from": "dead-2"}


def test_the_person_reference_is_a_field_of_the_messages_about_a_person():
    assert messages.read(OLD_JOIN).person_ref == PersonRef("42", "7") == ("42", "7")
    assert messages.read(OLD_CHECK).person_ref == ("42", "7")
    assert messages.read(OLD_CONTACT).person_ref is None


def test_a_contact_message_reads_its_item_as_sent_and_its_topic_from_the_table():
    message = messages.read(OLD_CONTACT)
    assert message.item.as_dict() == OLD_CONTACT["item"]          # "signed_up_at": None kept, no keys added
    assert message.item.email == "ann@example.com" and message.change == "changed"
    assert messages.read({**OLD_CONTACT, "topic": "contact.archived"}).change == "archived"
    assert messages.read({**OLD_CONTACT, "topic": "contact.unarchive"}).change == "unarchived"


def test_every_kind_is_built_by_its_model_with_its_kind():
    assert messages.KINDS == {"rf.join": JoinMessage, "intercom.contact": ContactMessage,
                              "intercom.check": CheckMessage, "join.verify": VerifyMessage,
                              "intercom.changes": messages.ChangesMessage, "sync.page": messages.SyncPageMessage,
                              "referral.count": messages.ReferralCountMessage}
    check = CheckMessage(campaign_id="42", rf_user_id=7, workspace="ws")
    assert check.wire() == {"kind": "intercom.check", "campaign_id": "42", "rf_user_id": "7", "workspace": "ws"}


@pytest.mark.parametrize("body,reason", [
    ("not json", "(body): Invalid JSON: expected ident at line 1 column 2"),
    ("[]", "(body): must be an object"),
    ('{"kind": "rf.leave"}', "(body): Input tag 'rf.leave' found using 'kind' does not match any of the expected "
                             "tags: 'rf.join', 'intercom.contact', 'intercom.check', 'join.verify', 'intercom.changes'"),
    ('{"campaign_id": "42"}', "(body): Unable to extract tag using discriminator 'kind'"),
    (json.dumps({**OLD_JOIN, "rf_user_id": None}), "rf.join.rf_user_id: must be a number, or text of letters"),
    (json.dumps({**OLD_JOIN, "person": {**OLD_JOIN["person"], "email": 5}}), "rf.join.person.email: must be text"),
    (json.dumps({**OLD_CONTACT, "item": ["x"]}), "intercom.contact.item: must be an object"),
    (json.dumps({**OLD_CONTACT, "item": {"id": {"x": 1}}}), "intercom.contact.item.id: must be a number"),
    (json.dumps({**OLD_CONTACT, "topic": ["contact.lead.updated"]}), "intercom.contact.topic: must be text"),
    (json.dumps({**OLD_CONTACT, "topic": "conversation.user.created"}),
     "intercom.contact.topic: 'conversation.user.created' is not a contact topic this bridge handles"),
    (json.dumps({**OLD_CONTACT, "created_at": 1e300}), "intercom.contact.created_at: is out of range for a unix time"),
    (json.dumps({**OLD_CHECK, "workspace": "a/../b"}), "intercom.check.workspace: must be a number, or text"),
    ('{"kind": "intercom.check", "campaign_id": NaN, "rf_user_id": "7", "workspace": "w"}',
     "intercom.check.campaign_id: must be a number"),
    ("[" * 300 + "]" * 300, "(body): Invalid JSON: recursion limit exceeded"),
])
def test_what_no_model_reads_is_unreadable_with_a_reason(body, reason):
    with pytest.raises(Unreadable) as caught:
        messages.parse(body)
    assert caught.value.reason.startswith(reason)


def test_the_topic_table_is_the_one_list_of_contact_topics():
    assert set(CONTACT_TOPICS.values()) == {"changed", "merged", "deleted", "archived", "unarchived"}
    assert {t for t, c in CONTACT_TOPICS.items() if c in ("deleted", "archived")} == {"contact.deleted",
                                                                                     "contact.archived"}
    for topic in CONTACT_TOPICS:
        assert messages.read({**OLD_CONTACT, "topic": topic}).topic == topic
    with pytest.raises(TypeError):
        CONTACT_TOPICS["contact.user.deleted"] = "deleted"                  # read-only


def test_the_queue_carries_utf8_and_escapes_the_two_characters_sqs_refuses():
    from chalicelib.adapters.queue import MAX_BODY_BYTES, encode
    from chalicelib.ports import MessageTooLarge
    message = ContactMessage(workspace="ws", topic="contact.lead.updated",
                             item={"id": "c1", "name": "Zoë \ufffe\uffff\u0000"}).wire()
    body = encode(message)
    assert "Zoë" in body and "\ufffe" not in body and "\uffff" not in body and "\u0000" not in body
    assert messages.parse(body).item.as_dict()["name"] == "Zoë \ufffe\uffff\u0000"
    with pytest.raises(MessageTooLarge):
        encode({**message, "item": {"id": "c1", "pad": "x" * MAX_BODY_BYTES}})


def test_reconciliation_builds_its_checks_with_the_model_and_skips_a_link_no_check_can_name():
    from chalicelib.domain.link import ContactState, JoinResult, LinkStatus
    from chalicelib.domain.qualification import QState
    from chalicelib.services.reconcile import reconcile
    from tests.unit.scenario import world

    rt = world()                                     # (a campaign with a rule: the sweep checks its leads)
    for user in ("1", "my user", "3", "4"):           # "my user": stored by an older, laxer intake
        claim = rt.store.links.claim(PersonRef("42", user), "ws")
        rt.store.links.finish(claim, JoinResult(LinkStatus.LINKED, kind="lead", contact_id="c",
                                                qualification=QState.PENDING), [])
        rt.clock.now += 1
    gone = rt.store.links.get(PersonRef("42", "3"))
    rt.store.links.set_contact(gone, [], state=ContactState.DELETED)
    with written_lines() as written:
        assert reconcile(rt, limit=10) == {"queued": 2, "round_complete": True, "searches": 0, "overdue": 0}
    assert [messages.read(m).person_ref for m in rt.queue.sent] == [("42", "1"), ("42", "4")]
    # The skipped link is said in one line, naming the field (not pydantic's text: lines, a link to its docs).
    [said] = [json.loads(line) for line in written() if "cannot be checked" in line]
    assert said["rf_user_id"] == "my user" and said["reason"].startswith("rf_user_id: "), said
    assert "\n" not in said["reason"] and "http" not in said["reason"], said["reason"]


def test_a_dead_letters_reason_holds_only_characters_sqs_takes_in_an_attribute():
    """A reason quotes what a message held (an unreadable kind's text, with a NUL or U+FFFF): SQS refuses
    a message attribute with such a character, as it does a body (its allowed set: #x9, #xA, #xD, #x20 to
    #xD7FF, #xE000 to #xFFFD, #x10000 to #x10FFFF)."""
    import re
    from chalicelib.adapters.queue import Queue

    class Client:
        sent: list[dict] = []

        def send_message(self, **params):
            self.sent.append(params)
    client = Client()
    with pytest.raises(messages.Unreadable) as unreadable:
        messages.parse('{"kind": "rf.join\\u0000\\uffff\\u001b"}')
    Queue("work", "dead", client=client).dead_letter('{"kind": "rf.join\\u0000"}',
                                                     f"unreadable message: {unreadable.value.reason}", 1, "2026-01-01T00:00:00Z")
    [sent] = client.sent
    value = sent["MessageAttributes"]["reason"]["StringValue"]
    assert not re.search("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]", value), value
    assert value.startswith("unreadable message: (body): Input tag 'rf.join")
