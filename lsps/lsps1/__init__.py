"""LSPS1 (bLIP-51): buying a channel.

service: options, order checks, fees, order JSON (pure); client: checking an LSP's
answers (pure); service_handler: the lsps1.* methods and the channel open, mixed
into the order book (lsps/orders/); client_handler: our orders with LSPs."""
