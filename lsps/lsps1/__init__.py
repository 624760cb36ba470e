"""LSPS1 (bLIP-51): buying a channel.

msgs: methods, parameters, error codes; service: options, order checks, fees, order
JSON; client: checking an LSP's answers (all pure); service_handler: the lsps1.*
methods and the channel open, mixed into the order book (lsps/orders/);
client_handler: our orders with LSPs."""
