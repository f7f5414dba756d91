"""Redis connections for the services, with the credentials from the settings.

A password may sit in ``redis_url`` (``redis://user:pw@host/0``) or, better, in
``GAVEL_REDIS_PASSWORD``, where it is a secret that no log or status table shows.
"""

from __future__ import annotations

import redis

from gavel.settings import Settings


def connect(settings: Settings, *, timeout_s: float = 10.0) -> redis.Redis:
    """A client for ``settings.redis_url``; the URL's own credentials win if it has any."""
    password = settings.redis_password.get_secret_value() if settings.redis_password else None
    client: redis.Redis = redis.Redis.from_url(
        settings.redis_url,
        username=settings.redis_username,
        password=password,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
    )
    return client
