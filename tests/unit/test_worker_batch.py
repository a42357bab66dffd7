"""The worker's batch handling with fake handlers: each record succeeds or fails on its own."""
import json

import pytest

from chalicelib import config, messages
from chalicelib.errors import Deferred, Permanent, Transient
from chalicelib.messages import CheckMessage, ContactMessage, JoinMessage
from chalicelib.services.worker import HANDLERS, Handler, RetryBatch, handle_batch
from chalicelib.domain.history import iso
from chalicelib.domain.link import PersonRef
from tests.fakes import FakeWork


def record(n: int, body, receives: int = 1) -> dict:
    return {"messageId": f"m{n}", "receiptHandle": f"rh{n}", "attributes": {"ApproximateReceiveCount": str(receives)},
            "body": body if isinstance(body, str) else json.dumps(body)}


def check(user: str) -> dict:
    return CheckMessage(campaign_id="42", rf_user_id=user, workspace="ws").wire()


class Recorder:
    """A kind's handler: the batched reads it was asked for, and what it applied (in the order the records ran: they
    run at once, so only one at a time keeps the batch's order)."""

    def __init__(self, read_breaks_on=(), fails=None):
        self.reads: list[list[str]] = []
        self.applied: list[str] = []
        self.read_breaks_on, self.fails = set(read_breaks_on), fails or {}

    def prepare(self, messages, deps):
        users = [m.rf_user_id for m in messages]
        self.reads.append(users)
        if self.read_breaks_on & set(users):
            raise RuntimeError("ValidationException: key too long")
        return {"read": users}

    def handle(self, message, deps, context):
        assert message.rf_user_id in context["read"]
        if message.rf_user_id in self.fails:
            raise self.fails[message.rf_user_id]
        self.applied.append(message.rf_user_id)

    def handlers(self):
        return {CheckMessage: Handler(self.prepare, self.handle)}


def test_the_registry_handles_every_kind_of_message():
    assert set(HANDLERS) == set(messages.KINDS.values())


def test_an_unreadable_record_is_dead_lettered_alone_and_its_neighbours_finish():
    rt, kind = FakeWork(), Recorder()
    poison = {"kind": "intercom.check", "campaign_id": "42", "rf_user_id": "9"}           # no workspace
    records = [record(i, check(str(i))) for i in range(4)] + [record(4, poison)] + \
              [record(i, check(str(i))) for i in range(5, 9)] + [record(9, "{")]
    assert handle_batch(records, rt, handlers=kind.handlers()) == {"done": 8, "retry": 0, "dead": 2}
    assert sorted(kind.applied, key=int) == [str(i) for i in range(9) if i != 4] and len(kind.reads) == 1
    assert [(d["reason"], d["attempts"]) for d in rt.queue.dead] == [
        ("unreadable message: intercom.check.workspace: required", 1),
        ("unreadable message: (body): Invalid JSON: EOF while parsing an object at line 1 column 1", 1)]
    assert rt.queue.dead[0]["body"] == json.dumps(poison)                # the body exactly as it came


def test_a_record_that_breaks_the_batched_read_is_found_and_fails_alone():
    rt, kind = FakeWork(), Recorder(read_breaks_on={"5"})
    records = [record(i, check(str(i))) for i in range(10)]
    with pytest.raises(RetryBatch, match="1 of 10 records will be retried: m5: batched read failed: RuntimeError"):
        handle_batch(records, rt, handlers=kind.handlers())
    assert sorted(kind.applied, key=int) == [str(i) for i in range(10) if i != 5]
    # the whole batch, then each alone, then the nine together again: they still share one read
    assert kind.reads[0] == [str(i) for i in range(10)] and len(kind.reads) == 12
    assert kind.reads[-1] == [str(i) for i in range(10) if i != 5]
    assert rt.queue.deleted == [f"rh{i}" for i in range(10) if i != 5] and rt.queue.delayed == {"rh5": 5}


def test_a_read_that_keeps_failing_dead_letters_after_the_last_try_with_the_reason_and_in_the_history():
    rt, kind = FakeWork(), Recorder(read_breaks_on={"5"})           # BRIDGE_MAX_ATTEMPTS=3
    rt.store.links.claim(PersonRef("42", "5"), "ws")                  # (the person the bridge keeps: a link)
    records = [record(5, check("5"), receives=3), record(6, check("6"), receives=3)]
    assert handle_batch(records, rt, handlers=kind.handlers()) == {"done": 1, "retry": 0, "dead": 1}
    [dead] = rt.queue.dead
    assert dead["reason"] == "gave up after 3 tries: batched read failed: RuntimeError: ValidationException: key too long"
    assert rt.store.history.entries(PersonRef("42", "5"))[-1].reason == dead["reason"]


