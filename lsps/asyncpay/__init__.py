"""Async payments (BOLT12, bLIP-66 static invoice server) at run time; their pure
cores are in bolt12ext/.

messenger: onion messages in and out at our virtual node; mailbox: messages kept
for offline peers; server: static invoices served for offline recipients;
holder: HTLCs held at the sender's LSP until release_held_htlc; recipient: the
offline recipient's offers, static invoices and claims; payer: paying offers,
async ones included."""
