"""LSPS7 (draft bLIP-57): extending a channel's lease. Its orders are paid like
LSPS1's (lsps/orders/).

service: extendable channels, order checks, fees (pure); service_handler: the
lsps7.* methods and recording the new expiry; client_handler: ordering extensions
(checked with lsps1/client.py)."""
