"""The composition root: builds the real adapters from the configuration and hands the services
what they are typed against (the Runtime is the Edge of services/ingest.py, the Work of
services/worker.py, the Apis of ports/apis.py, ...). One per Lambda container: clients, tokens and
attribute lists are cached between invocations."""
from __future__ import annotations

import threading
import time
from functools import cached_property
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Iterable, Optional, TypeVar

from .adapters import aws
from .adapters.dynamo import DynamoStore, bind
from .adapters.queue import Queue
from .adapters.ratelimit import SharedLimiter
from .adapters.secrets import SecretCache, SsmSecrets
from .config import SETTLE_MS, Config
from .errors import Disconnected, Permanent
from .observability import logger
from .domain.mapping import compact_attributes, unlisted
from .ports import AttributeList, Connection, RefusalSample, SecretStore, Store
from .domain.apps import apps
from .ports.secrets import (EDGE, KEPT_SECONDS, OAUTH_CLIENT_ID, OAUTH_CLIENT_SECRET, OAUTH_STATE_KEY, RF_TOKEN,
                            RF_WEBHOOK_SECRET, WORKER, app_client_secret, intercom_token, valid_workspace)
from .ports.edge import HEARD_EVERY_SECONDS, UNKNOWN, campaign_scope, workspace_scope

if TYPE_CHECKING:  # the HTTP clients (requests, urllib3) load only where the worker needs them
    from .adapters.intercom import IntercomAuthClient, IntercomClient
    from .adapters.referral_factory import ReferralFactoryClient
    from .services.deps import WorkDeps

T = TypeVar("T")

CACHE_SECONDS = KEPT_SECONDS
# A list held that does not name an attribute a rule or a mapping names is read again when older than this
# (Runtime.attributes): an attribute created since is seen within it; one not in the workspace costs a call that often.
UNLISTED_RECHECK = 30
EDGE_SECRET_SECONDS = 60
# A container's first Intercom slots after an idle slice, in one write: a join's (attribute list,
# search, create, tag) or an event's few calls. Of a slice's 151 (1,666 per 10 s in 9 slices of 1.1 s: domain/budget.py).
INTERCOM_FIRST_BLOCK = 4
# What an API request keeps of the Lambda's time after its AWS calls: to log and answer (a 503 saying why).
ANSWER_MS = 1000