def test_a_batched_read_that_must_wait_makes_its_records_wait_without_using_a_try():
    """The read itself waits for the rate budget (say, reconciliation's search): a wait, never a try,
    so no dead letter however often it happens."""
    rt = FakeWork()

    def spent(messages_, deps):
        raise Deferred("the shared Intercom budget (120 calls per 10s) is spent", retry_after=3)

    records = [record(i, check(str(i)), receives=3) for i in range(3)]
    kind = Recorder()
    assert handle_batch(records, rt, handlers={CheckMessage: Handler(spent, kind.handle)}) == {
        "done": 0, "retry": 0, "dead": 0, "waiting": 3}
    assert rt.queue.dead == [] and [later.waits for later in rt.queue.deferred] == [1, 1, 1]


def test_handler_failures_are_per_record_permanent_at_once_transient_until_the_last_try():
    rt = FakeWork()
    kind = Recorder(fails={"1": Permanent("Intercom answered 400: bad"), "2": Transient("RF answered 503"),
                           "3": KeyError("bug")})
    records = [record(0, check("0")), record(1, check("1")), record(2, check("2")), record(3, check("3"), receives=3)]
    with pytest.raises(RetryBatch, match="1 of 4 records will be retried: m2: RF answered 503"):
        handle_batch(records, rt, handlers=kind.handlers())
    assert kind.applied == ["0"]
    assert [d["reason"] for d in rt.queue.dead] == ["Intercom answered 400: bad", "gave up after 3 tries: KeyError: 'bug'"]
    assert rt.queue.deleted == ["rh0", "rh1", "rh3"]


def test_a_kind_without_a_handler_is_retried_then_dead_lettered_with_the_reason():
    rt = FakeWork()
    join = JoinMessage(campaign_id="42", rf_user_id="7", person={"id": "7", "campaign_id": "42"}).wire()
    assert handle_batch([record(0, join, receives=3)], rt, handlers={}) == {"done": 0, "retry": 0, "dead": 1}
    assert rt.queue.dead[0]["reason"] == "gave up after 3 tries: no handler for message kind 'rf.join'"


# --- the real registry, on the store's in-memory twin -------------------------------------------------
class CountingLookup:
    def __init__(self, inner):
        self.inner, self.calls = inner, 0

    def look_up(self, **kw):
        self.calls += 1
        return self.inner.look_up(**kw)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_a_mixed_batch_makes_one_batched_read_per_kind_and_applies_every_record():
    import dataclasses

    from tests.unit.scenario import event, joined, records, set_value, world
    work = world()
    counting = CountingLookup(work.deps.lookup)
    work.deps = dataclasses.replace(work.deps, lookup=counting)
    ann, ann_contact = joined(work, "1", "ann@example.com")
    bob, bob_contact = joined(work, "2", "bob@example.com")
    set_value(work, bob_contact, "Yes")
    join = JoinMessage(campaign_id="42", rf_user_id="3", person={"id": "3", "campaign_id": "42", "type": "lead",
                                                                 "email": "cy@example.com"}).wire()
    bodies = [event(set_value(work, ann_contact, "Yes"), notification="n1"), check("2"), join,
              event(ann_contact, notification="n2")]
    assert handle_batch(records(*bodies), work) == {"done": 4, "retry": 0, "dead": 0}
    # one for the contact events, one for the checks, one for the join's email (search did not show it)
    assert counting.calls == 3
    assert sorted(work.apis.rf_.qualified) == ["1", "2"]


def test_records_not_started_before_the_lambdas_time_runs_out_come_back_soon_without_using_a_try():
    from tests.unit.scenario import records, world
    work = world()
    summary = handle_batch(records(check("1"), check("2")), work, remaining_ms=lambda: 1000)
    assert summary == {"done": 0, "retry": 0, "dead": 0, "waiting": 2}
    assert [(d.delay, d.tries, d.waits) for d in work.queue.deferred] == [(5, 0, 1), (5, 0, 1)]


