"""Redis Sentinel: `CADRE_REDIS_URL=sentinel://host1:26379;sentinel://host2:26379;sentinel://host3:26379`
names the Sentinels that watch Cadre's Redis master (`CADRE_REDIS_MASTER_NAME`) and its replicas. Clients
ask them where the master is, and ask again after every connection error, so a failover (a replica promoted
when the master dies) is followed without a restart: Celery through kombu's `sentinel://` transport, the
state store through redis-py's `Sentinel`.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

import redis
from redis.sentinel import Sentinel

SENTINEL_SCHEME = "sentinel://"


def is_sentinel_url(url: str) -> bool:
    return url.startswith(SENTINEL_SCHEME)


def sentinel_addresses(url: str) -> tuple[list[tuple[str, int]], tuple[str | None, str | None], int]:
    """The Sentinels' (host, port) pairs, the master's (user, password) (the first given) and the database number,
    from `sentinel://[user:password@]host:port[/db];sentinel://host:port;...`. ValueError for anything else."""
    addresses, user, password, db = [], None, None, 0
    for part in filter(None, (p.strip() for p in url.split(";"))):
        if not is_sentinel_url(part):
            raise ValueError(f"not a sentinel:// address: {part[:60]!r}")
        parsed = urlsplit(part)
        if not parsed.hostname:
            raise ValueError(f"a sentinel:// address needs a host: {part[:60]!r}")
        addresses.append((parsed.hostname, parsed.port or 26379))
        if parsed.password and password is None:
            user, password = (unquote(parsed.username) if parsed.username else None), unquote(parsed.password)
        if parsed.path.strip("/"):
            db = int(parsed.path.strip("/"))
    if not addresses:
        raise ValueError("no Sentinel address in the URL")
    return addresses, (user, password), db


def master_client(url: str, master_name: str, **options) -> redis.Redis:
    """A client of the master the Sentinels of `url` name; it finds the new master after a failover."""
    addresses, (user, password), db = sentinel_addresses(url)
    timeouts = {k: options[k] for k in ("socket_timeout", "socket_connect_timeout") if k in options}
    sentinel = Sentinel(addresses, sentinel_kwargs=timeouts, **timeouts)
    return sentinel.master_for(master_name, username=user, password=password, db=db,
                               **{k: v for k, v in options.items() if k not in timeouts})
