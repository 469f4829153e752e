"""The Pooul protocol: signing, the gateway client and its typed errors."""

from worker.pooul import errors
from worker.pooul.client import PooulClient
from worker.pooul.signing import sign, verify, verify_any

__all__ = ["PooulClient", "errors", "sign", "verify", "verify_any"]
