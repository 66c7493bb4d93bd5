"""Enrichment: what processing adds to each valid event. Polars expressions over the batch.

- user agent → browser, browser_version, os, device, device_type, is_bot (ua-parser's
  Rust resolver and crawlerdetect, once per distinct user agent);
- utm_* from the client's attribution, else from the page URL's query, else the landing page's;
- referrer_medium (direct, internal, search, social, email, paid, other) from
  `tributary/referrers.yaml`;
- ip → ip_prefix (IPv4 /24, IPv6 /48) and country (an offline MaxMind database, when
  configured); the full IP is dropped here, so it never reaches the warehouse.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from urllib.parse import unquote_plus

import maxminddb
import polars as pl
import yaml
from crawlerdetect.providers.crawlers import data as crawler_data
from crawlerdetect.providers.exclusions import data as exclusion_data
from ua_parser import Domain, load_builtins
from ua_parser.regex import Resolver

from orchestration.processing import ENGINE

UTM_FIELDS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
DEVICE_TYPES = ("desktop", "mobile", "tablet", "bot", "other")
MEDIA = ("direct", "internal", "search", "social", "email", "paid", "other")

USER_AGENT_SCHEMA: dict[str, pl.DataType] = {
    "user_agent": pl.String,
    "browser": pl.String,
    "browser_version": pl.String,
    "os": pl.String,
    "device": pl.String,
    "device_type": pl.String,
    "is_bot": pl.Boolean,
}
ENRICHED_COLUMNS = (*list(USER_AGENT_SCHEMA)[1:], "ip_prefix", "country", "referrer_medium")
"""Columns enrich() adds (it also fills utm_* and drops `ip`)."""

_HOST = r"^[a-zA-Z][a-zA-Z0-9+.-]*://(?:[^@/?#]*@)?([^:/?#]+)"
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = rf"^({_OCTET}\.{_OCTET}\.{_OCTET})\.{_OCTET}$"

_MOBILE_OS = {"iOS", "Android", "Windows Phone", "BlackBerry OS", "KaiOS", "Firefox OS", "Symbian OS", "Sailfish"}
_DESKTOP_OS = {
    "Windows",
    "Mac OS X",
    "macOS",
    "Linux",
    "Ubuntu",
    "Chrome OS",
    "ChromeOS",
    "Fedora",
    "Debian",
    "Red Hat",
    "FreeBSD",
    "OpenBSD",
    "NetBSD",
    "Solaris",
    "Mint",
    "Arch Linux",
    "Gentoo",
}


@dataclass(frozen=True)
class Enrichment:
    """What enrichment needs from the settings."""

    geoip_db: Path | None = None
    """A MaxMind database (GeoLite2-Country/City or alike); None: country stays null."""


@dataclass(frozen=True)
class Media:
    """tributary/referrers.yaml, compiled."""

    search: str
    social: str
    email: str
    click_ids: str
    paid_mediums: tuple[str, ...]
    email_mediums: tuple[str, ...]
    social_mediums: tuple[str, ...]


def _domains(entries: list[str]) -> str:
    """One regex over a lower-case host: each domain, with any subdomain; `name.*`: any suffix."""
    alternatives = [
        re.escape(entry[:-2]) + r"\.[a-z0-9.-]+" if entry.endswith(".*") else re.escape(entry) for entry in entries
    ]
    return r"^(?:[a-z0-9-]+\.)*(?:" + "|".join(alternatives) + r")$"


@functools.cache
def media() -> Media:
    doc = yaml.safe_load((resources.files("tributary") / "referrers.yaml").read_text())
    mediums = doc["utm_medium"]
    return Media(
        search=_domains(doc["search"]),
        social=_domains(doc["social"]),
        email=_domains(doc["email"]),
        click_ids=r"(?i)[?&](?:" + "|".join(re.escape(name) for name in doc["paid_click_ids"]) + r")=[^&#]",
        paid_mediums=tuple(mediums["paid"]),
        email_mediums=tuple(mediums["email"]),
        social_mediums=tuple(mediums["social"]),
    )


# --- expressions ---------------------------------------------------------------------


def host(url: pl.Expr) -> pl.Expr:
    """The URL's host, lower case, without `www.`; null when the text is not an absolute URL."""
    return url.str.extract(_HOST).str.to_lowercase().str.strip_chars_end(".").str.strip_prefix("www.")


