"""`make run` + `make demo`: the local stack, started as `make run` starts it, shows a
referral qualify end to end on the simulators (the worker is driven by the test)."""
import os

from infra.local import demo, run


def test_the_local_stack_plays_the_demo_end_to_end(monkeypatch):
    for var in ("INTERCOM_TOKEN", "RF_TOKEN", "INTERCOM_CLIENT_SECRET", "RF_WEBHOOK_SECRET"):
        monkeypatch.delenv(var, raising=False)
    saved = dict(os.environ)
    stack = run.start(api_port=0, background=False)
    try:
        lines = []
        history = demo.play(stack.state(), settle=stack.poller.drain, say=lines.append)
        assert [h["outcome"] for h in history["history"]][-1] == "qualified"
        assert any("qualified at" in line for line in lines)
    finally:
        stack.stop()
        os.environ.clear()
        os.environ.update(saved)
        from chalicelib.services.runtime import reset_default_runtime
        reset_default_runtime(None)
