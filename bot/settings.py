"""All settings, read once from the environment (prefix TRADEOPS_) and an optional .env file.

This is the only place that reads the environment; everything below ``bot/`` receives small typed
config objects built from these settings. Every field is documented in .env.example.
"""

from __future__ import annotations

import re
from datetime import date, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from agent.llm.config import LLMConfig
from venues.adapters.alpaca.config import AlpacaConfig
from venues.paper_config import FillAt, PaperBrokerConfig

CELERY_PREFIX = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
WEBHOOK_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")  # Telegram's rule for setWebhook's secret_token
if TYPE_CHECKING:
    from tools.spreads import SpreadRules
    from venues.adapters.akshare.config import AkshareConfig
    from venues.adapters.ccxt.config import CcxtConfig
HHMM = re.compile(r"^([01]?[0-9]|2[0-3]):([0-5][0-9])$")
# Paper cash: at most a trillion units of any currency per account, and a ccxt account in at most
# 20 currencies named as exchanges spell them (USDT, USDC, BTC, EUR, 1INCH: letters and digits).
PAPER_CASH_MAX = Decimal(10**12)
PAPER_CASH_CURRENCIES_MAX = 20
CURRENCY_CODE = re.compile(r"[A-Z0-9]{2,12}")
CCXT_CASH_FORM = 'a comma-separated CURRENCY=AMOUNT list, e.g. "USDT=10000,USDC=5000,BTC=0.5"'
CCXT_UNFUNDED_HINT = (
    'fund it with TRADEOPS_PAPER_CASH_CCXT, e.g. TRADEOPS_PAPER_CASH_CCXT="USDT=100000,{currency}=10000" '
    "(a CURRENCY=AMOUNT list)"
)
PAPER_UNFUNDED_HINT = "set its starting cash (TRADEOPS_PAPER_CASH_CNY, _USD or _USDT)"
# The scheduler's leader lock: renewed every third of it; below 3 s a GC pause or a slow Redis
# answer costs the leadership, above 5 min a dead leader's scans wait too long.
LEADER_LEASE_DEFAULT = 15.0
LEADER_LEASE_RANGE = (3.0, 300.0)


def parse_cash_list(text: str, what: str = "TRADEOPS_PAPER_CASH_CCXT") -> dict[str, Decimal]:
    """``"USDT=10000, usdc=5000"`` -> {"USDT": 10000, "USDC": 5000}; "" -> {}. Anything else is a
    ValueError naming ``what`` and the valid form: a currency of 2-12 letters or digits, once; an
    amount from 0 to 1e12; at most 20 currencies."""
    cash: dict[str, Decimal] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, amount_text = (x.strip() for x in part.partition("="))
        currency = name.upper()
        if not sep or not CURRENCY_CODE.fullmatch(currency):
            raise ValueError(f"{what} must be {CCXT_CASH_FORM}; {part[:40]!r} is not CURRENCY=AMOUNT")
        try:
            amount = Decimal(amount_text)
        except ArithmeticError:
            amount = Decimal("NaN")
        if not amount.is_finite() or not 0 <= amount <= PAPER_CASH_MAX:
            raise ValueError(
                f"{what}: the amount of {currency} must be a number from 0 to {PAPER_CASH_MAX:,}, "
                f"got {amount_text[:40]!r} ({CCXT_CASH_FORM})"
            )
        if currency in cash:
            raise ValueError(f"{what} names {currency} twice; give each currency once ({CCXT_CASH_FORM})")
        cash[currency] = amount
    if len(cash) > PAPER_CASH_CURRENCIES_MAX:
        raise ValueError(f"{what} names {len(cash)} currencies, at most {PAPER_CASH_CURRENCIES_MAX} ({CCXT_CASH_FORM})")
    return cash


# LLM prices (USD per million tokens): far above any model's, far below an overflow in the cost sums.
MAX_LLM_PRICE = Decimal(100_000)


