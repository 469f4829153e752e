"""pooul-worker: Kafka workers for the Pooul payment platform (`alipay.jsapi`)."""

__all__ = ["__version__"]

__version__ = "0.1.0"
