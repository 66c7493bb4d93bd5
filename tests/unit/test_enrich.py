"""Enrichment on small hand-made frames: user agents, UTM, referrer medium, IP prefix, country."""

from pathlib import Path

import polars as pl
import pytest
from crawlerdetect import CrawlerDetect
from hypothesis import given, settings
from hypothesis import strategies as st
from mmdb_writer import MMDBWriter
from netaddr import IPSet
from polars.testing import assert_frame_equal

from orchestration.processing.enrich import Enrichment, crawlers, enrich, ipv4_prefix, referrer_medium
from tributary import contract

CHROME_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
)
IPHONE_SAFARI = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko)"
    " Version/17.1 Mobile/15E148 Safari/604.1"
)
IPAD_SAFARI = (
    "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko)"
    " Version/16.6 Mobile/15E148 Safari/604.1"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


def events(*rows: dict) -> pl.DataFrame:
    """Canonical valid events: every column null unless the row sets it."""
    return pl.DataFrame(
        [{"landing_id": i, **row} for i, row in enumerate(rows, 1)],
        schema=contract.CANONICAL_SCHEMA,
    )


def test_user_agents_become_browser_os_device_type_and_bot_flag():
    enriched = enrich(
        events(
            {"user_agent": CHROME_WINDOWS},
            {"user_agent": IPHONE_SAFARI},
            {"user_agent": IPAD_SAFARI},
            {"user_agent": GOOGLEBOT},
            {"user_agent": CHROME_WINDOWS},
            {"user_agent": None},
        )
    )
    assert_frame_equal(
        enriched.select("browser", "browser_version", "os", "device", "device_type", "is_bot"),
        pl.DataFrame(
            {
                "browser": ["Chrome", "Mobile Safari", "Mobile Safari", "Googlebot", "Chrome", None],
                "browser_version": ["120.0.0", "17.1", "16.6", "2.1", "120.0.0", None],
                "os": ["Windows", "iOS", "iOS", None, "Windows", None],
                "device": [None, "iPhone", "iPad", None, None, None],
                "device_type": ["desktop", "mobile", "tablet", "bot", "desktop", None],
                "is_bot": [False, False, False, True, False, None],
            }
        ),
    )


def test_a_crawler_ua_parser_does_not_know_is_still_a_bot():
    enriched = enrich(events({"user_agent": "python-requests/2.31.0"}, {"user_agent": "curl/8.4.0"}))
    assert enriched["is_bot"].to_list() == [True, True]
    assert enriched["device_type"].to_list() == ["bot", "bot"]


def test_the_enriched_frame_keeps_its_rows_and_drops_the_full_ip():
    frame = events({"user_agent": GOOGLEBOT, "ip": "198.51.100.7"}, {"user_agent": CHROME_WINDOWS})
    enriched = enrich(frame)
    assert "ip" not in enriched.columns
    assert enriched["landing_id"].to_list() == [1, 2]
    assert_frame_equal(enriched.select(frame.drop("ip").columns), frame.drop("ip"))


def test_utm_from_attribution_wins_over_the_url_field_by_field():
    enriched = enrich(
        events(
            {
                "utm_source": "newsletter",
                "page_url": "https://shop.example/p?utm_source=google&utm_medium=cpc&utm_campaign=spring%20sale",
            },
            {
                "page_url": "https://shop.example/p?x=1",
                "landing_page": "https://shop.example/?utm_source=bing&utm_term=red+shoes",
            },
            {"page_url": "https://shop.example/p?utm_source=&utm_content=ad%2F1#utm_medium=no"},
        )
    )
    assert_frame_equal(
        enriched.select("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content"),
        pl.DataFrame(
            {
                "utm_source": ["newsletter", "bing", None],
                "utm_medium": ["cpc", None, None],
                "utm_campaign": ["spring sale", None, None],
                "utm_term": [None, "red shoes", None],
                "utm_content": [None, None, "ad/1"],
            }
        ),
    )


@pytest.mark.parametrize(
    ("referrer", "page_url", "landing_page", "utm_medium", "medium"),
    [
        (None, "https://shop.example/", None, None, "direct"),
        ("", "https://shop.example/", None, None, "direct"),
        ("https://shop.example/cart", "https://shop.example/pay", None, None, "internal"),
        ("https://www.shop.example/cart", "https://shop.example/pay", None, None, "internal"),
        ("https://www.google.co.uk/search?q=x", "https://shop.example/", None, None, "search"),
        ("https://duckduckgo.com/", "https://shop.example/", None, None, "search"),
        ("https://t.co/abc", "https://shop.example/", None, None, "social"),
        ("https://l.facebook.com/l.php", "https://shop.example/", None, None, "social"),
        ("https://mail.google.com/mail/u/0", "https://shop.example/", None, None, "email"),
        (None, "https://shop.example/", None, "Email", "email"),
        ("https://www.google.com/", "https://shop.example/?gclid=abc", None, None, "paid"),
        (None, "https://shop.example/p", "https://shop.example/?msclkid=1", None, "paid"),
        ("https://www.google.com/", "https://shop.example/", None, "cpc", "paid"),
        (None, "https://shop.example/", None, "social", "social"),
        ("https://blog.other.org/post", "https://shop.example/", None, None, "other"),
    ],
)
def test_referrer_medium_names_where_a_visit_came_from(referrer, page_url, landing_page, utm_medium, medium):
    frame = pl.DataFrame(
        {"r": [referrer], "p": [page_url], "l": [landing_page], "m": [utm_medium]},
        schema={"r": pl.String, "p": pl.String, "l": pl.String, "m": pl.String},
    )
    expression = referrer_medium(pl.col("r"), pl.col("p"), pl.col("l"), pl.col("m")).alias("medium")
    assert frame.select(expression)["medium"].item() == medium


def test_ipv4_keeps_its_slash_24_and_ipv6_its_slash_48():
    enriched = enrich(
        events(
            {"ip": "203.0.113.77"},
            {"ip": "2001:db8:85a3:1234:5678:8a2e:370:7334"},
            {"ip": "2001:DB8::1"},
            {"ip": "::ffff:198.51.100.9"},
            {"ip": "not-an-ip"},
            {"ip": "300.1.2.3"},
            {"ip": None},
        )
    )
    assert enriched["ip_prefix"].to_list() == [
        "203.0.113.0/24",
        "2001:db8:85a3::/48",
        "2001:db8::/48",
        "198.51.100.0/24",
        None,
        None,
        None,
    ]


def test_ipv4_prefix_is_an_expression():
    frame = pl.DataFrame({"ip": ["10.1.2.3", "10.1.2"]})
    assert frame.select(ipv4_prefix(pl.col("ip")))["ip"].to_list() == ["10.1.2.0/24", None]


@pytest.fixture(scope="module")
def geoip_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny MaxMind database: two IPv4 networks and one IPv6 network."""
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-Country")
    writer.insert_network(IPSet(["81.2.69.0/24"]), {"country": {"iso_code": "GB"}})
    writer.insert_network(IPSet(["89.160.20.0/24"]), {"registered_country": {"iso_code": "SE"}})
    writer.insert_network(IPSet(["2a02:cf40::/32"]), {"country": {"iso_code": "NO"}})
    path = tmp_path_factory.mktemp("geoip") / "tiny.mmdb"
    writer.to_db_file(str(path))
    return path


def test_country_comes_from_the_offline_database_when_one_is_configured(geoip_db: Path):
    frame = events(
        {"ip": "81.2.69.160"}, {"ip": "89.160.20.112"}, {"ip": "2a02:cf40:1::1"}, {"ip": "192.0.2.1"}, {"ip": "nope"}
    )
    assert enrich(frame, Enrichment(geoip_db=geoip_db))["country"].to_list() == ["GB", "SE", "NO", None, None]
    assert enrich(frame)["country"].to_list() == [None] * 5


# Real agents of each kind, and the edge cases of crawlerdetect's rule: an excluded phrase
# removed first, Yandex's look-ahead (YandexBot is a bot, YandexSearch is not), blanks.
AGENTS = [
    CHROME_WINDOWS,
    IPHONE_SAFARI,
    IPAD_SAFARI,
    GOOGLEBOT,
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
    "Mozilla/5.0 (Linux; Android 10) AppleWebKit/537.36 (KHTML, like Gecko) YandexSearch/8.10 Mobile Safari/537.36",
    "Yandex",
    "curl/8.4.0",
    "python-requests/2.31.0",
    "Go-http-client/1.1",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Safari/605.1.15",
    "Mozilla/5.0 (compatible; MSIE 10.0; Windows NT 6.1; Trident/6.0)",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) GSA/300.0 Mobile/15E148",
    "Dalvik/2.1.0 (Linux; U; Android 13; SM-S911B Build/TP1A.220624.014)",
    "okhttp/4.12.0",
    "Java/17.0.2",
    "WhatsApp/2.23.20.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0",
    "   ",
    "",
    "Safari",
]


@pytest.mark.parametrize("agent", AGENTS)
def test_bot_detection_agrees_with_crawlerdetect(agent):
    assert crawlers(pl.Series([agent])).to_list() == [CrawlerDetect().is_crawler(agent)]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(AGENTS) | st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126)), max_size=20
    )
)
def test_bot_detection_agrees_with_crawlerdetect_on_any_ascii_text(agents):
    """One vectorised pass over the batch's agents, the same verdicts as the library's own."""
    detector = CrawlerDetect()
    assert crawlers(pl.Series(agents, dtype=pl.String)).to_list() == [detector.is_crawler(a) for a in agents]
