"""BOLT12 and async-payments code: codec, blinded paths, onion messages.

Pure library; it grows with the BOLT12 issues. Nothing here talks to lightningd."""
