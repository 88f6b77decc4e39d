"""The ``ccweb dev`` sandbox: everything a git credential flow needs, on loopback, nothing from AWS."""
