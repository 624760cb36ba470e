"""Threads and time, kept off pyln's dispatch loop: one timer, fair senders,
deadlines. No lightningd knowledge here."""
