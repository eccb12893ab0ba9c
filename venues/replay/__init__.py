"""The replay venue: real recorded bars shipped in the package, served through an injected clock."""

from venues.replay.catalog import DATA_DIR, MARKETS, ReplayMarket, ReplaySeries, find_market
from venues.replay.loader import load_bar_file
from venues.replay.venue import ReplayVenue

__all__ = ["DATA_DIR", "MARKETS", "ReplayMarket", "ReplaySeries", "ReplayVenue", "find_market", "load_bar_file"]
