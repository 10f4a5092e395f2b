"""Observability: metrics, structured logs with personal-data masking, health and its endpoint.

Imports nothing else of the service. Public pieces:
- `metrics`: the notifier_* Prometheus metrics (names the alerts and dashboard rely on);
- `logging.configure_logging`, `masking.mask_personal_data` and the `mask_*` helpers;
- `health.Health`: liveness from the poll loop's tick, readiness from async checks;
- `http.build_http_app` / `http.serve_http`: /metrics, /healthz, /readyz.
"""
