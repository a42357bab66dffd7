"""Security review of the rendered IAM policies (infra/deploy.py `policies`): pure, no AWS."""
from __future__ import annotations

from fnmatch import fnmatchcase

from infra import deploy

OUTPUTS = {"TableArn": "arn:aws:dynamodb:eu-west-1:123456789012:table/rf-intercom-bridge-prod-table",
           "QueueArn": "arn:aws:sqs:eu-west-1:123456789012:rf-intercom-bridge-prod-work",
           "DeadLetterQueueArn": "arn:aws:sqs:eu-west-1:123456789012:rf-intercom-bridge-prod-dlq",
           "SecretsPath": "/rf-intercom-bridge/prod"}

# Partition keys of what only the worker and the operator may change: a link (its contact, baseline and
# qualification state), a person's history, a campaign's settings, the contact/email pointers, a rate budget.
NOT_THE_EDGES = ("CAMPAIGN#42", "HISTORY#42#1001", "CONTACT#vne310wv#6ab1", "EMAIL#vne310wv#ann@example.com",
                 "RATE#referral-factory", "RECONCILE")


def _updates_allowed(statement: dict, pk: str) -> bool:
    actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
    if statement["Effect"] != "Allow" or not any(fnmatchcase("dynamodb:UpdateItem", a) for a in actions):
        return False
    keys = statement.get("Condition", {}).get("ForAllValues:StringLike", {}).get("dynamodb:LeadingKeys")
    return keys is None or any(fnmatchcase(pk, pattern) for pattern in keys)


def test_the_public_api_function_cannot_update_links_history_or_settings():
    """Least privilege: the API function is the one that faces the internet (webhooks, OAuth). Its
    `Table` statement grants dynamodb:UpdateItem on the whole table with no dynamodb:LeadingKeys
    condition, although it only updates its own edge log (EDGE#...) and, from the OAuth callback,
    a workspace's connection record and the workspace index (WORKSPACE#..., WORKSPACES). A flaw in the
    edge (or a leaked role session) could rewrite any link — mark a referral qualified, point it at
    another workspace's contact — or any settings document.
    Expected: every statement of the API function that grants UpdateItem is narrowed by
    dynamodb:LeadingKeys to those partitions (as OAuthTable and reconcile's LinkTable already are)."""
    target = deploy.Target("prod", "123456789012", "eu-west-1", OUTPUTS)
    policy = deploy.policies(target)["api_handler"]
    reach = {pk: [s.get("Sid") for s in policy["Statement"] if _updates_allowed(s, pk)] for pk in NOT_THE_EDGES}
    assert {pk: sids for pk, sids in reach.items() if sids} == {}, "the API function may update these partitions"
