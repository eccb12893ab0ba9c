"""ccxt adapter: crypto spot and USDT-margined perpetuals of any ccxt exchange (OKX, Binance, ...).

:class:`CcxtVenue` serves market data; orders go to :class:`SandboxBroker` (entries to the
exchange's test environment, exits with the PaperBroker) when keys and the sandbox are set, else
to a PaperBroker on the exchange's real rules. Built by bot/venues.py from a :class:`CcxtConfig`.
"""

from venues.adapters.ccxt.broker import SandboxBroker, exchange_client_id
from venues.adapters.ccxt.config import CcxtConfig, CcxtConfigError, validate_exchange_id
from venues.adapters.ccxt.venue import CcxtVenue

__all__ = ["CcxtConfig", "CcxtConfigError", "CcxtVenue", "SandboxBroker", "exchange_client_id", "validate_exchange_id"]
