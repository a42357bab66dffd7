"""What a deployed stage's functions write to CloudWatch Logs: JSON lines of the functions' logger, emails
masked, whatever the stage. Run as in a Lambda container of the stage (its service name is its Prefix, not
the app's name, which Chalice names its own logger after)."""
from __future__ import annotations

import json

from .conftest import run_as_deployed

ANN = "ann@example.com"

FAILING_ROUTE = f"""
import app
from chalicelib import handlers
from chalicelib.services import ingest

def fails(headers, raw, rt):
    raise KeyError("no settings for {ANN}")

ingest.receive_rf_join = fails
handlers.default_runtime = lambda: None

class Context:
    aws_request_id = "req-1"
    @staticmethod
    def get_remaining_time_in_millis():
        return 10**9

event = {{"resource": "/webhooks/referral-factory", "path": "/webhooks/referral-factory", "httpMethod": "POST",
          "headers": {{"Content-Type": "application/json"}}, "multiValueHeaders": {{}},
          "queryStringParameters": None, "multiValueQueryStringParameters": None, "pathParameters": None,
          "stageVariables": None, "body": "{{}}", "isBase64Encoded": False,
          "requestContext": {{"resourcePath": "/webhooks/referral-factory", "httpMethod": "POST",
                             "requestId": "r1", "path": "/api/webhooks/referral-factory"}}}}
assert app.app(event, Context())["statusCode"] == 500
"""


def test_a_route_that_fails_in_a_deployed_stage_is_logged_as_json_lines_of_the_functions_logger():
    """Chalice logs a route's 500 ("Caught exception for path ...", with a traceback) on app.log. In a
    deployed stage that logger was not the functions' one (named after the service, the stage's Prefix) but
    Chalice's own, named after the app, writing plain text: the traceback went to CloudWatch as a dozen
    lines of their own, none of them JSON, unmasked by the functions' formatter."""
    lines = run_as_deployed(FAILING_ROUTE).splitlines()
    documents = [json.loads(line) for line in lines]        # every line one JSON document, else this raised
    assert [d["message"] for d in documents] == ["rf_webhook failed", "Caught exception for path "
                                                 "/webhooks/referral-factory"]
    assert {d["service"] for d in documents} == {"rf-intercom-bridge-prod"}
    assert ANN not in "\n".join(lines) and "no settings for a***@example.com" in documents[0]["exception"]
