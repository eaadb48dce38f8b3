"""Federation schemas (star, decentralized, cluster) and the registry to add your own."""

from red.registry import schemas

register = schemas.register

__all__ = ["register"]
