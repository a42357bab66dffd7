"""The interfaces the services are typed against, each with the exceptions it raises. Real adapters
live in chalicelib/adapters (DynamoDB, SQS, SSM, HTTP); their in-memory twins in
chalicelib/adapters/memory.py (the store) and tests/fakes.py (the APIs, the queue, secrets)."""
from .apis import Apis, Conflict, IntercomAuth, IntercomPort, Merged, NotFound, PeoplePage, ReferralFactoryAuth, ReferralFactoryPort, Refused
from .edge import EdgeLog, RefusalSample, Refusals
from .queue import DeadLetterQueue, Later, MessageTooLarge, NotSent, ReceivedLetter, WorkQueue
from .secrets import SecretStore
from .store import (AttributeList, Busy, Connection, ConnectionRepository, CountBackfill, Cursor, Found, HistoryLog, LinkLookup, LinkRepository, OAuthTicket,
                    RateWindows, RFConnection, SettingsRepository, Store, StoredSettings, SyncRepository)

__all__ = ["Apis", "AttributeList", "Busy", "Conflict", "Connection", "ConnectionRepository", "OAuthTicket", "CountBackfill", "Cursor", "DeadLetterQueue", "EdgeLog",
           "Found", "HistoryLog", "IntercomAuth", "IntercomPort", "Later", "LinkLookup", "LinkRepository", "Merged",
           "MessageTooLarge", "NotFound", "NotSent", "PeoplePage", "RefusalSample", "Refusals",
           "RFConnection", "RateWindows", "ReceivedLetter", "ReferralFactoryAuth", "ReferralFactoryPort", "Refused", "SecretStore", "SettingsRepository", "Store",
           "StoredSettings", "SyncRepository", "WorkQueue"]
