"""The docs' operator reference (the README and docs/*.md, read as one: tests/support/docs.py) stays true
to what is deployed: the CLI operator's rights point to the rendered policies and name every index the CLI
queries, and each environment variable
has one row (two rows drift apart)."""
from __future__ import annotations

import re

import pytest
import yaml

from infra import deploy

from tests.support.docs import docs_text, section

README = docs_text()      # the README and docs/*.md: wherever a fact lives, it is guarded


def _template() -> dict:
    class Loader(yaml.SafeLoader):
        pass
    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    return yaml.load(deploy.TEMPLATE.read_text(), Loader=Loader)


def test_the_cli_operators_rights_grant_query_on_every_index_of_the_table():
    """`doctor` queries the `pending` and the `overdue` index (store.links.overdue): an operator given only the
    rendered operator policies (tests/deploy/test_operator_policy.py checks them against every command) must have
    doctor allowed on every index the template declares, and the docs' summary name them all."""
    indexes = [i["IndexName"] for i in _template()["Resources"]["Table"]["Properties"]["GlobalSecondaryIndexes"]]
    target = deploy.Target("prod", "123456789012", "eu-west-1", {
        "TableArn": "arn:aws:dynamodb:eu-west-1:123456789012:table/t", "QueueArn": "arn:aws:sqs:eu-west-1:1:w",
        "DeadLetterQueueArn": "arn:aws:sqs:eu-west-1:1:d", "SecretsPath": "/p", "StateBucket": "b"})
    for name, policy in deploy.operator_policies(target).items():
        queried = {r for s in policy["Statement"] if "dynamodb:Query" in s["Action"] for r in s["Resource"]}
        assert {f"arn:aws:dynamodb:eu-west-1:123456789012:table/t/index/{i}" for i in indexes} <= queried, name
    rights = README.split("The CLI runs with the operator's own AWS credentials.")[1].split("**Personal data.**")[0]
    named = re.search(r"`Query` on its (.*?) index", " ".join(rights.split()))
    assert named, rights
    assert sorted(re.findall(r"`(\w+)`", named.group(1))) == sorted(indexes)


def test_the_cli_operators_rights_point_to_the_rendered_policies():
    """The docs name the files `make deploy` writes for the operator, not a list kept by hand."""
    rights = README.split("The CLI runs with the operator's own AWS credentials.")[1].split("**Personal data.**")[0]
    for name in deploy.OPERATORS:
        assert f"`.chalice/{deploy.policy_file('<stage>', name)}`" in rights
    readonly = " ".join(rights.split("-operator-readonly.json`:")[1].split(".")[0].split())
    assert sorted(re.findall(r"`([a-z ]+)`", readonly)) == sorted(deploy.OPERATOR_READONLY_COMMANDS), readonly


def test_each_environment_variable_has_one_row():
    rows_of = section("Environment variables")
    rows = [re.findall(r"`([A-Z][A-Z0-9_]+)`", line.split("|")[1]) for line in rows_of.splitlines()
            if line.startswith("| `")]
    names = [name for row in rows for name in row]
    assert len(names) > 20 and sorted({n for n in names if names.count(n) > 1}) == []


