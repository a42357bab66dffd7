"""The key scheme of the one table (infra/template.yaml). Nothing outside this package knows it.

Item kinds (pk / sk):
  SETTINGS#<id> / SETTINGS               the settings document (and the count backfill they owe); its own
                                         partition, so the API function may read settings and never a link
  CAMPAIGN#<id> / SETTINGS               the same item, where versions before 2026-11-28 keep it: every write
                                         of settings writes both in one transaction (a version rolled back to
                                         reads current settings), none reads it; `make deploy` makes the first
                                         a copy of it before the code goes live (upgrade.py)
  SETTINGS#<id> / DELETED                the last version of the campaign's deleted settings (`settings delete`):
                                         the next apply counts on from it; no version reads it as settings
  WORKSPACE#<app_id> / CONNECTION        a connected Intercom workspace: api base, status, which secrets are
                                         set (the secrets themselves live in SSM, see adapters/secrets.py)
  WORKSPACE#<app_id> / CAMPAIGNS         the campaigns whose settings name the workspace (what the search
                                         of changed contacts reads the rules of)
  WORKSPACES / INDEX                     the workspaces ever connected or configured (what `forget` visits)
  OAUTH#<nonce> / STATE                  an OAuth state already used (TTL: until it would have expired)
  TICKET#<id hash> / OAUTH               a one-time OAuth start link the operator minted, until it is spent
                                         (TTL: when it expires); its own prefix, so the API function may
                                         delete these and nothing else
  RF / CONFIG                            Referral Factory is connected: which secrets are set
  CAMPAIGN#<id> / PERSON#<rf id>         the link RF person <-> Intercom contact; while a lead awaits
                                         qualification it is in the sparse `pending` index; while a claim
                                         holds it (or RF has not confirmed a qualification) it is in the
                                         sparse `overdue` index, by `lease_until` (the lease's end; once
                                         reconciliation queued the work that finishes it, its next retry)
  CAMPAIGN#<id> / REFERRALS#<rf id>      a referrer's count of leads seen joining with them (only with
                                         sync.referral_count_attribute), the contact it is written to,
                                         and the count Intercom last got (in which attribute); once an erasure lowered it,
                                         in the `overdue` index's COUNT_WRITES partition until
                                         reconciliation asked for its write (it owes one)
  CONTACT#<ws>#<contact id> / LINKS      which links point at a contact  } one BatchGetItem answers
  EMAIL#<ws>#<email> / LINKS             which links share an email      } "is this contact linked?"
  NOTIFICATION#<ws>#<id> / DONE          Intercom notifications already applied (TTL)
  HISTORY#<campaign>#<rf id> / <ts>      the person's history, read by `explain`; expires (TTL
                                         `expires_at`) after BRIDGE_HISTORY_DAYS
  RATE#<budget> / <slice>                a shared rate budget's slice counter (TTL; domain/budget.py)
  RATE#<budget> / STATE                  the budget's shared state: a 429's pause, the lowered share,
                                         the open circuit of a vendor that blocked us
  CAMPAIGN#<id> / SYNC#RUN              the campaign's latest contact sync run (cursor, counts, the page lease)
  CAMPAIGN#<id> / SYNC#RUN#<n>          an earlier run, copied when the next one started; a catch-up, or a full
                                         run a newer full one replaced, expires (TTL) after PAST_RUN_DAYS
  SYNC#<campaign> / CONTACT#<id>        the sync ledger: what sync did with the contact (one partition
                                        per campaign, queried by reports)
  EDGE#<scope> / REFUSED#<reason>#<hour> requests the edge refused, counted per reason and hour (TTL)
  EDGE#<scope> / SAMPLE#<reason>#<n>     a ring of samples of them, SAMPLES per reason (TTL)
  EDGE#<scope> / HEARD#<what>            when the edge last accepted a join / a notification
                                         (ports/edge.py says why all of these stay bounded)
  RECONCILE / CURSOR                     where the sweep of pending leads left off
  RECONCILE / CURSOR#<name>              other reconciliation positions (when the sweep's latest round
                                         began; the changed-contacts search's last finished run, per
                                         workspace, and a rule change it must look back for)
"""
from __future__ import annotations

from ...domain.link import PersonRef
from ...domain.oauth import binding
from ...ports.store import PENDING_SWEEP, normal_email

Key = tuple[str, str]
PENDING = "PENDING"             # the pending index's one partition
OVERDUE = "OVERDUE"             # the overdue index's partition of links
COUNT_WRITES = "COUNT_WRITES"   # the overdue index's partition of referral counts owing their write


SETTINGS_SK = "SETTINGS"
SETTINGS_PREFIX = "SETTINGS#"
ROLLBACK_SETTINGS_PREFIX = "CAMPAIGN#"