@pytest.mark.parametrize("together", [False, True], ids=["after-a-record-about-the-same-person", "after-a-group"])
def test_a_record_that_waited_for_others_of_its_batch_is_not_started_once_the_time_runs_out(together):
    """Records about one person run one after another, and a kind worked as a group (joins) after the groups before
    it: a record starts only when those end. Started with less than the record budget left, its AWS calls would be
    refused before it could finish (adapters/aws.within: none in the time the worker keeps to settle), a try used
    up for starting late. It is handed back, as a record not started at all is: it comes back soon, without a try."""
    from tests.unit.scenario import records, world
    work = world()
    left = [60_000]
    applied: list[str] = []

    def apply(message, deps, context):
        applied.append(message.kind)
        left[0] = work.config.record_budget_ms - 1        # the first took the time

    def group(messages, deps, context, pool):
        return [apply(m, deps, context) for m in messages]
    join = JoinMessage(campaign_id="42", rf_user_id="1", person={"id": "1", "campaign_id": "42"}).wire()
    kinds = {kind: Handler(lambda messages, deps: {}, **({"run_all": group} if together else {"handle": apply}))
             for kind in (CheckMessage, JoinMessage)}
    summary = handle_batch(records(check("1"), join), work, remaining_ms=lambda: left[0], handlers=kinds)
    assert len(applied) == 1 and summary == {"done": 1, "retry": 0, "dead": 0, "waiting": 1}
    assert [(d.delay, d.tries, d.waits) for d in work.queue.deferred] == [(5, 0, 1)]


@pytest.mark.parametrize("status, waited_ms, calls", [
    (200, 7_000, 0),       # it waited (a rate-limit pause) before its call: the call is not made
    (503, 0, 1),           # its call's first attempt took the time (timed out): the retry is not made
])
def test_a_vendor_call_that_could_not_end_before_the_records_own_write_and_the_settling_is_not_made(
        monkeypatch, status, waited_ms, calls):
    """A record started with the budget's 30 s, which waited 5 s, then whose call timed out twice (10 s each), had
    ~5 s left: its own write after the call, then the worker's settling, were refused (adapters/aws.within), and the
    whole batch came back as the Lambda's error. No attempt, a retry neither, starts that could not end (its
    timeout) with one AWS attempt left after it: nothing is sent (no reward half sent), the record waits."""
    from chalicelib.adapters import aws
    from chalicelib.adapters.referral_factory import ReferralFactoryClient
    from chalicelib.runtime import answering as in_time
    from tests.support.answering_server import answering
    from tests.unit.scenario import records

    monkeypatch.setattr(aws, "_bounds", aws.WORKER)                   # as in the worker's container
    work = FakeWork()
    waited = [0]
    with answering(status, {"data": {"id": 7}}) as (url, seen):
        def remaining_ms():                                       # each attempt made takes its whole timeout
            return work.config.record_budget_ms - waited[0] - len(seen) * int(work.config.http_timeout * 1000)
        work.in_time = lambda kept_ms: in_time(remaining_ms, kept_ms)
        rf = ReferralFactoryClient(url, "t", timeout=work.config.http_timeout)

        class Calling(Recorder):
            def handle(self, message, deps, context):
                waited[0] = waited_ms
                rf.get_user(message.rf_user_id)
                super().handle(message, deps, context)

        summary = handle_batch(records(check("7")), work, remaining_ms=remaining_ms, handlers=Calling().handlers())
    assert len(seen) == calls and summary == {"done": 0, "retry": 0, "dead": 0, "waiting": 1}
    [copy] = work.queue.deferred
    assert (copy.tries, copy.waits) == (0, 1) and copy.delay < 10            # back soon, no try used up


def test_a_vendor_call_after_the_longest_wait_allowed_leaves_the_worker_its_aws_calls_and_settling():
    from chalicelib.adapters import aws
    from chalicelib.adapters.memory import MemoryStore
    from chalicelib.config import Config
    from chalicelib.runtime import Runtime
    from chalicelib.services import worker
    from tests.fakes import FakeQueue, MemorySecrets

    rt = Runtime(Config.from_env({}), store=MemoryStore(), queue=FakeQueue(), secrets=MemorySecrets())
    left = rt.config.record_budget_ms / 1000
    rt.remaining_ms = lambda: int(left * 1000)
    after = left - rt.max_wait() - rt.config.http_timeout
    assert after * 1000 >= config.SETTLE_MS + aws.WORKER.attempt * 1000


