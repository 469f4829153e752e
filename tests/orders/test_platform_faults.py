"""Platform refusals and outages through the real worker and the sandbox's fault injection."""

from __future__ import annotations

import asyncio

import orjson

from schemas.orders import OrderCreated, OrderFailed, OrderRejected
from tests.fixtures.broker import MERCHANT_ID, MERCHANT_KEY, OTHER_MERCHANT_ID
from tests.orders.rig import metric, order_request, running_orders

UNKNOWN_TO_PLATFORM = "888100000000009"


async def test_permanent_codes_fail_after_one_call(make_rig):
    """101, 200, 201, 202 and 1500 each answer `failed` with the platform's code and msg after
    exactly one platform call: no retry, no order, no signal."""
    # The worker signs OTHER_MERCHANT_ID's requests with a key the platform does not have, and
    # knows a merchant the platform does not: the real 101 and 200.
    worker_keys = {
        MERCHANT_ID: MERCHANT_KEY,
        OTHER_MERCHANT_ID: "not-the-platform-key",
        UNKNOWN_TO_PLATFORM: "some-key",
    }
    rig = await make_rig(pooul_merchant_keys=orjson.dumps(worker_keys).decode())
    bad_signature = order_request(merchant_id=OTHER_MERCHANT_ID)
    unknown = order_request(merchant_id=UNKNOWN_TO_PLATFORM)
    expected = {
        bad_signature["mch_trade_id"]: (101, "signature"),
        unknown["mch_trade_id"]: (200, "unknown merchant"),
    }
    async with running_orders(rig.settings) as registry:
        await rig.send(bad_signature)
        await rig.send(unknown)
        await rig.results(2)
        # Refusals of the merchant's account that a valid request cannot provoke: the sandbox
        # forces them, one code at a time.
        for code, words in ((201, "disabled"), (202, "not enabled"), (1500, "channel")):
            await rig.faults(force_code=code, force_code_endpoints=["pay"])
            request = order_request()
            expected[request["mch_trade_id"]] = (code, words)
            await rig.send(request)
            await rig.results(len(expected))
        received = await rig.reader(rig.settings.pooul_topic_order_results).settle(0.3)
    assert len(received) == len(expected)
    for record, result in await rig.results(len(expected)):
        assert record.key is not None
        code, words = expected[record.key.decode()]
        assert isinstance(result, OrderFailed), result
        assert (result.reason, result.code, result.retryable) == ("platform_refused", code, False)
        assert words in result.msg, (code, result.msg)
    assert await rig.pay_calls() == {"101": 1, "200": 1, "201": 1, "202": 1, "1500": 1}
    assert await rig.platform_orders() == []
    assert await rig.reader(rig.settings.pooul_topic_trade_signals).settle(0.2) == []
    assert await rig.reader(rig.settings.pooul_topic_dead_letters).settle(0.2) == []
    assert metric(registry, "pooul_orders_retries_total", reason="retryable_code") == 0
    assert (
        metric(registry, "pooul_orders_results_total", outcome="failed", path="platform_refused")
        == 5
    )


async def test_retryable_codes_give_up_with_retryable_failure(make_rig):
    """A platform answering 601 (or 108) every time gets POOUL_MAX_ATTEMPTS calls, then
    `failed` (retries_exhausted, retryable) with that code."""
    rig = await make_rig(pooul_max_attempts=3)
    await rig.faults(merchant_id=MERCHANT_ID, code_601_rate=1.0)
    await rig.faults(merchant_id=OTHER_MERCHANT_ID, force_code=108, force_code_endpoints=["pay"])
    async with running_orders(rig.settings) as registry:
        await rig.send(order_request())
        await rig.send(order_request(merchant_id=OTHER_MERCHANT_ID))
        received = await rig.results(2)
    by_merchant = {result.merchant_id: result for _, result in received}
    for merchant, code in ((MERCHANT_ID, 601), (OTHER_MERCHANT_ID, 108)):
        result = by_merchant[merchant]
        assert isinstance(result, OrderFailed)
        assert (result.reason, result.code, result.retryable) == ("retries_exhausted", code, True)
        assert "gave up after 3 counted attempts" in result.msg
    assert await rig.pay_calls() == {"601": 3, "108": 3}
    assert metric(registry, "pooul_orders_retries_total", reason="retryable_code") == 4
    assert await rig.reader(rig.settings.pooul_topic_dead_letters).settle(0.2) == []