def settings_key(campaign_id: str) -> Key:
    return f"{SETTINGS_PREFIX}{campaign_id}", SETTINGS_SK


def deleted_settings_key(campaign_id: str) -> Key:
    return f"{SETTINGS_PREFIX}{campaign_id}", "DELETED"


def rollback_settings_key(campaign_id: str) -> Key:
    """Where versions before 2026-11-28 read and write a campaign's settings (in its links' partition)."""
    return f"{ROLLBACK_SETTINGS_PREFIX}{campaign_id}", SETTINGS_SK


def campaign_of_settings(pk: str) -> str:
    return pk.split("#", 1)[1]


def connection_key(workspace: str) -> Key:
    return f"WORKSPACE#{workspace}", "CONNECTION"


def oauth_state_key(nonce: str) -> Key:
    return f"OAUTH#{nonce}", "STATE"


def oauth_ticket_key(ticket: str) -> Key:
    """Keyed by the ticket's SHA-256 (as a state by its browser secret's): whoever reads the table (a backup,
    an export) cannot make the link from it."""
    return f"TICKET#{binding(ticket)}", "OAUTH"


WORKSPACES_KEY: Key = ("WORKSPACES", "INDEX")
RF_KEY: Key = ("RF", "CONFIG")
CURSOR_KEY: Key = ("RECONCILE", "CURSOR")


def cursor_key(name: str) -> Key:
    return CURSOR_KEY if name == PENDING_SWEEP else (CURSOR_KEY[0], f"{CURSOR_KEY[1]}#{name}")


def campaigns_key(workspace: str) -> Key:
    return f"WORKSPACE#{workspace}", "CAMPAIGNS"


def edge_pk(scope: str) -> str:
    return f"EDGE#{scope}"


def refusal_sk(reason: str, hour: str) -> str:
    return f"REFUSED#{reason}#{hour}"


def sample_sk(reason: str, slot: int) -> str:
    return f"SAMPLE#{reason}#{slot}"


def heard_sk(what: str) -> str:
    return f"HEARD#{what}"


def link_key(ref: PersonRef) -> Key:
    return f"CAMPAIGN#{ref.campaign_id}", f"PERSON#{ref.rf_user_id}"


def referrals_key(ref: PersonRef) -> Key:
    return f"CAMPAIGN#{ref.campaign_id}", f"REFERRALS#{ref.rf_user_id}"


def referrer_of(pk: str, sk: str) -> PersonRef:
    """The referrer whose count item this key is (referrals_key's inverse)."""
    return PersonRef(pk.split("#", 1)[1], sk.split("#", 1)[1])


def campaign_links(campaign_id: str) -> Key:
    """The partition and the sort-key prefix of a campaign's links."""
    return f"CAMPAIGN#{campaign_id}", "PERSON#"


def campaign_referrals(campaign_id: str) -> Key:
    """The partition and the sort-key prefix of a campaign's referral counts."""
    return f"CAMPAIGN#{campaign_id}", "REFERRALS#"


def contact_key(workspace: str, contact_id: str) -> Key:
    return f"CONTACT#{workspace}#{contact_id}", "LINKS"


def email_key(workspace: str, email: str) -> Key:
    return f"EMAIL#{workspace}#{normal_email(email)}", "LINKS"


def pointer_of(pk: str) -> tuple[str, str, str]:
    """A pointer's key read back: ("contact" or "email", its workspace, its contact id or email)."""
    prefix, workspace, value = pk.split("#", 2)
    return prefix.lower(), workspace, value


POINTER_PREFIXES = ("CONTACT#", "EMAIL#")


def notification_key(workspace: str, notification_id: str) -> Key:
    return f"NOTIFICATION#{workspace}#{notification_id}", "DONE"


def history_pk(ref: PersonRef) -> str:
    return f"HISTORY#{ref.campaign_id}#{ref.rf_user_id}"


def repeats_sk(event: str) -> str:
    return f"~repeats#{event}"


def latest_sk(event: str, outcome: str) -> str:
    return f"~latest#{event}#{outcome}"


def rate_key(budget: str, slice_id: int) -> Key:
    return f"RATE#{budget}", str(slice_id)


def budget_state_key(budget: str) -> Key:
    return f"RATE#{budget}", "STATE"


def sync_run_key(campaign_id: str, number: int | None = None) -> Key:
    return f"CAMPAIGN#{campaign_id}", "SYNC#RUN" if number is None else f"SYNC#RUN#{number:08d}"


def ledger_pk(campaign_id: str) -> str:
    return f"SYNC#{campaign_id}"


def ledger_key(campaign_id: str, contact_id: str) -> Key:
    return ledger_pk(campaign_id), f"CONTACT#{contact_id}"


def contact_of_ledger(sk: str) -> str:
    return sk.split("#", 1)[1]
