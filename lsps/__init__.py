"""LSPS protocols: LSPS0 transport, and LSPS1, LSPS2 and LSPS7 on top of it.

Layers (see DESIGN.md): pure protocol code (`jsonrpc`, `service`, `client`,
`transport`, `lsps0`), threads (`runtime`) and the one lightningd adapter
(`cln`)."""
