"""API routers, one module per resource; each route declares its access (``dutyguard.server.authz``)."""