def test_a_dead_lettered_record_about_a_person_says_so_in_their_history():
    from tests.unit.scenario import check as replayed_check
    from tests.unit.scenario import history, joined, records, world
    work = world()
    joined(work)
    work.store.settings.put("42", {"campaign_id": "42", "workspace": "ws", "leads": {"action": "fly"}}, "ws")
    assert handle_batch(records(replayed_check("7", replayed_from="d1")), work)["dead"] == 1
    assert history(work)[-1] == ("dead_letter", "failed")
    assert work.queue.dead[0]["failed_at"].startswith("2026-")


def test_records_about_different_people_run_at_once_and_about_one_person_one_after_another():
    """Three people's checks meet at a barrier (so they ran at the same time); the second check of
    person 1 starts only after the first has finished."""
    import threading

    barrier, lock = threading.Barrier(3, timeout=10), threading.Lock()
    running: set[str] = set()
    overlaps: list[str] = []
    order: list[str] = []

    class AtOnce(Recorder):
        def handle(self, message, deps, context):
            user = message.rf_user_id
            with lock:
                if user in running:
                    overlaps.append(user)
                running.add(user)
                first = user not in order
                order.append(user)
            try:
                if first:
                    barrier.wait()
            finally:
                with lock:
                    running.discard(user)

    kind = AtOnce()
    records = [record(n, check(user)) for n, user in enumerate(["1", "2", "3", "1"])]
    assert handle_batch(records, FakeWork(), handlers=kind.handlers()) == {"done": 4, "retry": 0, "dead": 0}
    assert overlaps == [] and order[-1] == "1" and sorted(order) == ["1", "1", "2", "3"]


def test_with_one_at_a_time_records_run_in_batch_order():
    kind = Recorder()
    records = [record(n, check(str(n))) for n in range(5)]
    handle_batch(records, FakeWork(BRIDGE_CONCURRENCY="1"), handlers=kind.handlers())
    assert kind.applied == ["0", "1", "2", "3", "4"]


def disconnected_verify() -> tuple[FakeWork, dict]:
    """A delayed duplicate check of a workspace disconnected since."""
    from chalicelib.errors import Disconnected
    from chalicelib.messages import VerifyMessage
    from tests.unit.scenario import joined, world
    work = world()
    link, contact = joined(work)
    verify = VerifyMessage(campaign_id="42", rf_user_id="7", workspace="ws", contact_id=contact["id"],
                           email="ann@example.com", not_before=work.clock() - 1).wire()

    def disconnected(workspace):
        raise Disconnected(workspace)

    work.apis.intercom = disconnected          # what the runtime answers for a disconnected workspace
    return work, verify


def test_a_batched_read_that_fails_for_good_dead_letters_at_once_with_its_own_reason():
    """A delayed duplicate check of a disconnected workspace: its batched read (Intercom's search) says
    the workspace is disconnected. That is not retried: the one reason, one try, as for every other kind."""
    from tests.unit.scenario import records
    work, verify = disconnected_verify()
    assert handle_batch(records(verify, verify), work) == {"done": 0, "retry": 0, "dead": 2}
    assert [(d["reason"].partition(" — ")[0], d["attempts"]) for d in work.queue.dead] == [
        ("workspace disconnected: Intercom workspace ws was disconnected", 1)] * 2
    assert work.store.history.entries(PersonRef("42", "7"))[-1].reason.startswith("workspace disconnected:")


def test_a_batched_read_that_fails_for_an_expected_reason_is_one_warning_line_without_a_traceback(caplog):
    """A disconnected workspace dead-letters its work by design: the log says why in one warning line,
    not an ERROR with a traceback (kept for what nobody expected)."""
    import logging

    from tests.unit.scenario import records
    work, verify = disconnected_verify()
    with caplog.at_level(logging.INFO):
        assert handle_batch(records(verify), work)["dead"] == 1
    [read] = [r for r in caplog.records if r.getMessage().startswith("batched read failed")]
    assert (read.levelname, read.exc_info) == ("WARNING", None)
    assert read.getMessage().startswith("batched read failed: workspace disconnected: Intercom workspace ws was "
                                        "disconnected — reconnect it")
    assert not [r for r in caplog.records if r.exc_info]                       # no traceback anywhere

    def broken(messages_, deps):
        raise RuntimeError("a bug")
    caplog.clear()
    with caplog.at_level(logging.INFO), pytest.raises(RetryBatch):
        handle_batch([record(1, check("1"))], FakeWork(), handlers={CheckMessage: Handler(broken, Recorder().handle)})
    [read] = [r for r in caplog.records if r.getMessage().startswith("batched read failed")]
    assert read.levelname == "ERROR" and read.exc_info is not None              # the unexpected keeps its traceback



