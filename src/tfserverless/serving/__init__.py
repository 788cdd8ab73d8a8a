"""The request path between the platform adapters and the model: ``service`` (routing,
health, metrics, errors -> replies, in one place), ``routes/`` (one module per client
ecosystem's URLs), ``jobs`` (an admitted job's run), ``predictor`` (decode, run, encode,
timing), ``admission`` (EAS's 450/408/429), ``auth`` (tokens and signed requests),
``metrics`` (Prometheus), ``warmup`` (replayed before traffic) and ``app`` (builds it all from
the environment)."""
