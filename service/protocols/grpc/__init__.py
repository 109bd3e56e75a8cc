"""KServe V2 over gRPC: ``server.py`` (grpcio's asyncio server and its lifecycle),
``servicer.py`` (the RPCs, and what every call goes through), ``tensors.py`` (ModelInfer
messages to and from the data plane's types), ``proto/`` (the committed
``grpc_predict_v2.proto`` and its generated modules; ``make proto`` regenerates them).

Nothing here is imported unless gRPC is on (see ``server.py``)."""
