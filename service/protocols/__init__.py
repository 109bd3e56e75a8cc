"""The wire protocols, each only decoding requests into the data plane's types
(``service/dataplane.py``) and encoding its results: TF-Serving REST (``tfserving.py``),
KServe V2 over HTTP (``v2.py``) and over gRPC (``grpc/``), image uploads (``images.py``),
health and model management. HTTP requests enter through ``gateway.py``, which
dispatches predictions from the route table in ``routes.py``."""
