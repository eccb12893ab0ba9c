"""The Alpaca adapter (alpaca-py): US equities and options on an Alpaca paper account.

- config.py: AlpacaConfig, built by bot/venues.py from settings (paper only: a live trading URL
  is refused);
- client.py: alpaca-py's clients behind one VenueGuard (threads, pacing, retries, breaker, errors);
- parse.py: Alpaca's JSON into the domain's models (pure);
- venue.py: AlpacaVenue, the MarketData (instruments, snapshot, bars, option chains, health);
- broker.py: AlpacaBroker, the Broker on the paper API (entries at Alpaca, exits watched here).
"""