def query_param(url: pl.Expr, name: str) -> pl.Expr:
    """A query parameter's value as sent (still %-encoded; `+` is a space); null when absent or empty."""
    value = url.str.extract(rf"(?i:[?&]{re.escape(name)}=)([^&#]*)").str.replace_all("+", " ", literal=True)
    return pl.when(value != "").then(value)


def referrer_medium(referrer: pl.Expr, page_url: pl.Expr, landing_page: pl.Expr, utm_medium: pl.Expr) -> pl.Expr:
    """Why: medium drives acquisition reports. A tagged campaign or an ad click says it
    outright; otherwise the referrer's host does, and hops within the site must not count
    as referrals. The order of the tests is the README's."""
    m = media()
    referrer_host = host(referrer)
    page_host = pl.coalesce(host(page_url), host(landing_page))
    medium = utm_medium.str.strip_chars().str.to_lowercase()
    clicked = page_url.str.contains(m.click_ids) | landing_page.str.contains(m.click_ids)
    return (
        pl.when(clicked.fill_null(False) | medium.is_in(m.paid_mediums))
        .then(pl.lit("paid"))
        .when(medium.is_in(m.email_mediums))
        .then(pl.lit("email"))
        .when(medium.is_in(m.social_mediums))
        .then(pl.lit("social"))
        .when(referrer_host.is_null())
        .then(pl.lit("direct"))
        .when(referrer_host == page_host)
        .then(pl.lit("internal"))
        .when(referrer_host.str.contains(m.email))
        .then(pl.lit("email"))
        .when(referrer_host.str.contains(m.search))
        .then(pl.lit("search"))
        .when(referrer_host.str.contains(m.social))
        .then(pl.lit("social"))
        .otherwise(pl.lit("other"))
    )


def ipv4_prefix(ip: pl.Expr) -> pl.Expr:
    """An IPv4 address's /24 (`203.0.113.0/24`); null for anything else."""
    return pl.format("{}.0/24", ip.str.extract(_IPV4))


# --- once per distinct value ---------------------------------------------------------


@functools.cache
def _resolver() -> Resolver:
    # ua-parser's Rust resolver: about 10 µs a string, against milliseconds for the pure-Python one.
    return Resolver(load_builtins())


# Patterns Rust's regex engine cannot run (look-arounds): crawlerdetect's own Python
# regex tests those few, on the agents the vectorised pass did not already call bots.
_PYTHON_ONLY = re.compile(r"\(\?<?[=!]|\\[1-9]")


@functools.cache
def _crawler_patterns() -> tuple[str, str, re.Pattern[str] | None]:
    """crawlerdetect's exclusion and crawler lists as Polars (Rust) regexes, plus the rest."""
    vectorised = [pattern for pattern in crawler_data if not _PYTHON_ONLY.search(pattern)]
    rest = [pattern for pattern in crawler_data if _PYTHON_ONLY.search(pattern)]
    assert not any(_PYTHON_ONLY.search(pattern) for pattern in exclusion_data), "an exclusion needs Python's regex"
    return (
        "(?i)(?:" + "|".join(exclusion_data) + ")",
        "(?i)(?:" + "|".join(vectorised) + ")",
        re.compile("(?:" + "|".join(rest) + ")", re.IGNORECASE) if rest else None,
    )


