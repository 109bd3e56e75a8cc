"""Thin routers, one per protocol. They translate payloads; validation lives in
``service.tensors`` and model calls in ``service.inference``."""
