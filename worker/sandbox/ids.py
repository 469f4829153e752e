"""Realistic-looking platform, channel and buyer ids, reproducible under a seed.

The shapes follow what the platform and Alipay hand out (numeric order ids with a date prefix,
`2088…` Alipay user ids, 16-digit app ids), so code that logs, stores or validates them sees
what production will send. Only the random parts are seeded; date prefixes follow the clock.
"""

from __future__ import annotations

import random
import string
import time

__all__ = ["IdFactory"]

_ALNUM = string.ascii_letters + string.digits


class IdFactory:
    """Makes every id the sandbox hands out; one instance per sandbox."""

    def __init__(self, *, rng: random.Random) -> None:
        self._rng = rng

    def _digits(self, count: int) -> str:
        return str(self._rng.randrange(10**count)).zfill(count)

    def _alnum(self, count: int) -> str:
        return "".join(self._rng.choices(_ALNUM, k=count))

    @staticmethod
    def _stamp(fmt: str) -> str:
        return time.strftime(fmt, time.localtime())

    def trade_id(self) -> str:
        """Platform order id: `yyyymmddHHMMSS` + 10 digits (24 digits)."""
        return self._stamp("%Y%m%d%H%M%S") + self._digits(10)

    def token_id(self) -> str:
        """Opaque token the merchant page hands to the Alipay JS bridge."""
        return "tk" + self._alnum(30)

    def out_trade_id(self) -> str:
        """Alipay trade number: `yyyymmdd` + `22` + 18 digits (28 digits)."""
        return self._stamp("%Y%m%d") + "22" + self._digits(18)

    def ch_trade_id(self) -> str:
        """Channel (acquirer) order id."""
        return "CH" + self._stamp("%Y%m%d") + self._digits(16)

    def buyer_user_id(self) -> str:
        """Alipay user id: `2088` + 12 digits."""
        return "2088" + self._digits(12)

    def openid(self) -> str:
        return "0" + self._alnum(27)

    def masked_logon_id(self, logon_id: str | None) -> str:
        """Alipay masks the buyer account (`138****5678`, `ab***@example.com`)."""
        if logon_id:
            if "@" in logon_id:
                name, domain = logon_id.split("@", 1)
                return f"{name[:2]}***@{domain}"
            if len(logon_id) > 7:
                return f"{logon_id[:3]}****{logon_id[-4:]}"
            return logon_id[:1] + "***"
        return f"1{self._digits(2)}****{self._digits(4)}"

    def appid(self) -> str:
        """Alipay app id: 16 digits starting with `20`."""
        return "20" + self._digits(14)

    def nonce(self) -> str:
        return self._alnum(32)
