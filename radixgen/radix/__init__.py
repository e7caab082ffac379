"""Prefix caches over the KV pool: the contract (`PrefixCache`) and its implementations."""
from .base import FreeFn, InsertResult, MatchResult, NoPrefixCache, PrefixCache
from .cache import RadixCache

__all__ = ["FreeFn", "InsertResult", "MatchResult", "NoPrefixCache", "PrefixCache", "RadixCache"]
