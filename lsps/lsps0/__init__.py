"""LSPS0 (bLIP-50): JSON-RPC 2.0 over custom message 37913, for both roles.

msgs: the framing (bytes <-> typed messages); service: the method registry and
per-peer limits; client: outstanding requests and their timeouts; transport:
which role a payload goes to; protocols: lsps0.list_protocols."""