def test_a_batched_read_refused_the_workspaces_token_logs_the_wait_not_a_replay(caplog):
    """Rehearsing `make fault ARGS="intercom revoke-token"`, `make run`'s terminal said "batched read failed: ... reconnect
    the workspace, then `bridge dlq replay ...`" while explain, doctor and the fault's own line said the work waits for
    the new token and goes on by itself, with no replay (and the dead-letter queue was empty)."""
    import logging

    from chalicelib.errors import TokenRefused, refused_token, replay_refused
    from tests.unit.scenario import records
    work, verify = disconnected_verify()
    answer = "Intercom answered 401 unauthorized: Access Token Invalid"

    def refused(workspace):
        raise TokenRefused(f"{answer} — {refused_token(workspace)} (invalid or revoked): reconnect the workspace, then "
                           f"`{replay_refused(workspace)}`", workspace, None, answer, status=401)

    work.apis.intercom = refused
    with caplog.at_level(logging.INFO):
        assert handle_batch(records(verify), work)["dead"] == 0
    [read] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("batched read failed")]
    assert "dlq replay" not in read and "no replay" in read, read
    assert read.startswith(f"batched read failed: {refused_token('ws')} ({answer}): the work waits for the "
                           "workspace's token to be replaced — "), read
    assert work.queue.dead == []

def test_a_record_whose_read_fails_for_good_is_still_found_alone_and_its_neighbours_finish():
    kind = Recorder()

    def read(messages_, deps):
        if "5" in [m.rf_user_id for m in messages_]:
            raise Permanent("Intercom answered 400: bad email")
        return kind.prepare(messages_, deps)

    rt = FakeWork()
    records = [record(i, check(str(i))) for i in range(4, 7)]
    assert handle_batch(records, rt, handlers={CheckMessage: Handler(read, kind.handle)}) == {
        "done": 2, "retry": 0, "dead": 1}
    assert sorted(kind.applied, key=int) == ["4", "6"] and [(d["reason"], d["attempts"]) for d in rt.queue.dead] == [
        ("Intercom answered 400: bad email", 1)]


def test_a_handled_record_sqs_would_not_delete_is_named_in_the_batch_error():
    """SQS refuses to delete a handled record: it comes back with the retried one and is worked again
    (a repeat, worked once); the error says so, rather than nothing."""
    rt, kind = FakeWork(), Recorder(fails={"2": Transient("RF answered 503")})
    rt.queue.refuse_delete = lambda handle: "InternalError" if handle == "rh1" else None
    with pytest.raises(RetryBatch, match=r"m2: RF answered 503; SQS would not delete 1 handled record\(s\) "
                                         r"\(InternalError\): they come back and are worked again as repeats$"):
        handle_batch([record(i, check(str(i))) for i in range(3)], rt, handlers=kind.handlers())
    assert rt.queue.deleted == ["rh0"]



def test_an_invocation_that_counted_nothing_logs_no_metrics_warning_and_one_that_counted_logs_its_metrics(capsys):
    """Powertools warns ("No application metrics to publish") when flushed empty: a stray line in the
    function's log. The handlers flush only what was counted."""
    import warnings

    from chalicelib import handlers
    from chalicelib.observability import count, metrics
    from chalicelib.runtime import reset_default_runtime

    metrics.clear_metrics()                 # what other tests counted without a handler to flush it
    reset_default_runtime(FakeWork())
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert handlers.sqs_batch([]) == {"done": 0, "retry": 0, "dead": 0}
            count("RecordsProcessed")
            handlers.sqs_batch([])
    finally:
        reset_default_runtime(None)
    assert [str(w.message) for w in caught] == []
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert [m.get("RecordsProcessed") for m in emf] == [[1.0]]


