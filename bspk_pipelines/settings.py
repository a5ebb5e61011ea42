"""The deployment's settings: every `BSPK_*` environment variable is read here and nowhere else,
when a process asks (never at import), and reading them creates nothing on disk.

Where things are (`Settings`; every process):

- `BSPK_DATA_DIR` (default `data` in the working directory): drop folders given as relative
  paths, the landing zone, work files and the default SQLite warehouse;
- `BSPK_MAPPINGS_DIR` (default `mappings`): the brand files;
- `BSPK_WAREHOUSE_URL` (default: `warehouse.sqlite` in the data folder): the warehouse, any
  SQLAlchemy URL, e.g. `postgresql+psycopg2://user:pw@host:5432/db`. The Dagster resource names
  the variable to Dagster (`dg.EnvVar`) rather than the URL, so the UI never shows its password;
- `BSPK_LANDING_URL` (default none: the landing zone is in the data folder): `s3://bucket/prefix`
  keeps every landed file in object storage too, so run workers on other machines read it (S3
  credentials and endpoint from boto3's chain: `AWS_ACCESS_KEY_ID`, `AWS_ENDPOINT_URL_S3`...);
- `BSPK_SFTP_KNOWN_HOSTS` (default `~/.ssh/known_hosts`): the host keys SFTP drops are checked
  against; a server whose key is not there is never connected to.

The REST API's limits (`ApiSettings`; `bspk serve`):

- `BSPK_API_RATE_LIMIT` (default 30): requests per key per window;
- `BSPK_API_RATE_WINDOW` (default 10): that window, in seconds;
- `BSPK_API_MAX_UPLOAD_MB` (default 100): the largest import upload, in MiB;
- `BSPK_API_AUTH_LIMIT_PER_ADDRESS` (default 10): failed authentications per client address per
  auth window;
- `BSPK_API_AUTH_LIMIT_PER_KEY` (default 30): failed authentications per key id per auth window;
- `BSPK_API_AUTH_WINDOW` (default 60): the auth window, in seconds;
- `BSPK_API_PUBLIC_URL` (default none: the address the connection reached): the origin,
  `http(s)://host[:port]`, that the URLs the API writes about itself name.

Webhook security (`WebhookSecurity`; `bspk serve` and every deliverer):

- `BSPK_WEBHOOK_ENCRYPTION_KEYS` (required): Fernet keys, newest first, separated by spaces or
  commas, that encrypt the signing secrets stored for endpoints made through the API;
- `BSPK_WEBHOOK_ALLOW_NETWORKS` (default none): networks receivers may be on although they are
  internal, e.g. `127.0.0.0/8` for a receiver on this machine.

`outbound.settings` turns the last two into the key ring and target policy the outbound code
uses, and checks there what only those can check (each key a Fernet key, each network a network).

A value that is missing or wrong is a `SettingError` whose message is one line naming the
variable and what to put there (never the value of a key or of the warehouse URL, which may
hold a password); the commands print it as it is. An empty variable counts as not set.

Not settings of the deployment: a config endpoint's signing secret is in the variable its brand
file names (`secret_env`), and `bspk webhooks receive` reads the one its `--secret-env` names
(default `BSPK_WEBHOOK_SECRET`); `brand_secret` reads them, so that no other module reads
the environment for the project. DAGSTER_HOME is Dagster's own (`cli.environment` defaults it).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

DATA_DIR = "BSPK_DATA_DIR"
MAPPINGS_DIR = "BSPK_MAPPINGS_DIR"
WAREHOUSE_URL = "BSPK_WAREHOUSE_URL"
LANDING_URL = "BSPK_LANDING_URL"
KNOWN_HOSTS = "BSPK_SFTP_KNOWN_HOSTS"
RATE_LIMIT = "BSPK_API_RATE_LIMIT"
RATE_WINDOW = "BSPK_API_RATE_WINDOW"
MAX_UPLOAD_MB = "BSPK_API_MAX_UPLOAD_MB"
AUTH_LIMIT_PER_ADDRESS = "BSPK_API_AUTH_LIMIT_PER_ADDRESS"
AUTH_LIMIT_PER_KEY = "BSPK_API_AUTH_LIMIT_PER_KEY"
AUTH_WINDOW = "BSPK_API_AUTH_WINDOW"
PUBLIC_URL = "BSPK_API_PUBLIC_URL"
ENCRYPTION_KEYS = "BSPK_WEBHOOK_ENCRYPTION_KEYS"
ALLOW_NETWORKS = "BSPK_WEBHOOK_ALLOW_NETWORKS"

MAKE_KEY = """python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"""
MIB = 1024 * 1024
URL_SCHEME = re.compile(r"[\w+]+://")  # dialect[+driver]://, as SQLAlchemy parses it


class SettingError(ValueError):
    """A setting of the deployment is missing or wrong; the message is one line."""


def _value(environ: Mapping[str, str], name: str) -> str | None:
    return environ.get(name) or None


def _positive(environ: Mapping[str, str], name: str, default: float, parse: Callable[[str], float],
              expected: str) -> float:
    """The variable as a finite number above 0, or `default` when it is not set."""
    text = _value(environ, name)
    if text is None:
        return default
    try:
        value = parse(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise SettingError(f"{name}: expected {expected}; found {text!r}")
    return value


@dataclass(frozen=True)
class Settings:
    """Where the data folder, the brand files, the warehouse and the landing zone are, and the
    SFTP host keys trusted."""

    data_dir: Path
    mappings_dir: Path
    warehouse_url: str | None  # None: the SQLite file in the data folder
    landing_url: str | None = None  # None: the landing zone is in the data folder
    known_hosts: Path | None = None  # None: ~/.ssh/known_hosts

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ, root: Path = Path()) -> Settings:
        """The settings from `environ`; the default folders are in `root` (the working
        directory; `bspk demo` gives the project's, where its sample brands are)."""
        url = _value(environ, WAREHOUSE_URL)
        if url is not None and not URL_SCHEME.match(url):
            raise SettingError(f"{WAREHOUSE_URL}: expected a SQLAlchemy URL such as sqlite:////srv/warehouse.sqlite or "
                               "postgresql+psycopg2://user:password@host:5432/db (the value is not shown: it may hold "
                               "a password)")
        landing = _value(environ, LANDING_URL)
        parts = urlsplit(landing) if landing else None
        if parts and (parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment):
            raise SettingError(f"{LANDING_URL}: expected s3://bucket/prefix (the endpoint, for a store other than AWS, "
                               f"is AWS_ENDPOINT_URL_S3); found {landing!r}")
        known_hosts = _value(environ, KNOWN_HOSTS)
        return cls(
            data_dir=Path(_value(environ, DATA_DIR) or root / "data").resolve(),
            mappings_dir=Path(_value(environ, MAPPINGS_DIR) or root / "mappings"),
            warehouse_url=url,
            landing_url=landing,
            known_hosts=Path(known_hosts).expanduser() if known_hosts else None,
        )

    @property
    def warehouse(self) -> str:
        """The warehouse's URL: the configured one, or the SQLite file in the data folder."""
        return self.warehouse_url or f"sqlite:///{self.data_dir / 'warehouse.sqlite'}"


@dataclass(frozen=True)
class ApiSettings:
    """The REST API's limits and the public origin its URLs name."""

    rate_limit: int = 30  # requests per key per window, as the platform's example headers show
    rate_window: float = 10.0  # seconds
    max_upload_bytes: int = 100 * MIB
    auth_per_address: int = 10  # failed authentications per client address per auth window
    auth_per_key: int = 30  # failed authentications per key id per auth window
    auth_window: float = 60.0  # seconds
    public_url: str | None = None  # scheme://host[:port] the Link URLs and redirects name (see api.app.PublicHost)

    def __post_init__(self) -> None:
        if self.public_url is not None:
            parts = urlsplit(self.public_url)
            if not self.public_url.isascii() or parts.scheme not in ("http", "https") or not parts.hostname \
                    or parts.path not in ("", "/") or parts.query or parts.fragment or parts.username or parts.password:
                raise SettingError(f"{PUBLIC_URL}: expected http(s)://host[:port] in ASCII (an international "
                                   f"name in its xn-- form), got {self.public_url!r}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> ApiSettings:
        count, seconds = "a whole number above 0", "a number of seconds above 0"
        return cls(
            rate_limit=_positive(environ, RATE_LIMIT, cls.rate_limit, int, count),
            rate_window=_positive(environ, RATE_WINDOW, cls.rate_window, float, seconds),
            max_upload_bytes=round(_positive(environ, MAX_UPLOAD_MB, cls.max_upload_bytes / MIB, float,
                                             "a number of MiB above 0") * MIB),
            auth_per_address=_positive(environ, AUTH_LIMIT_PER_ADDRESS, cls.auth_per_address, int, count),
            auth_per_key=_positive(environ, AUTH_LIMIT_PER_KEY, cls.auth_per_key, int, count),
            auth_window=_positive(environ, AUTH_WINDOW, cls.auth_window, float, seconds),
            public_url=_value(environ, PUBLIC_URL),
        )


@dataclass(frozen=True)
class WebhookSecurity:
    """The keys that encrypt stored signing secrets, and the networks receivers may be on."""

    encryption_keys: tuple[str, ...]  # newest first
    allow_networks: str  # as given: `outbound.targets.TargetPolicy.parse` reads it

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> WebhookSecurity:
        keys = tuple(environ.get(ENCRYPTION_KEYS, "").replace(",", " ").split())
        if not keys:
            raise SettingError(f"{ENCRYPTION_KEYS} is not set: it holds the Fernet key that encrypts stored webhook "
                               f"secrets; make one with {MAKE_KEY}")
        return cls(keys, environ.get(ALLOW_NETWORKS, ""))


def brand_secret(variable: str, environ: Mapping[str, str] = os.environ) -> str | None:
    """The secret(s) in the environment variable a brand file names: a webhook endpoint's signing
    secrets (`secret_env`, or `bspk webhooks receive --secret-env`), a Shopify source's access
    token (`token_env`) and webhook secrets (`webhook_secret_env`); None when it is not set."""
    return environ.get(variable)


# What `bspk dev` gives Dagster's daemon (deploy/helm/values.yaml sets the same). Its freshness
# daemon reads the stored state of every asset each iteration, whether it has a freshness policy
# or not, every 30 s by default: at 200 brands (11,200 assets) most of an idle daemon's CPU. A
# table's freshness window is hours or days (`sync.expect_every`): a look every 5 minutes is in time.
DAEMON_ENVIRONMENT = {"FRESHNESS_DAEMON_INTERVAL_SECONDS": "300"}


def daemon_environment(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The environment for `dagster dev`: `environ`, with DAEMON_ENVIRONMENT where it sets nothing."""
    return DAEMON_ENVIRONMENT | dict(environ)
