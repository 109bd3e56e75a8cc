"""What operators watch: per-request context, structured logs and Prometheus metrics."""