def test_a_record_the_dead_letter_queue_refuses_comes_back_alone_and_its_neighbours_finish():
    """SQS refuses one letter (say, a body near its size limit that has no room left for the reason): that
    record comes back on its own (SQS's redrive moves it after repeated receives); the nine beside it are
    worked and deleted on this delivery, not handed back with it."""
    rt, kind = FakeWork(), Recorder()
    sent = rt.queue.dead_letter

    def refuses_the_poison(body, reason, attempts, failed_at):
        if "rf_user_id" not in body:
            raise RuntimeError("InvalidParameterValue: message must be shorter than 262144 bytes")
        sent(body, reason, attempts, failed_at)
    rt.queue.dead_letter = refuses_the_poison
    records = [record(i, check(str(i))) for i in range(9)] + [record(9, {"kind": "intercom.check"})]
    with pytest.raises(RetryBatch, match="1 of 10 records will be retried: m9: could not send it to the dead-letter "
                                         "queue: RuntimeError: InvalidParameterValue"):
        handle_batch(records, rt, handlers=kind.handlers())
    assert sorted(kind.applied, key=int) == [str(i) for i in range(9)]
    assert rt.queue.deleted == [f"rh{i}" for i in range(9)] and rt.queue.dead == []


def test_a_dead_letter_whose_note_in_the_history_fails_is_sent_once_and_its_neighbours_finish():
    rt = FakeWork()
    kind = Recorder(fails={"1": Permanent("Intercom answered 400: bad")})

    def throttled(ref, entries):
        raise RuntimeError("ProvisionedThroughputExceededException")
    rt.deps.links.note = throttled
    assert handle_batch([record(i, check(str(i))) for i in range(3)], rt, handlers=kind.handlers()) == {
        "done": 2, "retry": 0, "dead": 1}
    assert [d["reason"] for d in rt.queue.dead] == ["Intercom answered 400: bad"] and sorted(kind.applied, key=int) == ["0", "2"]


def test_each_line_about_a_failed_record_says_which_record_and_whom():
    """The worker's lines about a record that failed (retried, or sent to the dead-letter queue) are written once
    every record has run: they named neither the record (its SQS message id, as the batch's RetryBatch names it)
    nor the person it is about, so an operator could tell neither which try failed nor whom to `bridge explain`."""
    from chalicelib.observability import logger
    from tests.support.log_lines import written_lines

    rt = FakeWork()
    kind = Recorder(fails={"8": Permanent("Intercom answered 400: refused"), "9": Transient("Intercom answered 409")})
    with written_lines() as written:
        with pytest.raises(RetryBatch):
            handle_batch([record(1, check("7")), record(2, check("8")), record(3, check("9"))], rt,
                         handlers=kind.handlers())
        logger.info("the next line")
    lines = {line["message"]: line for line in map(json.loads, written())}
    dead, retried = lines["record sent to the dead-letter queue"], lines["record will be retried"]
    assert (dead["message_id"], dead["kind"], dead["campaign_id"], dead["rf_user_id"]) == ("m2", "intercom.check",
                                                                                            "42", "8")
    assert (retried["message_id"], retried["rf_user_id"]) == ("m3", "9")
    assert not {"message_id", "kind", "rf_user_id"} & set(lines["the next line"])     # not left on later lines


@pytest.mark.parametrize("asked, waits", [(7200.0, 720.0), (90.0, 90.0)], ids=["two hours", "ninety seconds"])
def test_a_failed_try_honours_a_vendors_retry_after_no_longer_than_the_queues_own_retry(asked, waits):
    """A failure the worker does not wait out as an outage (the vendor answers, e.g. a 409 or a 503 after its
    answers came back) may carry a `Retry-After`: the record comes back then (its visibility changed), the same
    message, aging. Honoured for hours, a record's BRIDGE_MAX_ATTEMPTS tries outlast the work-queue-stalled alarm's
    hour, which then fires on a worker that works (tests/deploy/test_alarm_evaluation derives the plan). At most
    LONGEST_RETRY_WAIT (the queue's visibility timeout as deployed: its own retry); a shorter wait, as asked. The
    history says when it comes back."""
    from chalicelib.services.worker import LONGEST_RETRY_WAIT
    rt = FakeWork()
    rt.store.links.claim(PersonRef("42", "5"), "ws")                  # (the person the bridge keeps: a link)
    kind = Recorder(fails={"5": Transient(f"Referral Factory answered 409 and asked to wait {asked:.0f}s",
                                          retry_after=asked)})
    with pytest.raises(RetryBatch):
        handle_batch([record(5, check("5"))], rt, handlers=kind.handlers())
    assert rt.queue.delayed == {"rh5": waits} and LONGEST_RETRY_WAIT == 720.0
    [noted] = [e for e in rt.store.history.entries(PersonRef("42", "5")) if e.outcome == "retrying"]
    assert noted.details["next_try_at"] == iso(rt.clock() + waits)