async def test_a_request_refused_on_the_way_fails_after_its_attempts_instead_of_waiting(
    make_rig,
):
    """HTTP 403 on every call (a proxy or firewall refusing this request): POOUL_MAX_ATTEMPTS
    counted calls, then `failed` (retries_exhausted, retryable). Waited out behind the breaker
    like an outage, the request would never be answered and its partition's commits stop. Each
    refusal is still a breaker failure: refused everything, the breaker opens (and alerts)."""
    rig = await make_rig(pooul_max_attempts=3, pooul_circuit_failure_threshold=2)
    await rig.faults(error_500_rate=1.0, error_500_status=403)
    async with running_orders(rig.settings) as registry:
        await rig.send(order_request())
        [(_, result)] = await rig.results(1)
    assert isinstance(result, OrderFailed)
    assert (result.reason, result.code, result.retryable) == ("retries_exhausted", None, True)
    assert "gave up after 3 counted attempts" in result.msg and "HTTP 403" in result.msg
    assert await rig.pay_calls() == {"http_403": 3}
    assert metric(registry, "pooul_orders_retries_total", reason="http_refused") == 2
    assert metric(registry, "pooul_runtime_circuit_opened_total", worker="orders") == 1
    assert await rig.reader(rig.settings.pooul_topic_dead_letters).settle(0.2) == []


async def test_attempts_during_an_outage_do_not_count(make_rig):
    """Attempts that met an outage (HTTP 500 → RemoteUnavailable) do not use up
    POOUL_MAX_ATTEMPTS: after the outage a retryable code still gets all three calls."""
    rig = await make_rig(pooul_max_attempts=3, pooul_circuit_failure_threshold=1000)
    await rig.faults(error_500_rate=1.0)
    async with running_orders(rig.settings) as registry:
        await rig.send(order_request())
        async with asyncio.timeout(15):
            while metric(registry, "pooul_orders_retries_total", reason="transport") < 4:  # noqa: ASYNC110 - polling a metric
                await asyncio.sleep(0.02)
        await rig.faults(code_601_rate=1.0)
        [(_, result)] = await rig.results(1)
    assert isinstance(result, OrderFailed)
    assert (result.reason, result.code, result.retryable) == ("retries_exhausted", 601, True)
    assert "gave up after 3 counted attempts" in result.msg
    calls = await rig.pay_calls()
    assert calls["601"] == 3
    assert calls["http_500"] >= 4


async def test_unverifiable_answers_then_repeat_recovers_the_same_order(make_rig):
    """Badly signed answers give `failed` (retryable); the repeat later recovers the one order."""
    rig = await make_rig(pooul_max_attempts=3)
    await rig.faults(bad_signature_rate=1.0)
    request = order_request()
    async with running_orders(rig.settings) as registry:
        await rig.send(request)
        [(_, failed)] = await rig.results(1)
        await rig.faults()  # the platform signs correctly again
        await rig.send(request)
        [_, (_, created)] = await rig.results(2)
    assert isinstance(failed, OrderFailed)
    assert (failed.reason, failed.retryable) == ("retries_exhausted", True)
    assert isinstance(created, OrderCreated)
    [platform] = await rig.platform_orders(request["mch_trade_id"])
    assert (created.trade_id, created.token_id) == (platform["trade_id"], platform["token_id"])
    # first call created the order (answer unverifiable), every later pay call said 107
    assert await rig.pay_calls() == {"0": 1, "107": 3}
    assert metric(registry, "pooul_orders_retries_total", reason="bad_signature") == 2
    assert metric(registry, "pooul_orders_results_total", outcome="created", path="recovered") == 1


async def test_platform_outage_opens_the_circuit_then_creates_once(make_rig):
    """HTTP 500s are retried without limit behind the circuit breaker; one order once it is back."""
    rig = await make_rig(pooul_circuit_failure_threshold=3)
    await rig.faults(error_500_rate=1.0)
    request = order_request()
    async with running_orders(rig.settings) as registry:
        await rig.send(request)
        async with asyncio.timeout(15):
            while metric(registry, "pooul_runtime_circuit_opened_total", worker="orders") < 1:  # noqa: ASYNC110 - polling a metric
                await asyncio.sleep(0.05)
        await rig.faults()
        [(_, result)] = await rig.results(1)
    assert isinstance(result, OrderCreated)
    calls = await rig.pay_calls()
    assert calls["0"] == 1
    assert calls["http_500"] >= 3
    assert len(await rig.platform_orders(request["mch_trade_id"])) == 1
    assert metric(registry, "pooul_orders_retries_total", reason="transport") == calls["http_500"]


