"""The node adapter: the only package that imports pyln or knows lightningd's JSON.

rpc: lightningd's RPC calls as plain values; events: hook and notification
payloads read once; replies: every htlc_accepted answer; store: records in the
datastore; commands: operator argument checks and RPC errors; startup: what
lightningd's configuration says before `init`."""
