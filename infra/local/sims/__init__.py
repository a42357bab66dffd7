"""Local HTTP simulators of Intercom and Referral Factory for integration tests and demos."""
from .intercom import IntercomSim
from .webhooks import sign, webhook_payload
from .referral_factory import RFSim

__all__ = ["IntercomSim", "RFSim", "sign", "webhook_payload"]
