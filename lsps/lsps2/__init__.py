"""LSPS2 (bLIP-52): JIT channels, for both roles.

msgs: opening_fee_params, fees, promises, SCIDs (pure); service: the menu,
lsps2.buy checks and the JIT session state machine (pure); client: reading the
menu, choosing, checking the JIT HTLCs (pure); service_handler / client_handler:
the live roles (locks, records, node calls)."""
