"""The control API under `/sandbox/`: play the buyer and the channel, inspect, inject faults.

    POST   /sandbox/orders/{trade_id}/pay     {"total_fee": 1, "notify": true}   → 0, notify sent
    POST   /sandbox/orders/{trade_id}/fail    {"notify": true}                    → 7
    POST   /sandbox/orders/{trade_id}/close   {"notify": true}                    → 3
    POST   /sandbox/orders/{trade_id}/refund  {"notify": true}                    → 1 (was 0)
    POST   /sandbox/orders/{trade_id}/forge   {"trade_state": 0}                  → forged notify
    GET    /sandbox/orders/{trade_id}         the order and every notify delivery attempt
    GET    /sandbox/orders?merchant_id=&mch_trade_id=
    GET    /sandbox/stats · GET /sandbox/health
    GET|PUT|DELETE /sandbox/faults
    GET    /sandbox/cashier/{trade_id}        a page with Pay / Fail / Cancel buttons

Errors are JSON `{"error": "..."}` with 400 (bad body), 404 (unknown order) or 409 (the order
cannot make that move: already paid, closed, expired...).
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from importlib import resources
from typing import Any, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from worker.sandbox.core import SANDBOX_KEY, Sandbox, TransitionError, state_name
from worker.sandbox.faults import FaultConfig
from worker.sandbox.store import Order, yuan

__all__ = ["render_cashier", "routes"]

_Model = TypeVar("_Model", bound=BaseModel)
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


class _PayBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    total_fee: int | None = Field(default=None, gt=0, description="paid amount, fen")
    notify: bool = True


class _SettleBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    notify: bool = True


class _ForgeBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    trade_state: int = Field(ge=-1, le=7)


def routes() -> list[web.RouteDef]:
    """The `/sandbox/` control API and the cashier page."""
    return [
        web.get("/sandbox/health", _health),
        web.get("/sandbox/stats", _stats),
        web.get("/sandbox/orders", _list_orders),
        web.get("/sandbox/orders/{trade_id}", _get_order),
        web.post("/sandbox/orders/{trade_id}/pay", _pay),
        web.post("/sandbox/orders/{trade_id}/fail", _fail),
        web.post("/sandbox/orders/{trade_id}/close", _close),
        web.post("/sandbox/orders/{trade_id}/refund", _refund),
        web.post("/sandbox/orders/{trade_id}/forge", _forge),
        web.get("/sandbox/faults", _get_faults),
        web.put("/sandbox/faults", _put_faults),
        web.delete("/sandbox/faults", _delete_faults),
        web.get("/sandbox/cashier/{trade_id}", _cashier),
    ]


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status=status)


async def _body(request: web.Request, model: type[_Model]) -> _Model | web.Response:
    raw = await request.read()
    try:
        payload = orjson.loads(raw) if raw.strip() else {}
        return model.model_validate(payload)
    except orjson.JSONDecodeError as exc:
        return _error(400, f"request body is not JSON: {exc}")
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}"
            for err in exc.errors()
        )
        return _error(400, problems)


def _order(request: web.Request) -> tuple[Sandbox, Order | None]:
    sandbox = request.app[SANDBOX_KEY]
    return sandbox, sandbox.store.get(request.match_info["trade_id"])


def _not_found(request: web.Request) -> web.Response:
    return _error(404, f"no order with trade_id {request.match_info['trade_id']}")


async def _health(request: web.Request) -> web.Response:
    return _json({"status": "ok"})


async def _stats(request: web.Request) -> web.Response:
    return _json(request.app[SANDBOX_KEY].stats())


async def _list_orders(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX_KEY]
    orders = sandbox.store.find(
        merchant_id=request.query.get("merchant_id"),
        mch_trade_id=request.query.get("mch_trade_id"),
    )
    return _json({"count": len(orders), "orders": [order.as_json() for order in orders]})


async def _get_order(request: web.Request) -> web.Response:
    _, order = _order(request)
    return _json(order.as_json()) if order is not None else _not_found(request)


async def _act(
    request: web.Request,
    model: type[_Model],
    act: Callable[[Sandbox, Order, _Model], dict[str, Any]],
) -> web.Response:
    """One move on one order: 404 unknown order, 400 bad body, 409 refused, else `act`'s view."""
    sandbox, order = _order(request)
    if order is None:
        return _not_found(request)
    body = await _body(request, model)
    if isinstance(body, web.Response):
        return body
    try:
        return _json(act(sandbox, order, body))
    except TransitionError as exc:
        return _error(409, str(exc))