def test_each_variable_the_deployed_config_sets_is_in_the_readme_with_that_value_as_its_default():
    """infra/chalice-config.json is where an operator changes a deployed setting: what it deploys is what the
    README's table says the default is."""
    import json

    defaults = {name: line.split("|")[2].strip().strip("`") for line in section("Environment variables").splitlines()
                if line.startswith("| `") for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", line.split("|")[1])}
    deployed = json.loads(deploy.BASE_CONFIG.read_text())["environment_variables"]
    assert {"BRIDGE_MAX_ATTEMPTS", "BRIDGE_OUTAGE_HOURS"} <= set(deployed)
    assert {name: defaults.get(name) for name in deployed} == deployed


def test_the_readmes_discard_example_selects_only_what_can_never_succeed():
    """The quick reference's `dlq discard --reason "answered 404" --yes` also takes out for good an Intercom
    404 (a tag or contact deleted in Intercom: re-applying the settings and replaying fixes it), where
    `doctor` and `explain` advise `--reason "Referral Factory answered 404"` (domain/advice.RF_GONE) only."""
    from chalicelib.domain.advice import never_succeeds
    examples = re.findall(r'dlq discard --reason "([^"]+)"', README)
    assert examples
    for reason in examples:
        assert never_succeeds(reason), reason
        assert reason.lower() not in "Intercom answered 404 not_found: Tag not found".lower(), reason


def test_the_readmes_intercom_outage_rehearsal_says_what_explain_shows():
    """What a user sees: rehearsing `make fault ARGS="intercom 503 --for 120"`, the README tells them explain
    shows the join "retrying ... (try 1 of 5 failed ...)"; explain says it waits for Intercom, using up no try
    (a 5xx is an outage the bridge waits out), so the rehearsal reads as if the bridge misbehaved."""
    from chalicelib.errors import ApiError
    from chalicelib.services.explain import as_text, explain
    from tests.unit.test_vendor_outage import one_join

    rehearsal = section("Rehearse an incident locally").split('make fault ARGS="rf ')[0]
    [said] = re.findall(r"\./bridge explain N +# (\w+: \w+ — Intercom unavailable since)", rehearsal)
    work = one_join(lambda: ApiError("Intercom", 503, "Service Unavailable", code="service_unavailable"), hours=0.01)
    shown = as_text(explain(work, "a@example.com"))
    assert said in shown and "without using up a try" in shown, shown



def _rehearsal() -> str:
    return section("Rehearse an incident locally").split("```sh\n")[1].split("\n```")[0]


def test_the_readmes_rehearsal_explains_the_demos_person_by_the_id_the_demo_names():
    """Quick start has played `make demo` once already: its Ann is RF user 1002, and each demo after it plays a new
    Ann (1006, 1008, ...). A rehearsal's `./bridge explain 1002`, typed as written, showed the first Ann's
    qualified history instead of the join that waits out the outage."""
    commands = [line.split("#")[0] for line in _rehearsal().splitlines()]
    assert sum("./bridge explain" in c for c in commands) == 1
    assert not [c for c in commands if re.search(r"(explain|--user) \d", c)], commands


def test_the_readmes_rehearsal_reconnects_the_usual_token_after_each_revoked_one():
    """`make fault ARGS=clear` brings back the simulator's usual token (and refuses the one `revoke-token` named):
    a rehearsal that ends with the clear leaves the bridge with a refused token, doctor's BAD [intercom.token] or
    [rf.campaign] and the next demo waiting, unless its next command reconnects with the usual one."""
    from infra.local import fault

    blocks = _rehearsal().split("\n\n")
    for sim in ("rf", "intercom"):
        [block] = [b for b in blocks if f'make fault ARGS="{sim} revoke-token"' in b]
        commands = [line.split("#")[0].strip() for line in block.splitlines() if not line.startswith(" ")]
        cleared = commands.index("make fault ARGS=clear")
        assert commands[cleared + 1:] == [fault.connect({"workspace": "vne310wv"}, sim, fault.USUAL[sim])], block

#: Where docs/deploying.md's step 4 lists each function's rights: the bullet's opening words.
RIGHTS = {"api_handler": "the webhook function (`api_handler`):", "worker": "the worker:", "reconcile": "reconcile:"}


@pytest.mark.parametrize("function", sorted(RIGHTS))
def test_the_readmes_rights_name_each_item_action_with_the_partitions_its_policy_grants(function):
    """An operator reviewing a function's rights reads them in the docs: each action it is granted on the table's
    items is listed with exactly the partitions (dynamodb:LeadingKeys) its policy names for it, and an action the
    bullet names is one the policy grants. (The webhook function's `UpdateItem` was listed with what it records,
    not the partitions: its policy grants it on the edge's log, the workspaces and the workspace index.)"""
    target = deploy.Target("prod", "123456789012", "eu-west-1", {
        "TableArn": "arn:aws:dynamodb:eu-west-1:123456789012:table/t", "QueueArn": "q", "DeadLetterQueueArn": "d",
        "SecretsPath": "/s"})
    statements = deploy.policies(target)[function]["Statement"]
    granted = {a.split(":")[1]: set(s["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"])
               for s in statements if "Condition" in s for a in s["Action"]}
    unkeyed = {a.split(":")[1] for s in statements if "Condition" not in s for a in s["Action"]}
    bullet = " ".join(README.split(f"\n   - {RIGHTS[function]}")[1].split("\n   - ")[0].split())
    listed = {}
    for action in re.findall(r"`(\w+Item|Query)`", bullet):
        keys = re.search(rf"`{action}`[^`(]*\(([^)]*)\)", bullet)
        listed[action] = set(re.findall(r"`([A-Z]+(?:#[^`]*)?)`", keys.group(1))) if keys else set()
    assert len(granted) >= 3
    assert {a: named for a, named in listed.items() if a not in unkeyed} == granted
    assert set(listed) <= set(granted) | unkeyed


def test_the_readme_says_why_a_deploy_is_make_deploy_and_not_chalice_deploy_alone():
    """The README's first lines say the bridge is deployed with `chalice deploy`; in a fresh clone that command
    alone fails with Chalice's own 'Unable to load the project config file' (the config is rendered from the
    stage's stack, and git-ignored). The deploy section says which command to run, and why."""
    said = " ".join(section("Deploying to AWS").split())
    assert "not `chalice deploy` alone" in said and "Unable to load the project config file" in said
    assert "second API" in said


def test_the_deploy_rights_the_readme_lists_name_every_service_make_deploy_and_destroy_call():
    """A deploy role given what "Before you start" lists must be able to run `make deploy` and `make destroy`
    (`make destroy` names or, with PURGE=1, deletes the stage's secrets in SSM: a role without it was refused)."""
    names = {"cloudformation": "CloudFormation", "dynamodb": "DynamoDB", "iam": "IAM", "lambda": "Lambda",
             "s3": "S3", "ssm": "SSM", "sts": None}           # STS's GetCallerIdentity needs no right
    called = set(re.findall(r'client\("([a-z0-9]+)"\)', deploy.Path(deploy.__file__).read_text()))
    assert called <= set(names), called - set(names)
    rights = " ".join(section("Before you start").split("- **The region**")[0].split())
    assert [names[s] for s in sorted(called) if names[s] and names[s] not in rights] == []


def test_the_readme_says_a_destroy_deletes_the_queues_with_the_work_and_dead_letters_in_them():
    """The stack's queues have no DeletionPolicy: a destroy deletes the work waiting in them and the dead letters.
    The README said only what is kept, "with your data"."""
    retained = {name for name, r in _template()["Resources"].items() if r.get("DeletionPolicy") == "Retain"}
    assert retained == {"Table"}
    destroy = " ".join(README.split("- **Destroy**")[1].split("\n- **")[0].split())
    assert "dead-letter queue go with the stack" in destroy and "dead letters" in destroy


def test_the_readmes_intercom_token_rehearsal_says_the_refused_searches_are_dead_letters_to_discard():
    """Walkthrough: the README's `make fault ARGS="intercom revoke-token"` rehearsal said "no dead letter" and, once
    reconnected, "doctor: no problems"; but reconciliation's search of changed contacts does not wait out a refused
    token as the join does (worker.HANDLERS: an outage is not waited out, the next search covers its window), so each
    scheduled run while the token was refused (every minute on `make run`) left a dead letter, doctor said BAD
    [dead_letters], then warned of it superseded until `bridge dlq discard --superseded --yes`."""
    from chalicelib.messages import ChangesMessage
    from chalicelib.services.worker import HANDLERS

    [block] = [b for b in _rehearsal().split("\n\n") if 'make fault ARGS="intercom revoke-token"' in b]
    said = " ".join(line.split("#", 1)[-1].strip() for line in block.splitlines())
    assert not HANDLERS[ChangesMessage].waits_out_outages, "the searches wait now: the rehearsal says they do not"
    assert "search of the changed contacts" in said and "is a dead letter" in said, block
    assert "./bridge dlq discard --superseded --yes" in said, block
    assert "doctor: no problems" not in said.split("--superseded --yes")[0], block


def test_the_readme_names_every_custom_attribute_the_simulated_workspace_lists():
    """Walkthrough: the README's `ic "$IC/data_attributes"` step listed `rf_person`, which the README's list of the
    simulated workspace's attributes did not name (the bridge's marker, made by `make run`'s `settings apply`)."""
    from chalicelib.domain.mapping import MARKER_NAME
    from infra.local.run import LOCAL_ATTRIBUTES

    said = " ".join(README.split("The simulated workspace has the attributes")[1].split("two users no one referred")[0]
                    .split())
    named = set(re.findall(r"`([a-z_]+)`", said))
    assert named == set(LOCAL_ATTRIBUTES) | {MARKER_NAME}, said


def test_the_readme_says_the_local_stacks_synced_referrers_wait_for_a_backfill_as_backfill_names_them():
    """Walkthrough: after the README's `./bridge sync start 42` on `make run`, `./bridge backfill 42` named Uma and
    Victor "enrolled by contact sync, not linked yet" (the simulated RF sends no webhook for the users a sync
    creates), which the README did not say; it says so in backfill's words."""
    from chalicelib.services.backfill import SYNCED

    [said] = re.findall(r'`\./bridge\s+backfill 42` names them "([^"]+)"', README)
    assert SYNCED.startswith(said + ":"), (said, SYNCED)


def test_the_docs_send_the_operator_to_make_deploys_urls_and_a_stage_for_every_bridge_command_of_the_setup():
    """Walkthrough of a first deploy: docs/setup.md told the operator that `chalice deploy` prints the webhook's base
    URL (it is `make deploy` they run, and it prints the URLs whole), and that `chalice url --stage` prints the
    API's URL, which it does only in the checkout that deployed; and its `bridge` commands, written without a stage,
    reach no deployed stack unless `--stage` or BRIDGE_STAGE says which."""
    said = " ".join(README.split())
    assert "`chalice deploy` prints" not in said
    assert all("only the checkout that last ran `make deploy`" in " ".join(README[m.start() - 300:m.end()].split())
               for m in re.finditer(r"`chalice url --stage <stage>` prints it", README))
    opening = " ".join(section("Setting up the bridge").split("## Setting up Referral Factory's webhook")[0].split())
    assert "`--stage <stage>`" in opening and "`export BRIDGE_STAGE=prod`" in opening


def test_backfills_help_and_the_readme_name_the_same_work_of_its_apply():
    """`bridge backfill --help` said `--apply` queues the joins, counts leads applied before referral counts and
    takes baselines; the README, that it sends them, checks again qualifications RF refused whose dead letter SQS
    deleted, and the joins ignored under `action: nothing`. Each said part of it: both say all of it."""
    from pathlib import Path

    from chalicelib.cli import _parser
    commands = next(a for a in _parser()._actions if a.dest == "cmd")
    [apply] = [a.help for a in commands.choices["backfill"]._actions if "--apply" in a.option_strings]
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    said = " ".join(line.split("#", 1)[1] for line in re.search(
        r"\n\./bridge backfill 42 .*?\n(?:\s+#.*\n)*", readme).group(0).strip().splitlines())
    for part in ("action: nothing", "referral counts", "baseline", "dead letter SQS deleted"):
        assert part in apply, (part, apply)
        assert part in " ".join(said.split()), (part, said)
