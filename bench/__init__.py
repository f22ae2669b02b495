"""``make bench``: the console against a minimal "floor" app, on a throw-away PostgreSQL."""