def _paid(sandbox: Sandbox, order: Order, body: _PayBody) -> dict[str, Any]:
    sandbox.pay(order, paid_fee=body.total_fee, notify=body.notify)
    return order.as_json()


def _failed(sandbox: Sandbox, order: Order, body: _SettleBody) -> dict[str, Any]:
    sandbox.fail(order, notify=body.notify)
    return order.as_json()


def _closed(sandbox: Sandbox, order: Order, body: _SettleBody) -> dict[str, Any]:
    sandbox.close(order, by="channel", notify=body.notify)
    return order.as_json()


def _refunded(sandbox: Sandbox, order: Order, body: _SettleBody) -> dict[str, Any]:
    sandbox.refund(order, notify=body.notify)
    return order.as_json()


def _forged(sandbox: Sandbox, order: Order, body: _ForgeBody) -> dict[str, Any]:
    notification = sandbox.forge(order, trade_state=body.trade_state)
    return {"notification": notification.as_json(), "order": order.as_json()}


async def _pay(request: web.Request) -> web.Response:
    return await _act(request, _PayBody, _paid)


async def _fail(request: web.Request) -> web.Response:
    return await _act(request, _SettleBody, _failed)


async def _close(request: web.Request) -> web.Response:
    return await _act(request, _SettleBody, _closed)


async def _refund(request: web.Request) -> web.Response:
    return await _act(request, _SettleBody, _refunded)


async def _forge(request: web.Request) -> web.Response:
    return await _act(request, _ForgeBody, _forged)


async def _get_faults(request: web.Request) -> web.Response:
    return _json(request.app[SANDBOX_KEY].faults.snapshot())


async def _put_faults(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX_KEY]
    config = await _body(request, FaultConfig)
    if isinstance(config, web.Response):
        return config
    if config.merchant_id is not None and config.merchant_id not in sandbox.merchant_keys:
        return _error(400, f"unknown merchant {config.merchant_id}: not in POOUL_MERCHANT_KEYS")
    sandbox.faults.set(config)
    return _json({"applied": config.model_dump(mode="json"), **sandbox.faults.snapshot()})


async def _delete_faults(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX_KEY]
    sandbox.faults.reset(request.query.get("merchant_id"))
    return _json(sandbox.faults.snapshot())


_CASHIER_TEMPLATE = (
    resources.files("worker.sandbox").joinpath("static/cashier.html").read_text(encoding="utf-8")
)


def render_cashier(order: Order) -> str:
    """The cashier page for one order; every value HTML-escaped."""
    values = {
        "trade_id": order.trade_id,
        "merchant_id": order.merchant_id,
        "mch_trade_id": order.mch_trade_id,
        "body": order.body,
        "amount": yuan(order.total_fee),
        "trade_state": str(order.trade_state),
        "state_name": state_name(order.trade_state),
    }
    # One pass, so a value that looks like a placeholder stays text.
    return _PLACEHOLDER.sub(lambda match: html.escape(values[match.group(1)]), _CASHIER_TEMPLATE)


async def _cashier(request: web.Request) -> web.Response:
    _, order = _order(request)
    if order is None:
        return web.Response(
            status=404,
            text=f"<!doctype html><p>No order {html.escape(request.match_info['trade_id'])}</p>",
            content_type="text/html",
        )
    return web.Response(text=render_cashier(order), content_type="text/html")
