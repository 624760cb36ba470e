"""LSPS7 (draft bLIP-57): extending a channel's lease. Its orders are paid like
LSPS1's (lsps/orders/).

msgs: methods and parameters; service: extendable channels, order checks, fees;
client: checking the LSP's extension orders (all pure); service_handler: the lsps7.*
methods and recording the new expiry; client_handler: ordering extensions."""
