"""Telemetry of the engine: Prometheus metrics (metrics.py), OpenTelemetry traces (tracing.py), JSON
logs (logs.py) and the /metrics, /healthz and /readyz routes (http.py).

The engine knows only observer.py (its hooks; no metrics or tracing library behind them);
`recorder.Telemetry` is the observer that turns the hooks into metrics and spans. This package
imports nothing itself, so that the engine loads no telemetry library through it.
"""
