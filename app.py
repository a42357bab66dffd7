"""Routes and event sources only; everything they do lives in chalicelib/."""
import gc
import logging
import os

# A Lambda container's init (this import; chalicelib/handlers.py makes the function's clients) makes
# objects that live as long as the container, and no garbage: the collector waits until it is done.
gc.disable()

from chalice import Chalice, Rate  # noqa: E402

from chalicelib import handlers  # noqa: E402
from chalicelib.config import reconcile_minutes  # noqa: E402

app = Chalice(app_name="rf-intercom-bridge", configure_logs=False)
# Chalice logs a route's 500 on app.log: the functions' logger (masked JSON lines), named after the stage's
# service (make deploy: its Prefix), not a plain-text logger of Chalice's own named after the app.
app.log = logging.getLogger(handlers.logger.name)
# Every media type reaches the handlers, which accept JSON (and forms on the RF route) and answer
# anything else with their own JSON 415; Chalice's own 415 body is not one our callers can read.
ANY_MEDIA = ["*/*"]


@app.route("/webhooks/referral-factory", methods=["POST"], content_types=ANY_MEDIA)
def referral_factory_webhook():
    return handlers.rf_webhook(app.current_request)


@app.route("/webhooks/intercom", methods=["POST", "HEAD"], content_types=ANY_MEDIA)
def intercom_webhook():
    return handlers.intercom_webhook(app.current_request)


# Every other method of the webhook URLs gets the same JSON 405 here and on API Gateway.
@app.route("/webhooks/referral-factory", methods=["GET", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
           content_types=ANY_MEDIA)
def referral_factory_webhook_other_methods():
    return handlers.method_not_allowed(app.current_request, "POST")


@app.route("/webhooks/intercom", methods=["GET", "PUT", "PATCH", "DELETE", "OPTIONS"], content_types=ANY_MEDIA)
def intercom_webhook_other_methods():
    return handlers.method_not_allowed(app.current_request, "POST, HEAD")


@app.route("/oauth/intercom/start", methods=["GET"])
def oauth_start():
    return handlers.oauth_start(app.current_request)


# The start page's button posts its form here (opening the link never spends it: handlers.oauth_begin).
@app.route("/oauth/intercom/start", methods=["POST"], content_types=ANY_MEDIA)
def oauth_begin():
    return handlers.oauth_begin(app.current_request)


@app.route("/oauth/intercom/callback", methods=["GET"])
def oauth_callback():
    return handlers.oauth_callback(app.current_request)


@app.on_sqs_message(queue=os.environ.get("BRIDGE_QUEUE_NAME", "rf-intercom-bridge-work"), batch_size=10)
def worker(event):
    return handlers.sqs_batch(event)


# RECONCILE_EVERY_MINUTES, as `chalice deploy` loads this file (the file's and the stage's variables of
# infra/chalice-config.json): `make deploy` gives the reconcile-failing alarm the same period.
@app.schedule(Rate(reconcile_minutes(os.environ), unit=Rate.MINUTES))
def reconcile(event):
    return handlers.reconcile(event)


# The init is done. What it made is frozen, so that no collection walks it again (a cold start's
# first full collection took ~20 ms of its first invocation), and the collector runs as usual.
gc.freeze()
gc.enable()
