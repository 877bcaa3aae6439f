"""The web console: server-rendered pages of MISP's administration screens.

It owns no data. Every page is rendered from MISP's REST API, called through the gateway as the
logged-in user (the browser's session cookie), so every rule of who may see or change what is the
API's own: the console has no side door (docs/console.md).
"""
