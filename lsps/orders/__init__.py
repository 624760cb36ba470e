"""What LSPS1 and LSPS7 share: an order paid by a held invoice or on chain.

payment: the payment states and their transitions (pure); book: the live orders,
held HTLCs, deadlines, on-chain watching and refunds (handler)."""
