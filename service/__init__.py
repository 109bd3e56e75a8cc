"""modelserve: serves versioned Keras and scikit-learn models over TF-Serving REST and
KServe V2 (HTTP and gRPC)."""

__version__ = "0.1.0"
