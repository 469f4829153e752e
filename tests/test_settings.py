"""Settings: public env var names, merchant keys with rotation, secrets kept out of sight."""

import os
import subprocess
import sys

import orjson
import pytest

from worker.settings import Settings, SettingsError, load_settings


def test_env_var_names_are_the_public_contract(monkeypatch):
    """Each documented variable lands in its field."""
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka-1:9092,kafka-2:9092")
    monkeypatch.setenv("POOUL_BASE_URL", "https://gateway-test.pooulcloud.cn/")
    monkeypatch.setenv("POOUL_NOTIFY_URL", "https://shop.example.com/pooul/notify")
    monkeypatch.setenv("POOUL_TOPIC_PAYMENT_EVENTS", "shop.payments")
    monkeypatch.setenv("POOUL_MERCHANT_KEYS", '{"888": "k1"}')
    settings = load_settings()
    assert settings.kafka_bootstrap_servers == "kafka-1:9092,kafka-2:9092"
    assert settings.pooul_base_url == "https://gateway-test.pooulcloud.cn"
    assert settings.pooul_notify_url == "https://shop.example.com/pooul/notify"
    assert settings.topics()["payment_events"] == "shop.payments"
    assert settings.merchant_keys.signing_key("888") == "k1"


def test_defaults(monkeypatch):
    """Defaults are the production gateway, a local broker and the documented topic names."""
    for name in list(os.environ):
        if name.startswith(("KAFKA_", "POOUL_")):
            monkeypatch.delenv(name)
    settings = Settings()
    assert settings.pooul_base_url == "http://gateway.pooulcloud.cn"
    assert settings.kafka_bootstrap_servers == "localhost:9092"
    assert settings.topics() == {
        "order_requests": "pooul.order-requests.v1",
        "order_results": "pooul.order-results.v1",
        "trade_signals": "pooul.trade-signals.v1",
        "trade_state": "pooul.trade-state.v1",
        "order_state": "pooul.order-state.v1",
        "payment_events": "payments.events.v1",
        "dead_letters": "pooul.dead-letters.v1",
    }


def test_rotation_list_newest_first():
    """A list of keys verifies with any and signs with the first."""
    settings = Settings(pooul_merchant_keys='{"888": ["new", "old"], "999": "only"}')
    keys = settings.merchant_keys
    assert keys.signing_key("888") == "new"
    assert keys.verification_keys("888") == ("new", "old")
    assert keys.verification_keys("999") == ("only",)
    assert keys.signing_key("nobody") is None and keys.verification_keys("nobody") == ()


def test_keys_file_for_mounted_secrets(tmp_path):
    """POOUL_MERCHANT_KEYS_FILE is read and merged over POOUL_MERCHANT_KEYS."""
    path = tmp_path / "keys.json"
    path.write_bytes(orjson.dumps({"888": ["file-key"], "777": "x"}))
    settings = Settings(pooul_merchant_keys='{"888": "env-key"}', pooul_merchant_keys_file=path)
    assert settings.merchant_keys.signing_key("888") == "file-key"
    assert settings.merchant_keys.merchants() == ["777", "888"]


def test_missing_keys_file_names_the_variable(tmp_path):
    """A keys file that cannot be read fails fast with the variable name."""
    with pytest.raises(SettingsError, match="POOUL_MERCHANT_KEYS_FILE"):
        load_settings(pooul_merchant_keys_file=tmp_path / "absent.json")


@pytest.mark.parametrize(
    ("field", "value", "variable"),
    [
        ("pooul_merchant_keys", "{not json", "POOUL_MERCHANT_KEYS"),
        ("pooul_merchant_keys", '{"888": ""}', "POOUL_MERCHANT_KEYS"),
        ("pooul_merchant_keys", '{"888": []}', "POOUL_MERCHANT_KEYS"),
        ("pooul_base_url", "gateway.pooulcloud.cn", "POOUL_BASE_URL"),
        ("pooul_notify_url", "shop.example.com/notify", "POOUL_NOTIFY_URL"),
        ("pooul_notify_url", "https://", "POOUL_NOTIFY_URL"),
        ("pooul_notify_url", "https://shop.example.com/a b", "POOUL_NOTIFY_URL"),
        ("pooul_notify_url", "https://shop.example.com/" + "n" * 240, "POOUL_NOTIFY_URL"),
        ("pooul_topic_partitions", 0, "POOUL_TOPIC_PARTITIONS"),
        ("kafka_security_protocol", "TLS", "KAFKA_SECURITY_PROTOCOL"),
    ],
)
def test_invalid_settings_fail_fast_naming_the_variable(field, value, variable):
    """Each invalid value raises SettingsError whose message names the variable to fix."""
    with pytest.raises(SettingsError, match=variable):
        load_settings(**{field: value})


def test_secrets_never_in_repr_or_errors():
    """Keys appear neither in the settings repr nor in a validation error."""
    settings = Settings(pooul_merchant_keys='{"888": "super-secret-key"}')
    assert "super-secret-key" not in repr(settings)
    assert "super-secret-key" not in repr(settings.merchant_keys)
    assert "super-secret-key" not in str(settings.merchant_keys)
    with pytest.raises(SettingsError) as caught:
        load_settings(pooul_merchant_keys='{"888": ["super-secret-key", 5]}')
    assert "super-secret-key" not in str(caught.value)


def test_cli_reports_bad_settings_with_exit_code_2():
    """The command line refuses to start on bad settings and names the variable."""
    result = subprocess.run(
        [sys.executable, "-m", "worker", "topics", "describe"],
        env={"POOUL_TOPIC_PARTITIONS": "zero", "PATH": ""},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "POOUL_TOPIC_PARTITIONS" in result.stderr


def test_notify_url_and_base_url_lose_a_trailing_slash():
    """POOUL_NOTIFY_URL names the ingress's `/pooul/notify` (a trailing slash, dropped as
    always, would get 404 there); the base URL's paths join cleanly."""
    settings = Settings(
        pooul_notify_url="https://shop.example.com/pooul/notify/",
        pooul_base_url="http://gateway.example/",
    )
    assert settings.pooul_notify_url == "https://shop.example.com/pooul/notify"
    assert settings.pooul_base_url == "http://gateway.example"