class Runtime:
    def __init__(self, config: Config, *, clock: Callable[[], float] = time.time,
                 sleeper: Callable[[float], None] = time.sleep, queue: Optional[Queue] = None,
                 store: Optional[Store] = None, secrets: Optional[SecretStore] = None):
        self.config, self.clock, self.sleeper = config, clock, sleeper
        if store is None:
            bind(config.table)
        self.store: Store = store or DynamoStore(clock, history_days=config.history_days, lease=config.lease)
        self.queue = queue or Queue(config.queue_url, config.dlq_url, poll=config.dlq_poll)
        # The whole path is for the operator's CLI to write; each function reads only its own part.
        self.secrets = secrets or SsmSecrets(config.secrets_path)
        self.edge_secrets = SecretCache(self.secrets.scoped(EDGE).get, clock, EDGE_SECRET_SECONDS)
        self.worker_secrets = SecretCache(self.secrets.scoped(WORKER).get, clock, CACHE_SECONDS)
        # The names of the client secrets a workspace's webhooks may be signed with, from its connection
        # record (None: no record; not kept, as what a caller names is not cached).
        self.signers: SecretCache[list[str]] = SecretCache(self._signers, clock, EDGE_SECRET_SECONDS,
                                                           keep_absent=False)
        self._cache: dict[tuple, tuple[float, Any]] = {}
        self._reread = threading.Lock()     # attributes_again: the threads of a batch share one read
        self.remaining_ms: Callable[[], int] = lambda: 10**9   # the worker sets the Lambda's clock
        # Whether a failed call's work is tried again later (the worker's queue), so its reason may say when ("next
        # retry in"); the CLI's commands answer once (doctor, explain, backfill...): False, set before any client.
        # It also says who waits for a slot (`waiter`): one setting, so the two cannot disagree.
        self.retried_later = True
        self._answered: dict[tuple[str, str], float] = {}   # (vendor, API base) -> its last answer here (not a 5xx)

    @property
    def waiter(self) -> str:
        """Who waits for a slot, as the limiter's deferrals say: the worker, whose queue tries its work again, or the
        operator's command (`retried_later` False), which answers once."""
        return "this worker" if self.retried_later else "this command"

    @cached_property
    def deps(self) -> "WorkDeps":
        """The worker's use cases' interfaces: the store's repositories, and this runtime as the Apis."""
        from .services.deps import WorkDeps
        return WorkDeps.of(self.store, self, self.queue, self.clock, lambda: self.config.search_lag,
                           lambda: self.remaining_ms())

    @cached_property
    def _both(self) -> Callable[[Callable[[], Any], Callable[[], T]], tuple[Any, T | Exception]]:
        """Two reads at once (Runner.both), for a cold container's lookups."""
        from .services.concurrency import Runner
        return Runner(2).both

    def _cached(self, key: tuple, load: Callable[[], T], seconds: float = CACHE_SECONDS) -> T:
        hit = self._cache.get(key)
        if hit and hit[0] > self.clock():
            return hit[1]
        value = load()
        self._cache[key] = (self.clock() + seconds, value)
        return value

    def forget(self) -> None:
        self._cache.clear()
        self.signers.clear()
        self.edge_secrets.clear()
        self.worker_secrets.clear()

    # --- edge lookups (cached: a warm webhook makes no read; see SecretCache for when it asks again) ---
    def rf_webhook_secret(self, accept: Optional[Callable[[str], bool]] = None) -> str:
        """'' when not configured. `accept`: does the caller's header match this value?"""
        return self.edge_secrets.get(RF_WEBHOOK_SECRET, accept) or ""

    def intercom_client_secret(self, workspace: str, accept: Optional[Callable[[str], bool]] = None) -> Optional[str]:
        """The client secret of an app the workspace is connected through (domain/apps.py) that `accept`s
        (the signature verifies with it; None: any set one), else None. The table is asked before the
        secret store: an app_id the bridge never connected costs no secret read (SSM's GetParameter
        throughput is one budget for the whole account and region; the table's reads are the table's own).
        The names its connection record gives are kept as SecretCache keeps a secret: a minute, and when no
        secret verifies, the record is read again (at most every RECHECK_SECONDS): an app connected a moment
        ago is tried at once, and the apps tried already are not tried again."""
        if not valid_workspace(workspace):
            return None
        tried: dict[str, Any] = {"names": []}

        def verifies(names: list[str]) -> bool:
            tried.update(names=names, found=self.edge_secrets.first(names, accept))
            return tried["found"] is not None
        names = self.signers.get(workspace, verifies if accept is not None else None)
        if tried.get("found") is not None:
            return tried["found"]
        return self.edge_secrets.first([n for n in names or () if n not in tried["names"]], accept)

    def _signers(self, workspace: str) -> Optional[list[str]]:
        """The names of the client secrets of the apps the workspace's connection record names; None: no record."""
        conn = self.store.connections.workspace(workspace)
        return None if conn is None else [app_client_secret(app, workspace) for app in apps(conn.secrets)]

    def campaign_known(self, campaign_id: str) -> bool:
        """Known campaigns are cached; unknown ones are asked again (settings may have just been applied)."""
        return self._known(("campaign", campaign_id), lambda: self.store.settings.get(campaign_id) is not None)

    def _known(self, key: tuple, ask: Callable[[], bool]) -> bool:
        """A yes is kept a minute; a no is asked again each time (what a caller names is not cached)."""
        hit = self._cache.get(key)
        if hit and hit[0] > self.clock():
            return True
        known = ask()
        if known:
            self._cache[key] = (self.clock() + 60, True)
        return known

    # --- the edge's log (ports/edge.py): what doctor and explain read of the webhooks ----------
    def note_refusal(self, sample: "RefusalSample", campaign_id: Optional[str] = None,
                     workspace: Optional[str] = None) -> None:
        """Only a campaign with settings or a connected workspace gets a scope of its own: whatever
        an unauthenticated caller names, everything else goes to the one 'unknown' bucket."""
        try:
            if campaign_id and self.campaign_known(campaign_id):
                scope = campaign_scope(campaign_id)
            elif workspace and self.signers.kept(workspace):
                scope = workspace_scope(workspace)
            else:
                scope = UNKNOWN
            self.store.edge.refused(scope, sample)
            # The next webhook this container accepts for the scope is written at once (not up to a
            # minute later): doctor tells a fix that worked by an accepted webhook newer than the refusal.
            for what in ("join", "notification"):
                self._cache.pop(("heard", scope, what), None)
        except Exception:  # the answer never depends on the log
            logger.warning("could not record a refused webhook", exc_info=True)

    def digest(self, kind: str, value: str) -> str:
        return self.store.edge.digest(kind, value)

    def note_heard(self, scope: str, what: str) -> None:
        """At most one write per container, scope and kind a minute: a join costs no write beyond that."""
        key = ("heard", scope, what)
        if key in self._cache and self._cache[key][0] > self.clock():
            return
        self._cache[key] = (self.clock() + HEARD_EVERY_SECONDS, True)
        try:
            self.store.edge.heard(scope, what)
        except Exception:
            logger.warning("could not record a webhook as heard", exc_info=True)

    # --- clients -------------------------------------------------------------------------
    def max_wait(self) -> float:
        """How long a call may wait (backoff, Retry-After, a full rate window) before the work goes back to the
        queue: the configured cap, and never so long that what must follow the wait no longer fits in the Lambda's
        time: the call's attempt (http_timeout), the record's own AWS write after it (an attempt at
        adapters/aws.WORKER's bounds) and the worker's settling (config.SETTLE_MS). An attempt that would
        not fit is not made (adapters/http.py): the work waits then too."""
        return max(0.0, min(self.config.max_retry_wait,
                            self.remaining_ms() / 1000 - after_wait(self.config.http_timeout)))

    def _http_kw(self, limiter: SharedLimiter) -> dict[str, Any]:
        return {"timeout": self.config.http_timeout, "limiter": limiter, "clock": self.clock,
                "sleeper": self.sleeper, "max_wait": self.max_wait, "on_answer": self._note_answer,
                "retried_later": self.retried_later}

    def _note_answer(self, vendor: str, base: str) -> None:
        self._answered[(vendor, base)] = self.clock()

    def answered(self, vendor: str, where: Optional[str]) -> Optional[float]:
        """When this container last got an answer from `vendor` at its API base `where` that was not an outage's
        (kept in memory only)."""
        return self._answered.get((vendor, where)) if where is not None else None

    def limiter(self, budget: str, limit: int, window: int, **kw: Any) -> SharedLimiter:
        """One per budget and container: its threads share the slots it reserved."""
        def make() -> SharedLimiter:
            return SharedLimiter(self.store.rates, budget, limit, window, clock=self.clock, sleeper=self.sleeper,
                                 max_wait=self.max_wait, waiter=self.waiter, **kw)
        return self._cached(("limiter", budget, limit, window), make, seconds=float("inf"))

    def url(self, name: str) -> str:
        """The configured URL `name` (config.URLS) a client sends a token to; Permanent when it would travel in
        clear: the work waits in the dead-letter queue, saying so (the API still takes and queues webhooks)."""
        problem = self.config.insecure(name)
        if problem:
            raise Permanent(f"{problem} — fix it in the stage's configuration (infra/chalice-config.json) and run "
                            "`make deploy`, then replay the dead-letter queue")
        return getattr(self.config, name)

    def intercom(self, workspace: str) -> "IntercomClient":
        def make() -> "IntercomClient":
            from .adapters.intercom import IntercomClient

            name = intercom_token(workspace)
            limiter = self.limiter(f"intercom#{workspace}", self.config.intercom_calls_per_10s, 10, skew=0.5,
                                   vendor="Intercom", first_block=INTERCOM_FIRST_BLOCK)

            def connection() -> Optional[Connection]:
                found = self.store.connections.workspace(workspace)
                if found is not None and found.status == "active":
                    limiter.prime()
                return found
            # The connection (then the budget's state) and the token at once: a cold container makes
            # its SSM client meanwhile. The token only counts for an active connection.
            conn, read = self._both(connection, lambda: self.worker_secrets.get(name))
            token = None
            if isinstance(conn, Exception) or conn is None or conn.status != "active":
                self.worker_secrets.discard(name)        # read ahead, not needed: not kept
                if isinstance(conn, Exception):
                    raise conn
                if conn is not None and conn.status == "disconnected":
                    raise Disconnected(workspace, apps(conn.secrets))
            elif isinstance(read, Exception):
                raise read
            else:
                # `connect` stores the token, then marks the workspace active: read at once, the token may
                # have been read just before it was stored. Read once more before refusing.
                token = read or self.worker_secrets.refresh(name, None)
            if not token:
                raise Permanent(f"Intercom workspace {workspace} is not connected — run "
                                f"`bridge workspace connect {workspace}` (it asks for the token), then replay the "
                                "dead-letter queue")
            # On a 401 the token is read again: a reconnected one is used at once. No new one: when the
            # workspace was disconnected meanwhile (its token revoked too), that is the reason.
            assert conn is not None

            def reauth(stale: str) -> Optional[str]:
                fresh = self.worker_secrets.refresh(name, stale)
                if fresh is None:
                    now = self.store.connections.workspace(workspace)
                    if now is not None and now.status == "disconnected":
                        self._cache.pop(("intercom", workspace), None)
                        raise Disconnected(workspace, apps(now.secrets))
                return fresh
            self._adopt_attributes(workspace, conn.attribute_list)
            return IntercomClient(conn.api_base or self.url("intercom_base_url"), token, workspace, conn.token_app,
                                  reauth=reauth,
                                  **self._http_kw(limiter))
        return self._cached(("intercom", workspace), make)

    def intercom_auth(self) -> "IntercomAuthClient":
        """Token questions (the OAuth callback's exchange, `/me` before a token is stored)."""
        from .adapters.intercom import IntercomAuthClient
        return IntercomAuthClient(self.url("intercom_base_url"), self.config.http_timeout, clock=self.clock,
                                  sleeper=self.sleeper, max_wait=self.max_wait, retried_later=False)

    def rf_auth(self, token: str) -> "ReferralFactoryClient":
        """RF asked with a token not yet stored (`bridge rf connect`): outside the shared limiter."""
        from .adapters.referral_factory import ReferralFactoryClient
        return ReferralFactoryClient(self.url("rf_base_url"), token, timeout=self.config.http_timeout,
                                     clock=self.clock, sleeper=self.sleeper, max_wait=self.max_wait,
                                     retried_later=False)

    def oauth_app(self) -> Optional[tuple[str, str, str]]:
        """The public app's (client id, client secret, state key), or None until `bridge workspace oauth-app`."""
        values = tuple(self.edge_secrets.get(name) for name in (OAUTH_CLIENT_ID, OAUTH_CLIENT_SECRET, OAUTH_STATE_KEY))
        return values if all(values) else None   # type: ignore[return-value]

    def rf(self) -> "ReferralFactoryClient":
        def make() -> "ReferralFactoryClient":
            from .adapters.referral_factory import ReferralFactoryClient

            token = self.worker_secrets.get(RF_TOKEN)
            if not token:
                raise Permanent("Referral Factory is not connected — run `bridge rf connect`")
            # RF blocks the IP after repeated excess, and says so with 403: its circuit opens.
            limiter = self.limiter("referral-factory", self.config.rf_calls_per_minute, 60, skew=1.0,
                                   vendor="Referral Factory", block_status=403,
                                   recheck=self.config.rf_block_recheck)
            return ReferralFactoryClient(self.url("rf_base_url"), token,
                                         reauth=lambda stale: self.worker_secrets.refresh(RF_TOKEN, stale),
                                         **self._http_kw(limiter))
        return self._cached(("rf",), make)

    def attributes(self, workspace: str, naming: Iterable[str] = ()) -> dict[str, dict]:
        """Intercom's attribute list (compact: domain/mapping.compact_attributes), never older than
        CACHE_SECONDS: this container's, or the one another container kept on the connection record
        (a cold container adopts it with the connection it reads anyway: no call), or read now and
        kept there for the others. A custom attribute in `naming` (a rule's, a mapping's) the list held does
        not name was maybe created after it was read (attribute_type would take it as text): read again, unless
        the list held was read less than UNLISTED_RECHECK ago (one not in the workspace costs a call that often,
        not one a record)."""
        client = self.intercom(workspace)        # a disconnected workspace raises here, whatever was kept
        naming = tuple(naming)                   # (looked at twice)
        hit = self._cache.get(("attributes", workspace))
        if hit and hit[0] > self.clock() and not unlisted(naming, hit[1]):
            return hit[1]
        if not hit or hit[0] <= self.clock():
            return self._read_attributes(workspace, client)
        with self._reread:                       # the threads of a batch share one read
            hit = self._cache.get(("attributes", workspace))
            now = self.clock()
            if hit and hit[0] > now and (not unlisted(naming, hit[1])
                                         or hit[0] - CACHE_SECONDS + UNLISTED_RECHECK > now):
                return hit[1]
            return self._read_attributes(workspace, client)

    def attributes_again(self, workspace: str, since: float) -> dict[str, dict]:
        """The list once Intercom refused a write converted with it (a type changed in Intercom's UI, an
        attribute created without an apply): read again and kept on the connection record, as
        `attributes` does, unless the list held was read at `since` or later (by this try, or by another
        thread's re-read for the same batch: one call serves them all)."""
        client = self.intercom(workspace)
        with self._reread:
            hit = self._cache.get(("attributes", workspace))
            if hit and hit[0] > self.clock() and hit[0] - CACHE_SECONDS >= since:
                return hit[1]
            return self._read_attributes(workspace, client)

    def _read_attributes(self, workspace: str, client: "IntercomClient") -> dict[str, dict]:
        read_at = self.clock()                   # before the call: the list is at least this fresh
        listed = compact_attributes(client.data_attributes())
        self._cache[("attributes", workspace)] = (read_at + CACHE_SECONDS, listed)
        try:
            self.store.connections.keep_attributes(workspace, AttributeList(listed, read_at))
        except Exception:                        # the others read it themselves, as without it
            logger.warning("could not keep the workspace's attribute list", extra={"workspace": workspace},
                           exc_info=True)
        return listed

    def _adopt_attributes(self, workspace: str, kept: Optional[AttributeList]) -> None:
        """The list kept on an active connection, until CACHE_SECONDS after it was read (a read time
        ahead of this clock, by less than clocks differ, counts as now; one further ahead is not used,
        and this container's own read replaces it): no container uses a list older than its own would be."""
        now = self.clock()
        if kept is None or kept.ahead_of(now):
            return
        expires = min(kept.read_at, now) + CACHE_SECONDS
        hit = self._cache.get(("attributes", workspace))
        if expires > now and (hit is None or hit[0] < expires):
            self._cache[("attributes", workspace)] = (expires, kept.attributes)

    def ensure_attribute(self, workspace: str, name: str, description: str) -> None:
        full_name = f"custom_attributes.{name}"
        if full_name in self.attributes(workspace):
            return
        client = self.intercom(workspace)
        try:
            client.create_data_attribute(name, "string", description)
        except Permanent as exc:        # e.g. another container created it a moment ago: look again
            refused = exc.reason
        else:
            refused = ""
        # Read again, and kept: the list on the connection record no longer says it is missing.
        if full_name not in self._read_attributes(workspace, client):
            raise Permanent(f"the bridge could not create the text attribute {name} in workspace {workspace} "
                            f"({refused or 'Intercom does not list it'}) — create it in Intercom (Settings > Data > "
                            "People, type Text), then replay")

    def campaign_name(self, campaign_id: str) -> Optional[str]:
        return self._cached(("campaign-name", campaign_id), lambda: self.rf().get_campaign(campaign_id).get("name"))


    def in_time(self, kept_ms: int) -> ContextManager[None]:
        """The worker's AWS calls made inside end `kept_ms` before its Lambda's time (`remaining_ms`) runs out."""
        return answering(lambda: self.remaining_ms(), kept_ms)

    def warm(self, function: str) -> None:
        """Create now, without a call, what the function's first invocation would create: its AWS
        clients (kept to the function's bounds: adapters/aws.API, or WORKER for the worker and reconciliation),
        for the worker the HTTP clients' and its services' modules, for the API the webhooks' intake (which
        the others never import). A Lambda container does it in its init phase, which AWS runs on a whole CPU."""
        from .adapters.dynamo import client as dynamodb_client

        aws.bound(aws.API if function == "api" else aws.WORKER)
        dynamodb_client()
        if isinstance(self.queue, Queue):
            self.queue.client
        if isinstance(self.secrets, SsmSecrets) and function != "reconcile":
            self.secrets.client
        if function == "worker":
            from .adapters import intercom, referral_factory  # noqa: F401  (requests, urllib3)
            from .services import worker  # noqa: F401
        if function == "api":
            from .services import ingest  # noqa: F401  (the webhooks' intake: no other function imports it)


def after_wait(http_timeout: float) -> float:
    """The seconds a worker's record needs after a wait for a vendor's call: the call's attempt (`http_timeout`),
    the record's own AWS write after it (an attempt at adapters/aws.WORKER's bounds) and the worker's settling
    (config.SETTLE_MS). `make deploy` checks the record budget holds it (infra/deploy.budget_problem)."""
    return http_timeout + aws.WORKER.attempt + SETTLE_MS / 1000


def answering(remaining_ms: Callable[[], int], kept_ms: int = ANSWER_MS) -> ContextManager[None]:
    """An invocation (`remaining_ms`: its Lambda's time left): its AWS calls end `kept_ms` before that runs out
    (adapters/aws.py `within`; in a Lambda container, whose clients are `bound`)."""
    return aws.within(lambda: (remaining_ms() - kept_ms) / 1000)


_default: Optional[Runtime] = None


def default_runtime() -> Runtime:
    """The container-wide runtime, built from the environment on first use."""
    global _default
    if _default is None:
        _default = Runtime(Config.from_env())
    return _default


def reset_default_runtime(runtime: Optional[Runtime] = None) -> None:
    global _default
    _default = runtime
