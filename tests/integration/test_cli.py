"""The documented operator commands: settings apply / show, and their error messages."""
from __future__ import annotations

import json

import yaml

from chalicelib.cli import main

from .conftest import lead_settings


def write(tmp_path, doc) -> str:
    path = tmp_path / "campaign.yaml"
    path.write_text(yaml.safe_dump(doc) if isinstance(doc, dict) else doc)
    return str(path)


def test_settings_apply_then_show(bridge, tmp_path, capsys):
    assert main(["settings", "apply", write(tmp_path, lead_settings())], rt=bridge.rt) == 0
    # the workspace lacked the bridge's marker attribute: applying made it (once)
    assert json.loads(capsys.readouterr().out) == {"campaign_id": "42", "version": 1,
                                                   "created": ["custom_attributes.rf_person"]}
    assert main(["settings", "apply", write(tmp_path, lead_settings())], rt=bridge.rt) == 0
    assert json.loads(capsys.readouterr().out) == {"campaign_id": "42", "version": 2}
    assert main(["settings", "show", "42"], rt=bridge.rt) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["version"] == 2 and shown["settings"]["leads"]["action"] == "create_lead"


def test_invalid_settings_name_the_key_and_the_fix_and_are_not_stored(bridge, tmp_path, capsys):
    doc = lead_settings()
    doc["leads"]["fields"] = [{"from": "first_name", "to": "name"}, {"value": 1, "to": "name"}]
    doc["colour"] = "red"
    assert main(["settings", "apply", write(tmp_path, doc)], rt=bridge.rt) == 2
    err = capsys.readouterr().err
    assert "colour: unknown key — remove it or check its spelling" in err
    assert "leads: 'name' is mapped twice — map each Intercom attribute at most once" in err
    assert main(["settings", "show", "42"], rt=bridge.rt) == 1


def test_apply_checks_the_live_workspace_for_missing_attributes_and_types(bridge, tmp_path, capsys):
    doc = lead_settings()
    doc["leads"]["fields"] += [{"from": "code", "to": "custom_attributes.nope"},
                               {"value": "lots", "to": "custom_attributes.score"}]
    assert main(["settings", "apply", write(tmp_path, doc)], rt=bridge.rt) == 2
    err = capsys.readouterr().err
    assert "leads.fields[4].to: custom_attributes.nope does not exist in workspace vne310wv" in err
    assert "leads.fields[5].value: 'lots' is not a number" in err


def test_history_shows_the_trail_without_secrets(bridge, rf, intercom, capsys):
    from .conftest import join_body
    from .test_join_flow import new_lead
    bridge.apply(lead_settings())
    lead = new_lead(rf)
    bridge.post_join(join_body(lead))
    bridge.drain()
    assert main(["history", "42", str(lead["id"])], rt=bridge.rt) == 0
    out = capsys.readouterr().out
    assert '"outcome": "created"' in out
    assert "ann@example.com" not in out and '"email": "a***@example.com"' in out       # masked, as explain
    assert "sim-token" not in out and "client-secret" not in out and "rf-hook-secret" not in out