def parse_hhmm(text: str, what: str) -> time:
    """``"18:00"`` -> 18:00; anything else is a ValueError naming ``what`` and what is valid."""
    match = HHMM.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{what} must be a 24-hour time HH:MM, 00:00 to 23:59 (e.g. 18:00), got {text[:40]!r}")
    return time(int(match.group(1)), int(match.group(2)))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TRADEOPS_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )

    data_dir: Path = Field(default=Path("./var"), description="where the database, charts and logs live")
    database_url: SecretStr | None = Field(
        default=None, description="SQLAlchemy URL; empty = SQLite file tradeops.db in the data dir"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = Field(
        default="text", description="text lines, or one JSON object per line (time, level, logger, message, fields)"
    )
    # `tradeops run`'s health and metrics server: /healthz, /readyz, /metrics (off when no port is set).
    http_port: int | None = Field(
        default=None, ge=1, le=65535, description="port of /healthz, /readyz and /metrics; empty = no server"
    )
    http_host: str = Field(
        default="127.0.0.1", min_length=1, description="address the health server listens on (0.0.0.0 = all)"
    )
    redis_url: SecretStr | None = Field(
        default=None, description="redis://[:password@]host:port/db; /readyz checks it answers; empty = no Redis"
    )
    # Where scans and decisions run: in the `tradeops run` process, or as Celery tasks on Redis.
    executor: Literal["inprocess", "celery"] = Field(
        default="inprocess",
        description="inprocess = scans and decisions run in `tradeops run`; celery = tasks on TRADEOPS_REDIS_URL "
        "that `tradeops worker` processes run",
    )
    celery_prefix: str = Field(
        default="tradeops:",
        description="starts every Redis key of the Celery executor (queues, markers): deployments sharing "
        "one Redis use different prefixes",
    )
    celery_visibility_timeout: int = Field(
        default=3600,  # an LLM walk takes seconds to minutes; a lost one waits this long
        ge=10,
        le=7 * 86400,
        description="seconds after which a task whose worker vanished (SIGKILL, machine lost) is delivered "
        "again; longer than the longest task (an LLM walk)",
    )
    leader_lease: float = Field(
        default=LEADER_LEASE_DEFAULT,
        description="seconds the scheduler's leader lock (in Redis) lives unrenewed, 3 to 300: when the leader dies "
        "another `tradeops run` takes over within about this",
    )

    market_data: Literal["auto", "replay", "live"] = Field(
        default="auto",
        description="auto = the real venues when one is configured, else the shipped replay data; replay; live",
    )

    # Alpaca (US equities): configured when both keys are set; paper account only.
    alpaca_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("TRADEOPS_ALPACA_API_KEY", "APCA_API_KEY_ID")
    )
    alpaca_secret_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("TRADEOPS_ALPACA_SECRET_KEY", "APCA_API_SECRET_KEY"),
    )
    alpaca_trading_url: str | None = Field(
        default=None, description="alpaca-py url_override of the trading API; empty = the paper API (never live)"
    )
    alpaca_data_url: str | None = Field(
        default=None, description="alpaca-py url_override of the market data API; empty = data.alpaca.markets"
    )
    alpaca_feed: Literal["iex", "sip"] = Field(default="iex", description="stock data feed: iex (free) or sip")
    alpaca_rate_per_second: float = Field(
        default=3.0, gt=0, le=100, description="requests a second to Alpaca (its basic plan allows 200 a minute)"
    )
    # Options: how a BUY or SHORT on an optionable US stock of the alpaca venue is expressed.
    options: Literal["off", "spreads"] = Field(
        default="off", description="off = the stock itself; spreads = a debit vertical spread (bull call / bear put)"
    )
    options_expiry_buffer_days: int = Field(
        default=2, ge=0, le=60, description="calendar days an expiry must leave after the plan's time stop"
    )
    options_max_leg_spread_pct: Decimal = Field(
        default=Decimal("0.25"), gt=0, le=1, description="a leg's ask - bid as a share of its mid, at most"
    )
    options_min_reward_risk: float = Field(
        default=0.8, ge=0, le=10, description="a spread's minimum max gain / max loss (after fees) at the risk gate"
    )
    options_fee_per_contract: Decimal = Field(
        default=Decimal("0.05"), ge=0, le=10, description="USD of fees assumed per contract per leg fill"
    )
    # akshare (China A-shares, ETFs and SHFE main contracts through Eastmoney and Sina; no keys).
    akshare: bool = Field(default=False, description="serve the akshare venue (live A-share and SHFE data)")
    akshare_rate: float = Field(
        default=1.0, gt=0, le=10, description="requests per second to Eastmoney/Sina; they ban IPs that call faster"
    )
    akshare_adjust: Literal["qfq", "none"] = Field(
        default="qfq", description="A-share bar prices: qfq (forward-adjusted, for signals) or none (as traded)"
    )
    # ccxt (crypto spot and USDT perpetuals): configured when the exchange is set.
    ccxt_exchange: str | None = Field(default=None, description="a ccxt exchange id: okx, binance, ...")
    ccxt_api_key: SecretStr | None = Field(default=None, description="API key of the exchange's test environment")
    ccxt_secret: SecretStr | None = None
    ccxt_password: SecretStr | None = Field(default=None, description="OKX's API passphrase")
    ccxt_sandbox: bool = Field(default=False, description="the exchange's demo/testnet; required with keys")
    ccxt_api_url: str | None = Field(default=None, description="replaces every REST base URL (a proxy, a local server)")
    ccxt_markets: str = Field(default="spot,swap", description="market types to trade: spot and/or swap")
    ccxt_timeout: float = Field(default=10.0, gt=0, le=120, description="seconds per HTTP request")

    paper_fill_at: FillAt = FillAt.NEXT_OPEN
    paper_slippage_bps: Decimal = Field(default=Decimal(5), ge=0, le=500)
    paper_cash_cny: Decimal = Field(default=Decimal(1_000_000), ge=0, le=PAPER_CASH_MAX)
    paper_cash_usd: Decimal = Field(default=Decimal(100_000), ge=0, le=PAPER_CASH_MAX)
    paper_cash_usdt: Decimal = Field(default=Decimal(100_000), ge=0, le=PAPER_CASH_MAX)
    paper_cash_ccxt: str = Field(
        default="",
        description="starting cash of the ccxt paper account per currency its markets settle in, "
        "CURRENCY=AMOUNT,... (USDT=10000,USDC=5000,BTC=0.5); USDT defaults to TRADEOPS_PAPER_CASH_USDT",
    )

    risk_profile: Literal["low", "medium", "high"] = "medium"
    approval_minutes: int = Field(default=15, ge=1, le=24 * 60)
    auto_approve: Literal["none", "all", "rule"] = "none"
    max_drift_bps: Decimal = Field(default=Decimal(50), ge=0, le=2000)

    policy: Literal["auto", "rules", "llm", "ml"] = "auto"
    ml_model: str | None = Field(
        default=None, description="the ML policy's model id (tradeops models list); unset: the promoted model"
    )
    drift_psi: float = Field(
        default=0.2, gt=0, description="the daily drift check flags a feature whose PSI is above this"
    )
    drift_ks_p: float = Field(
        default=0.01, gt=0, lt=1, description="the daily drift check flags a feature whose KS p-value is below this"
    )
    drift_bars: int = Field(
        default=500, ge=50, le=3000, description="the latest bars the daily drift check compares with training"
    )
    drift_time: str = Field(default="07:00", description="local time HH:MM of the daily drift check (24-hour)")
    drift_retrain: bool = Field(
        default=False,
        description="on: when the daily drift check flags drift, retrain the promoted model over the latest "
        "window and promote the new one only if it beats it on the newest fold (off or on)",
    )
    llm_base_url: str | None = Field(
        default=None, validation_alias=AliasChoices("TRADEOPS_LLM_BASE_URL", "OPENAI_BASE_URL")
    )
    llm_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("TRADEOPS_LLM_API_KEY", "OPENAI_API_KEY")
    )
    llm_model: str | None = None
    llm_provider: Literal["auto", "openai", "deepseek", "deepseek-reasoner", "qwen", "vllm", "ollama", "generic"] = (
        "auto"
    )
    llm_tools: Literal["auto", "on", "off"] = "auto"
    llm_timeout: float = Field(default=30.0, gt=0, le=600)
    llm_concurrency: int = Field(default=4, ge=1, le=64)
    llm_max_rounds: int = Field(default=3, ge=1, le=10)
    llm_daily_token_budget: int = Field(default=0, ge=0)
    llm_budget_fallback: Literal["rules", "abstain"] = "rules"
    llm_cache: Literal["off", "read-write", "read-only"] = "read-write"
    llm_prices: dict[str, tuple[Decimal, Decimal]] = Field(default_factory=dict)
    llm_training_cutoff: date | None = Field(
        default=None,
        description="the model's training cut-off (YYYY-MM-DD): backtests before it are flagged possibly leaked; "
        "empty = the built-in table (agent/llm/cutoff.py)",
    )

    # Chat transports for `tradeops run`: a transport starts when its token is set.
    telegram_token: SecretStr | None = Field(default=None, description="Telegram bot token from @BotFather")
    discord_token: SecretStr | None = Field(default=None, description="Discord bot token")
    # Telegram (the bot token is read by `tradeops run` and handed to the transport).
    telegram_api_url: str | None = Field(
        default=None,
        description="Bot API base URL as python-telegram-bot's base_url takes it (the token follows); "
        "empty = https://api.telegram.org/bot; the file URL follows it",
    )
    telegram_allowed_users: str = Field(
        default="", description="numeric Telegram user ids with roles, e.g. 123:admin,456:trader,789:viewer"
    )
    # Telegram webhook mode: a public URL set selects it (instead of long polling).
    telegram_webhook_url: str | None = Field(
        default=None,
        description="public https URL Telegram posts updates to (a reverse proxy forwards it to LISTEN:PORT "
        "with the same path); set = webhook mode, empty = long polling",
    )
    telegram_webhook_listen: str = Field(
        default="127.0.0.1", min_length=1, description="address the webhook server listens on (0.0.0.0 = all)"
    )
    telegram_webhook_port: int = Field(default=8443, ge=1, le=65535, description="port the webhook server listens on")
    telegram_webhook_secret: SecretStr | None = Field(
        default=None,
        description="1-256 characters of A-Z a-z 0-9 _ -: Telegram sends it with every update, others get 403; "
        "empty = a random one at each start",
    )
    # Discord (the bot token is read by `tradeops run` and handed to the transport).
    discord_guild_id: int | None = Field(
        default=None, gt=0, description="a server (guild) id: slash commands sync there at once; empty = global sync"
    )
    discord_allowed_users: str = Field(
        default="", description="numeric Discord user ids with roles, e.g. 123:admin,456:trader,789:viewer"
    )
    discord_api_url: str | None = Field(
        default=None,
        description="REST API base URL (discord.py's Route.BASE), e.g. http://127.0.0.1:8080/api/v10; "
        "empty = https://discord.com/api/v10",
    )
    discord_gateway_url: str | None = Field(
        default=None, description="gateway URL (ws:// or wss://); empty = wss://gateway.discord.gg/"
    )

    # The daily summary (P&L per venue with the equity charts) to chats that want it.
    summary_time: str = Field(default="18:00", description="local time HH:MM of the daily summary (24-hour)")
    timezone: str = Field(default="UTC", description="IANA time zone of the summary time, e.g. Asia/Shanghai")

    @field_validator("paper_cash_ccxt")
    @classmethod
    def _ccxt_cash(cls, value: str) -> str:
        cash = parse_cash_list(value)
        return ",".join(f"{currency}={amount}" for currency, amount in cash.items())

    @property
    def ccxt_paper_cash(self) -> dict[str, Decimal]:
        """Starting cash of the ccxt paper account: USDT from TRADEOPS_PAPER_CASH_USDT, then what
        TRADEOPS_PAPER_CASH_CCXT lists (it wins for a currency both name)."""
        return {"USDT": self.paper_cash_usdt, **parse_cash_list(self.paper_cash_ccxt)}

    @field_validator("llm_prices", mode="after")
    @classmethod
    def _price_bounds(cls, value: dict[str, tuple[Decimal, Decimal]]) -> dict[str, tuple[Decimal, Decimal]]:
        for model, prices in value.items():
            if not all(0 <= price <= MAX_LLM_PRICE for price in prices):
                raise ValueError(
                    f"the prices of {model[:64]!r} must be USD per million tokens from 0 to "
                    f"{MAX_LLM_PRICE:,.0f}, got {[str(p) for p in prices]}"
                )
        return value

    @field_validator("summary_time")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        return parse_hhmm(value, "TRADEOPS_SUMMARY_TIME").strftime("%H:%M")

    @field_validator("drift_retrain", mode="before")
    @classmethod
    def _on_off(cls, value: object) -> object:
        if isinstance(value, str):
            word = value.strip().lower()
            if word in ("on", "true", "1", "yes"):
                return True
            if word in ("off", "false", "0", "no", ""):
                return False
            raise ValueError(f"TRADEOPS_DRIFT_RETRAIN must be off or on, got {value[:32]!r}")
        return value

    @field_validator("drift_time")
    @classmethod
    def _drift_hhmm(cls, value: str) -> str:
        return parse_hhmm(value, "TRADEOPS_DRIFT_TIME").strftime("%H:%M")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        name = value.strip()
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"TRADEOPS_TIMEZONE must be an IANA time zone name such as UTC, Europe/Berlin, "
                f"Asia/Shanghai or America/New_York, got {value[:64]!r}"
            ) from None
        return name

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def llm_config(self) -> LLMConfig:
        return LLMConfig(
            base_url=(self.llm_base_url or "").strip() or None,
            api_key=self.llm_api_key.get_secret_value().strip() if self.llm_api_key else None,
            model=(self.llm_model or "").strip() or None,
            provider=self.llm_provider,
            tools=None if self.llm_tools == "auto" else self.llm_tools == "on",
            timeout_s=self.llm_timeout,
            concurrency=self.llm_concurrency,
            max_rounds=self.llm_max_rounds,
            daily_token_budget=self.llm_daily_token_budget,
            budget_fallback=self.llm_budget_fallback,
            cache=self.llm_cache,
            prices=self.llm_prices,
            training_cutoff=self.llm_training_cutoff,
        )

    @property
    def use_llm(self) -> bool:
        """The policy in use: the LLM when asked for, or by default when one is configured."""
        return self.policy == "llm" or (self.policy == "auto" and self.llm_config.configured)

    @property
    def akshare_config(self) -> AkshareConfig:
        from venues.adapters.akshare.config import AkshareConfig  # its package loads pandas

        return AkshareConfig(rate_per_second=self.akshare_rate, adjust="" if self.akshare_adjust == "none" else "qfq")

    @property
    def transport_tokens(self) -> dict[str, str]:
        """The chat transports that have a token: {"telegram" | "discord": token}, blanks left out."""
        tokens = {"telegram": self.telegram_token, "discord": self.discord_token}
        return {
            name: value.get_secret_value().strip()
            for name, value in tokens.items()
            if value is not None and value.get_secret_value().strip()
        }

    @field_validator("telegram_webhook_url", mode="after")
    @classmethod
    def _webhook_url(cls, value: str | None) -> str | None:
        value = (value or "").strip()
        if not value:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.hostname or parts.fragment:
            raise ValueError(
                "TRADEOPS_TELEGRAM_WEBHOOK_URL must be the public https URL Telegram posts to, like "
                "https://bot.example.com/telegram (no #fragment); empty = long polling"
            )
        return value

    @field_validator("telegram_webhook_secret", mode="after")
    @classmethod
    def _webhook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        secret = value.get_secret_value().strip() if value is not None else ""
        if not secret:
            return None
        if not WEBHOOK_SECRET.fullmatch(secret):  # the value itself is never part of the message
            raise ValueError(
                "TRADEOPS_TELEGRAM_WEBHOOK_SECRET must be 1-256 characters of A-Z, a-z, 0-9, _ and - "
                "(Telegram's rule for secret_token); empty = a random one at each start"
            )
        return SecretStr(secret)

    @property
    def alpaca_configured(self) -> bool:
        return all(
            v is not None and v.get_secret_value().strip() for v in (self.alpaca_api_key, self.alpaca_secret_key)
        )

    @property
    def alpaca_config(self) -> AlpacaConfig:
        """The alpaca venue's config; AlpacaConfigError names a setting that cannot work."""
        key = self.alpaca_api_key.get_secret_value().strip() if self.alpaca_api_key else ""
        secret = self.alpaca_secret_key.get_secret_value().strip() if self.alpaca_secret_key else ""
        return AlpacaConfig(
            api_key=key,
            secret_key=secret,
            trading_url=(self.alpaca_trading_url or "").strip() or None,
            data_url=(self.alpaca_data_url or "").strip() or None,
            feed=self.alpaca_feed,
            rate_per_second=self.alpaca_rate_per_second,
        )

    @property
    def spread_rules(self) -> SpreadRules | None:
        """The agent's option-spread rules; None when TRADEOPS_OPTIONS=off."""
        if self.options == "off":
            return None
        from tools.spreads import SpreadRules

        return SpreadRules(
            expiry_buffer_days=self.options_expiry_buffer_days,
            max_leg_spread_pct=self.options_max_leg_spread_pct,
            fee_per_contract=self.options_fee_per_contract,
            min_reward_risk=self.options_min_reward_risk,
        )

    @property
    def approval_timeout(self) -> timedelta:
        return timedelta(minutes=self.approval_minutes)

    @field_validator("ccxt_exchange")
    @classmethod
    def _ccxt_exchange(cls, value: str | None) -> str | None:
        text = (value or "").strip().lower()
        if not text:
            return None
        from venues.adapters.ccxt.config import CcxtConfigError, validate_exchange_id  # ccxt loads only when used

        try:
            return validate_exchange_id(text)
        except CcxtConfigError as exc:
            raise ValueError(str(exc)) from None

    @property
    def ccxt_config(self) -> CcxtConfig:
        """The ccxt venue's configuration; CcxtConfigError names the setting that is wrong."""
        from venues.adapters.ccxt.config import CcxtConfig, CcxtConfigError

        if not self.ccxt_exchange:
            raise CcxtConfigError("TRADEOPS_CCXT_EXCHANGE is not set (a ccxt exchange id such as okx or binance)")

        def secret(value: SecretStr | None) -> str | None:
            return (value.get_secret_value().strip() or None) if value is not None else None

        kinds = tuple(part.strip().lower() for part in self.ccxt_markets.split(",") if part.strip())
        return CcxtConfig(
            exchange=self.ccxt_exchange,
            api_key=secret(self.ccxt_api_key),
            secret=secret(self.ccxt_secret),
            password=secret(self.ccxt_password),
            sandbox=self.ccxt_sandbox,
            api_url=(self.ccxt_api_url or "").strip() or None,
            market_types=kinds,  # type: ignore[arg-type]  # checked by CcxtConfig
            timeout_s=self.ccxt_timeout,
        )

    @field_validator("discord_guild_id", "llm_training_cutoff", "http_port", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        """`NAME=` (as .env.example writes every unset optional) means unset, not an empty number."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("executor", mode="before")
    @classmethod
    def _executor(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("celery_prefix")
    @classmethod
    def _celery_prefix(cls, value: str) -> str:
        if not CELERY_PREFIX.fullmatch(value):
            raise ValueError(
                "TRADEOPS_CELERY_PREFIX must be 1-64 characters of A-Z, a-z, 0-9, '_', '.', ':' and '-', "
                f"e.g. tradeops: or desk1:, got {value[:64]!r}"
            )
        return value

    @property
    def redis_url_text(self) -> str | None:
        """The Redis URL as set (it may hold a password: never for a log or a chat), or None."""
        return self.redis_url.get_secret_value() if self.redis_url is not None else None

    @field_validator("leader_lease", mode="before")
    @classmethod
    def _leader_lease(cls, value: object) -> object:
        low, high = LEADER_LEASE_RANGE
        what = (
            f"TRADEOPS_LEADER_LEASE must be a number of seconds from {low:g} to {high:g} "
            f"(default {LEADER_LEASE_DEFAULT:g})"
        )
        if isinstance(value, str) and not value.strip():
            return LEADER_LEASE_DEFAULT  # `NAME=`, as .env.example writes a setting left at its default
        try:
            seconds = float(str(value).strip()) if isinstance(value, str) else float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ValueError(f"{what}, got {str(value)[:40]!r}") from None
        if not low <= seconds <= high:  # NaN fails too
            raise ValueError(f"{what}, got {str(value)[:40]!r}")
        return seconds

    @field_validator("redis_url", mode="after")
    @classmethod
    def _redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        url = value.get_secret_value().strip() if value is not None else ""
        if not url:
            return None
        if urlsplit(url).scheme not in ("redis", "rediss", "unix"):  # the URL itself may hold a password
            raise ValueError(
                "TRADEOPS_REDIS_URL must be a Redis URL such as redis://127.0.0.1:6379/0 "
                "(rediss:// for TLS, unix:///path/to/redis.sock); empty = no Redis"
            )
        return SecretStr(url)

    @property
    def lake_dir(self) -> Path:
        """The bars lake of `tradeops backfill` and `tradeops sql --lake`."""
        return self.data_dir / "lake"

    @property
    def models_dir(self) -> Path:
        """Trained ML models (`tradeops train`, `tradeops models`), one directory each."""
        return self.data_dir / "models"

    @property
    def resolved_database_url(self) -> str:
        if self.database_url is not None and self.database_url.get_secret_value().strip():
            return self.database_url.get_secret_value().strip()
        from storage.db import sqlite_url  # SQLAlchemy loads only when a database is used

        return sqlite_url(self.data_dir.resolve() / "tradeops.db")

    def paper_config(self, currencies: list[str]) -> PaperBrokerConfig:
        """Starting cash for a paper venue trading in ``currencies`` (the first is its main one)."""
        cash = {"CNY": self.paper_cash_cny, "USD": self.paper_cash_usd, "USDT": self.paper_cash_usdt}
        return PaperBrokerConfig(
            starting_cash={c: cash[c] for c in currencies if c in cash},
            fill_at=self.paper_fill_at,
            slippage_bps=self.paper_slippage_bps,
            unfunded_hint=PAPER_UNFUNDED_HINT,
        )

    def ccxt_paper_config(self) -> PaperBrokerConfig:
        """The ccxt paper account: cash in each currency of ``ccxt_paper_cash`` (USDT first, its
        main one); a market quoted in another currency has none, and says which setting funds it."""
        return PaperBrokerConfig(
            starting_cash=self.ccxt_paper_cash,
            fill_at=self.paper_fill_at,
            slippage_bps=self.paper_slippage_bps,
            unfunded_hint=CCXT_UNFUNDED_HINT,
        )

    def starting_cash(self, venue: str, currency: str) -> Decimal:
        """The starting cash of ``venue``'s paper account in ``currency`` (0 when none is set)."""
        if self.ccxt_exchange and venue == self.ccxt_exchange:
            return self.ccxt_paper_cash.get(currency, Decimal(0))
        cash = {"CNY": self.paper_cash_cny, "USD": self.paper_cash_usd, "USDT": self.paper_cash_usdt}
        return cash.get(currency, Decimal(0))


def load_settings(**overrides: object) -> Settings:
    return Settings(**overrides)  # type: ignore[arg-type]
