"""The service's web face: its page (``page``), sign-in with single sign-on (``signin``, ``oidc``), the session
(``session``), the page's security headers (``headers``) and static files (``static``), wired into the app by
``routes.install_web``. Nothing is imported here, so that its modules may import one another by name."""
