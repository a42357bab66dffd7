"""`make run` + `make demo`: the local stack, started as `make run` starts it, shows a
referral qualify end to end on the simulators (the worker is driven by the test)."""
import os

from infra.local import demo, run


def test_the_local_stack_plays_the_demo_end_to_end(monkeypatch):
    for var in ("INTERCOM_TOKEN", "RF_TOKEN"):
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


def test_make_run_takes_a_port():
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    dry = subprocess.run(["make", "-n", "run", "PORT=8123"], cwd=root, capture_output=True, text=True, check=True)
    assert "PORT=8123 .venv/bin/python -m infra.local.run" in dry.stdout
    assert run.api_port({"PORT": "8123"}) == 8123 and run.api_port({}) == 8000