async def test_late_repeat_waits_out_an_outage_and_trusts_state_without_an_answer(make_rig):
    """A repeat past the order's expiry needs the platform's word: while it answers HTTP 500 the
    repeat is held (retried behind the breaker, no answer); once back, the paid order is
    `created` again. Without a usable answer — 301 (the platform forgot the order) or an
    unverifiable one — the state answers, as before the order expired."""
    import time

    rig = await make_rig(pooul_circuit_failure_threshold=3)
    async with running_orders(rig.settings) as registry:
        expire = int(time.time()) + 3
        paid, forgotten, unverified = (order_request(time_expire=expire) for _ in range(3))
        for request in (paid, forgotten, unverified):
            await rig.send(request)
        firsts = {result.mch_trade_id: result for _, result in await rig.results(3)}
        first_paid = firsts[paid["mch_trade_id"]]
        pay_url = f"{rig.sandbox.url}/sandbox/orders/{first_paid.trade_id}/pay"
        async with rig.http.post(pay_url, json={"notify": False}) as resp:
            assert resp.status == 200, await resp.text()
        await asyncio.sleep(expire - time.time() + 0.2)

        await rig.faults(error_500_rate=1.0)
        await rig.send(paid)
        async with asyncio.timeout(15):
            while metric(registry, "pooul_runtime_circuit_opened_total", worker="orders") < 1:  # noqa: ASYNC110 - polling a metric
                await asyncio.sleep(0.05)
        assert len(await rig.reader(rig.settings.pooul_topic_order_results).settle(0.3)) == 3
        await rig.faults()
        [*_, (_, paid_again)] = await rig.results(4)
        await rig.faults(force_code=301, force_code_endpoints=["query"])
        await rig.send(forgotten)
        [*_, (_, forgotten_again)] = await rig.results(5)
        await rig.faults(bad_signature_rate=1.0)
        await rig.send(unverified)
        [*_, (_, unverified_again)] = await rig.results(6)
    answers = ((paid, paid_again), (forgotten, forgotten_again), (unverified, unverified_again))
    for request, result in answers:
        assert isinstance(result, OrderCreated)
        assert result.trade_id == firsts[request["mch_trade_id"]].trade_id
    assert metric(registry, "pooul_orders_retries_total", reason="transport") >= 3
    assert (await rig.query_calls()).get("301") == 1
    assert metric(registry, "pooul_orders_results_total", outcome="created", path="repeat") == 3


async def test_an_order_created_before_its_expiry_is_the_answer_after_it(make_rig):
    """The first pay call creates the order but its answer never comes (timeout); an outage then
    holds the retries until the request's time_expire has passed. The retry must not answer
    `rejected` ("nothing was sent to Pooul") for an order that exists: the platform is asked,
    and its order is the answer. A request past its expiry that nothing created is still
    `rejected`, after one query and no pay call."""
    import time

    rig = await make_rig(pooul_request_timeout=1.0)
    await rig.faults(create_then_timeout_rate=1.0, hang_seconds=3.0)
    expire = int(time.time()) + 3
    request = order_request(time_expire=expire)
    never_sent = order_request(time_expire=int(time.time()) - 60)
    async with running_orders(rig.settings) as registry:
        await rig.send(request)
        async with asyncio.timeout(10):
            while not await rig.platform_orders(request["mch_trade_id"]):  # noqa: ASYNC110 - polling the sandbox
                await asyncio.sleep(0.05)
        await rig.faults(error_500_rate=1.0)
        await asyncio.sleep(expire - time.time() + 0.5)
        await rig.faults()
        [(_, result)] = await rig.results(1)
        await rig.send(never_sent)
        [_, (_, rejected)] = await rig.results(2)
    [platform_order] = await rig.platform_orders(request["mch_trade_id"])
    assert isinstance(result, OrderCreated), result
    assert result.trade_id == platform_order["trade_id"]
    assert metric(registry, "pooul_orders_results_total", outcome="created", path="recovered") == 1
    assert isinstance(rejected, OrderRejected)
    assert [(e.field, e.type) for e in rejected.errors] == [("time_expire", "expired")]
    pay_calls = await rig.pay_calls()
    assert pay_calls.get("timeout_after_create") == 1 and "0" not in pay_calls
    assert (await rig.query_calls()).get("301") == 1


async def test_a_refused_query_after_107_answers_a_retryable_failure(make_rig):
    """The first pay call created the order but timed out; the retry got 107, and the query
    that should recover the order was refused (201). The order exists, so the `failed` answer
    says retryable (with the same mch_trade_id), unlike a refusal of the order itself."""
    rig = await make_rig(pooul_request_timeout=1.0)
    await rig.faults(
        create_then_timeout_rate=1.0,
        hang_seconds=2.0,
        force_code=201,
        force_code_endpoints=["query"],
    )
    async with running_orders(rig.settings):
        await rig.send(order_request())
        [(_, result)] = await rig.results(1)
    assert isinstance(result, OrderFailed)
    assert (result.reason, result.code, result.retryable) == ("platform_refused", 201, True)
    assert "exists (code 107)" in result.msg
    assert (await rig.pay_calls()) == {"timeout_after_create": 1, "107": 1}
