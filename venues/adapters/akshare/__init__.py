"""China A-shares and SHFE futures main contracts through the endpoints akshare reads (Eastmoney, Sina)."""

from venues.adapters.akshare.config import AkshareConfig
from venues.adapters.akshare.venue import AkshareVenue

__all__ = ["AkshareConfig", "AkshareVenue"]
