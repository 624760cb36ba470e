"""LSPS5 (bLIP-55): webhooks that wake offline clients. msgs, service, client (pure:
the wire rules, the per-client webhook book, notification verification);
service_handler (live: lsps5.* methods, persisted webhooks, signed HTTPS
notifications); delivery (the HTTPS POSTs, off the hot path); client_handler; options."""