def crawlers(agents: pl.Series) -> pl.Series:
    """crawlerdetect's verdict for each user agent, as one vectorised pass.

    Why not CrawlerDetect.is_crawler per string: its single Python regex of ~1,500
    alternatives costs ~0.2 ms a string, and every run (a new process) meets its batches'
    distinct agents afresh. Same rule: strip the excluded phrases; a bot if what remains
    matches a crawler pattern."""
    excluded, vectorised, rest = _crawler_patterns()
    remains = agents.str.strip_chars().str.replace_all(excluded, "")
    verdict = pl.select((remains.str.len_chars() > 0) & remains.str.contains(vectorised)).to_series()
    if rest is not None:
        unsure = (~verdict.fill_null(False)) & (remains.str.len_chars() > 0).fill_null(False)
        # Python's regex only for the look-ahead patterns Rust cannot run, and only on the
        # agents not already called bots; callers pass distinct agents (user_agents()).
        checked = [bool(rest.search(agent)) for agent in remains.filter(unsure).to_list()]
        verdict = verdict.scatter(unsure.arg_true(), checked)
    return verdict.fill_null(False)


def _device_type(ua: str, os_family: str | None, device: object, is_bot: bool) -> str:
    if is_bot:
        return "bot"
    brand = getattr(device, "brand", None) or ""
    family = getattr(device, "family", None) or ""
    if (
        family.startswith("iPad")
        or "Tablet" in brand
        or "Tablet" in ua
        or "Kindle" in family
        or (os_family == "Android" and "Mobile" not in ua)
    ):
        return "tablet"
    if os_family in _MOBILE_OS or "Mobi" in ua:
        return "mobile"
    if os_family in _DESKTOP_OS:
        return "desktop"
    return "other"


# Bounded and shared by batches: a site's user agents repeat from batch to batch, so each
# distinct string is parsed once per process while it stays among the most recently seen.
@functools.lru_cache(maxsize=50_000)
def describe_user_agent(ua: str, crawler: bool) -> tuple[str | None, str | None, str | None, str | None, str, bool]:
    """(browser, browser_version, os, device, device_type, is_bot) for one user-agent string,
    given crawlerdetect's verdict on it (crawlers())."""
    parsed = _resolver()(ua, Domain.ALL)
    agent, system, device = parsed.user_agent, parsed.os, parsed.device
    is_bot = (device is not None and device.family == "Spider") or crawler
    browser = agent.family if agent and agent.family != "Other" else None
    version = None
    if browser and agent.major:
        version = ".".join(part for part in (agent.major, agent.minor, agent.patch) if part)
    os_family = system.family if system and system.family != "Other" else None
    device_family = device.family if device and device.family not in ("Other", "Spider") else None
    return browser, version, os_family, device_family, _device_type(ua, os_family, device, is_bot), is_bot


def user_agents(values: pl.Series) -> pl.DataFrame:
    """USER_AGENT_SCHEMA rows for the distinct non-empty strings of `values`.

    Why a table to join and not map_elements: a batch has thousands of events but a few
    hundred distinct user agents, and the parse is a Python call: once per distinct string."""
    distinct = values.drop_nulls().unique()
    distinct = distinct.filter(distinct.str.len_chars() > 0)
    rows = [
        (ua, *describe_user_agent(ua, crawler))
        for ua, crawler in zip(distinct.to_list(), crawlers(distinct).to_list(), strict=True)
    ]
    return pl.DataFrame(rows, schema=USER_AGENT_SCHEMA, orient="row")


def _network(ip: str) -> str | None:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    bits = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{bits}", strict=False))


def ipv6_prefixes(values: pl.Series) -> dict[str, str | None]:
    """IPv6 address → its /48, for the distinct addresses with a colon (IPv4 is done by regex).

    Why Python: the `::` shorthand makes the /48 unreadable by pattern; IPv6 is a minority,
    and each distinct address costs one call."""
    distinct = values.filter(values.str.contains(":")).unique().to_list()
    return {ip: _network(ip) for ip in distinct}


