"""ccweb-helper: a git credential helper that fetches CodeCommit credentials from a ccweb service."""

__version__ = "0.1.0"
