"""LSPS protocols and async payments for Core Lightning.

The house rules (DESIGN.md, "House plan"):
1. A core module (msgs, service, client of each protocol folder; orders/payment;
   htlc; options; bolt12ext/) imports no pyln, threading, time, os.urandom, node or
   runtime code: time, heights and randomness come in as arguments.
2. A handler (*_handler.py, orders/book.py, asyncpay/) is the only place with locks,
   stored records and node calls; an event reads "load -> core -> apply", and apply
   persists first, then answers, then acts.
3. lsps/node/ is the only code that imports pyln or reads/writes CLN JSON: hook and
   notification payloads become typed events once, hook replies are built in one place.
4. plugin.py declares; lsps/app.py builds the services and routes node events.
5. Every protocol folder has the same file names; no file over ~400 lines.

Layers, from the bottom: bolt12ext, htlc/options/quota/addresses/bolt11 -> node ->
runtime -> lsps0 -> orders -> lsps1 -> lsps7 -> lsps2 -> lsps5 -> asyncpay ->
app/commands -> plugin.py."""
