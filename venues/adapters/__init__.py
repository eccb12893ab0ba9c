"""Adapters for real venues, one package per venue (NautilusTrader's ``adapters/<venue>/`` shape).

Each adapter implements :class:`venues.base.Venue` and is built by ``bot/venues.py`` from settings;
the domain (tools, agent, scheduler) never imports one. What every adapter shares lives here:
:mod:`venues.adapters.resilience` (pacing, retries on transient failures only, a circuit breaker)
and :mod:`venues.adapters.cache` (TTL caches for quotes, a final-bars cache).
"""
