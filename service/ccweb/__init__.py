"""ccweb: OIDC-authenticated, policy-scoped CodeCommit git credentials."""

__version__ = "0.1.0"