@functools.cache
def _geoip(path: Path) -> maxminddb.Reader:
    return maxminddb.open_database(str(path))


def _country(reader: maxminddb.Reader, ip: str) -> str | None:
    try:
        record = reader.get(ip)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    for key in ("country", "registered_country"):
        place = record.get(key)
        if isinstance(place, dict) and isinstance(place.get("iso_code"), str):
            return place["iso_code"]
    return None


def countries(values: pl.Series, geoip_db: Path) -> dict[str, str | None]:
    """IP → ISO country code, one database lookup per distinct address."""
    reader = _geoip(geoip_db)
    return {ip: _country(reader, ip) for ip in values.drop_nulls().unique().to_list()}


def _decode(frame: pl.DataFrame, columns: tuple[str, ...]) -> pl.DataFrame:
    """%-decode the values that need it, once per distinct value (query values are few)."""
    decoded = []
    for column in columns:
        encoded = frame[column].filter(frame[column].str.contains("%", literal=True)).unique().to_list()
        if encoded:
            mapping = {value: unquote_plus(value) for value in encoded}
            decoded.append(pl.col(column).replace(mapping))
    return frame.with_columns(decoded) if decoded else frame


# --- the stage -----------------------------------------------------------------------


# What the URL-derived columns read: computed once per distinct combination, not per row.
_URL_INPUTS = ("page_url", "landing_page", "page_referrer", "utm_medium")


def from_urls(events: pl.DataFrame) -> pl.DataFrame:
    """_URL_INPUTS → `url_utm_*` (each UTM field as the page or landing URL gives it) and
    `referrer_medium` (given the client's utm_medium, else the URL's), one row per distinct
    combination of _URL_INPUTS in `events`.

    Why per distinct combination: a batch's events come from a few pages and referrers, and
    these are a dozen regular expressions over each URL, the costliest step of enrichment."""
    distinct = events.select(_URL_INPUTS).unique()
    in_urls = _decode(
        distinct.select(
            pl.coalesce(query_param(pl.col("page_url"), name), query_param(pl.col("landing_page"), name)).alias(name)
            for name in UTM_FIELDS
        ),
        UTM_FIELDS,
    )
    return distinct.hstack(in_urls.select(pl.all().name.prefix("url_"))).with_columns(
        referrer_medium(
            pl.col("page_referrer"),
            pl.col("page_url"),
            pl.col("landing_page"),
            pl.coalesce("utm_medium", "url_utm_medium"),
        ).alias("referrer_medium")
    )


def enrich(events: pl.DataFrame, enrichment: Enrichment | None = None) -> pl.DataFrame:
    """Canonical valid events → the same rows with ENRICHED_COLUMNS and utm_* filled, `ip` dropped."""
    enrichment = enrichment or Enrichment()
    ip = pl.col("ip")
    country = pl.lit(None, dtype=pl.String)
    if enrichment.geoip_db is not None:
        country = ip.replace_strict(countries(events["ip"], enrichment.geoip_db), default=None, return_dtype=pl.String)
    return (
        events.lazy()
        .join(from_urls(events).lazy(), on=_URL_INPUTS, how="left", nulls_equal=True, maintain_order="left")
        # The client's own attribution wins, field by field, over what the URLs say.
        .with_columns(pl.coalesce(name, f"url_{name}") for name in UTM_FIELDS)
        .drop(*(f"url_{name}" for name in UTM_FIELDS))
        .join(user_agents(events["user_agent"]).lazy(), on="user_agent", how="left", maintain_order="left")
        .with_columns(
            pl.when(ip.str.contains(":", literal=True))
            .then(ip.replace_strict(ipv6_prefixes(events["ip"].drop_nulls()), default=None, return_dtype=pl.String))
            .otherwise(ipv4_prefix(ip))
            .alias("ip_prefix"),
            country.alias("country"),
        )
        .drop("ip")
        .collect(engine=ENGINE)
    )
