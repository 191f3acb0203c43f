"""The PromQL scanner and the cost checks a query passes before it reaches Prometheus."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest

from bot.config.playbooks import load_playbooks
from bot.core.errors import UserError
from bot.core.playbooks import Graph, Playbook
from bot.core.promql import (
    Limits,
    QueryGuard,
    QueryRefused,
    ScanError,
    TokenKind,
    TrustedHosts,
    format_seconds,
    playbook_warnings,
    query_problems,
    scan,
)

REPRO = 'count(last_over_time({job=~".+"}[7d:100ms]))'
LIMITS = Limits()
NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def kinds(expr: str) -> list[TokenKind]:
    return [t.kind for t in scan(expr)]


# --------------------------------------------------------------------------- the scanner


def test_scan_splits_a_query_into_tokens() -> None:
    tokens = scan('sum by (job) (rate(http_requests_total{code=~"5.."}[5m])) > 0.5')
    assert [t.kind for t in tokens] == [
        TokenKind.IDENT,
        TokenKind.IDENT,
        TokenKind.LPAREN,
        TokenKind.IDENT,
        TokenKind.RPAREN,
        TokenKind.LPAREN,
        TokenKind.IDENT,
        TokenKind.LPAREN,
        TokenKind.IDENT,
        TokenKind.SELECTOR,
        TokenKind.RANGE,
        TokenKind.RPAREN,
        TokenKind.RPAREN,
        TokenKind.OP,
        TokenKind.NUMBER,
    ]
    selector = tokens[9]
    assert [(m.name, m.op, m.value) for m in selector.matchers] == [("code", "=~", "5..")]
    assert tokens[10].range_seconds == 300 and not tokens[10].subquery


def test_scan_reads_subqueries_and_durations() -> None:
    [*_, sub, _close] = scan("max_over_time(rate(x[5m])[1h30m:15s])")
    assert sub.kind is TokenKind.RANGE and sub.subquery
    assert (sub.range_seconds, sub.resolution_seconds) == (5400, 15)
    [*_, default_res, _] = scan("max_over_time(x[1h:])")
    assert default_res.subquery and default_res.resolution_seconds is None
    [*_, millis] = scan("x[7d:100ms]")
    assert (millis.range_seconds, millis.resolution_seconds) == (7 * 86400, 0.1)


def test_brackets_braces_and_comments_inside_strings_are_data() -> None:
    tokens = scan('up{job="a}[7d:1ms]#", path=\'x{y}\', raw=~`\\d+`} # {job=~".+"}[30d]\n + 1')
    assert [t.kind for t in tokens] == [TokenKind.IDENT, TokenKind.SELECTOR, TokenKind.OP, TokenKind.NUMBER]
    assert [(m.name, m.value) for m in tokens[1].matchers] == [
        ("job", "a}[7d:1ms]#"),
        ("path", "x{y}"),
        ("raw", "\\d+"),
    ]


def test_escaped_quotes_do_not_end_a_string() -> None:
    [_, selector] = scan(r'up{job="say \"hi\"]"}')
    assert selector.matchers[0].value == r"say \"hi\"]"


def test_quoted_metric_name_and_name_matcher() -> None:
    [selector] = scan('{"http.requests", job="x"}')
    assert [(m.name, m.op, m.value) for m in selector.matchers] == [
        ("__name__", "=", "http.requests"),
        ("job", "=", "x"),
    ]


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ('up{job="x}', "string"),
        ("rate(x[5m]", "parenthes"),
        ("rate(x[5m]))", "parenthes"),
        ("x[5x]", "duration"),
        ("x[]", "duration"),
        ("x[5m", "bracket"),
        ("up{job}", "matcher"),
        ('up{job="x" foo="y"}', "matcher"),
        ("up{job=x}", "matcher"),
        ("x[1h:5m:1s]", "duration"),
    ],
)
def test_unreadable_queries_are_scan_errors(expr: str, message: str) -> None:
    with pytest.raises(ScanError, match=message):
        scan(expr)


def test_format_seconds() -> None:
    assert [format_seconds(s) for s in (0.1, 1, 90, 3600, 86400, 7 * 86400, 5400)] == [
        "100ms",
        "1s",
        "90s",
        "1h",
        "24h",
        "7d",
        "90m",
    ]


# --------------------------------------------------------------------------- the checks


def test_the_reported_query_is_refused_with_every_reason() -> None:
    problems = query_problems(REPRO, LIMITS, step_seconds=60)
    text = " ".join(problems)
    assert "no metric name" in text
    assert "100ms" in text and "finer than the graph's step (1m)" in text
    assert "7d" in text and "24h" in text
    assert "points" in text  # 7d at 100ms is millions of points per series


@pytest.mark.parametrize(
    "expr",
    [
        "up",
        "vector(1)",
        "time() - process_start_time_seconds",
        'rate(http_requests_total{service="api", status=~"5.."}[5m]) / rate(http_requests_total[5m])',
        "sum by (job) (rate(x_total[5m]))",
        "histogram_quantile(0.99, sum(rate(x_bucket[5m])) by (le, path))",
        "a and on(job) group_left(instance) b",
        "x > bool 1",
        "up offset 1h",
        "rate(x[5m]) offset -1h",
        "up @ end()",
        "rate(x[5m] @ start())",
        '{__name__="up", job="api"}',
        "rate(a[20h]) / rate(b[20h])",
        "max_over_time(rate(x[1h])[23h:5m])",
        "max_over_time(x[1h:])",
        "sum(increase(ai_api_cost_usd_total[24h]))",
        'x # a comment with {job=~".+"}[30d]\n',
        "-x",
        "0x1f + 1e-3 + .5 + Inf",
    ],
)
def test_ordinary_queries_pass(expr: str) -> None:
    assert query_problems(expr, LIMITS, step_seconds=60) == []


@pytest.mark.parametrize(
    ("expr", "reason"),
    [
        ('{job=~".+"}', "no metric name"),
        ('{job="api"}', "no metric name"),
        ('{__name__!="up"}', "no metric name"),
        ('{__name__=""}', "no metric name"),
        ('{__name__=~"up|down"}', "`__name__` by a regular expression"),
        ('up{__name__!~"x"}', "`__name__` by a regular expression"),
        ('up and {job="x"}', "no metric name"),
        ('sum(x) {job="y"}', "no metric name"),
        ("up offset 2d", "looks back 2d"),
        ("rate(x[23h] offset 2h)", "looks back 25h"),
        ("max_over_time(rate(x[2h])[23h:5m])", "looks back 25h"),
        ("x[25h]", "looks back 25h"),
        ("up @ 1609746000", "`@ <time>`"),
        ("up @ -5", "`@ <time>`"),
        ("max_over_time(x[24h:1s])", "86400 points"),
        ("max_over_time(x[1h:5s])", "finer than the graph's step"),
    ],
)
def test_costly_queries_are_refused(expr: str, reason: str) -> None:
    problems = query_problems(expr, LIMITS, step_seconds=10)
    assert problems and reason in " ".join(problems)


def test_the_step_check_applies_to_range_queries_only() -> None:
    assert query_problems("max_over_time(x[1h:5s])", LIMITS, step_seconds=None) == []
    assert query_problems("max_over_time(x[1h:5s])", LIMITS, step_seconds=5) == []
    assert query_problems("max_over_time(x[1h:5s])", LIMITS, step_seconds=6)


def test_the_maximum_lookback_is_configurable() -> None:
    wide = Limits(max_lookback_seconds=8 * 86400)
    assert query_problems("x offset 7d", wide, step_seconds=None) == []
    assert query_problems("x offset 7d", LIMITS, step_seconds=None)


def test_unreadable_queries_are_refused_not_sent() -> None:
    [problem] = query_problems("rate(x[5m]", LIMITS, step_seconds=None)
    assert "cannot read" in problem


def test_refusals_are_safe_to_show_in_slack() -> None:
    problems = query_problems('{job=~"<!channel> <https://evil|x>"}', LIMITS, step_seconds=None)
    assert "<!channel>" in " ".join(problems)  # plain text, for logs and for escaping once
    text = str(QueryRefused(problems))
    assert "<!channel>" not in text and "<https" not in text
    assert "&lt;!channel&gt;" in text
    long = query_problems(
        "{" + ", ".join(f'l{i}="{"v" * 50}"' for i in range(40)) + "}", LIMITS, step_seconds=None
    )
    assert all(len(p) < 400 for p in long)


# --------------------------------------------------------------------------- trusted hosts


def test_trusted_hosts_match_host_and_port() -> None:
    hosts = TrustedHosts.parse("http://prometheus:9090", "prom.example.com, 10.0.0.5:9090,[::1]:9090")
    assert hosts.allows("http://prometheus:9090/graph?g0.expr=up")
    assert hosts.allows("https://PROM.example.com/graph?g0.expr=up")
    assert hosts.allows("https://prom.example.com:8443/graph")  # no port in the entry: any port
    assert hosts.allows("http://10.0.0.5:9090/graph")
    assert hosts.allows("http://[::1]:9090/graph")
    for url in (
        "http://prometheus:9091/graph",
        "http://evil.example/graph",
        "http://prometheus:9090@evil.example/graph",
        "http://prom.example.com.evil.example/graph",
        "javascript:alert(1)//prometheus:9090",
        "ftp://prometheus:9090/",
        "http://10.0.0.5/graph",
        "",
        "http://[::1/graph",
    ):
        assert not hosts.allows(url), url


def test_default_ports_count_for_urls_without_one() -> None:
    hosts = TrustedHosts.parse("https://prom.example.com:443", "http://am:80")
    assert hosts.allows("https://prom.example.com/graph")
    assert hosts.allows("http://am/#/alerts")
    assert not TrustedHosts().allows("http://anything/")


@pytest.mark.parametrize("bad", ["http://", "prom example", "a:b:c", "host:99999", "user@host"])
def test_bad_host_entries_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="host"):
        TrustedHosts.parse(bad)


# --------------------------------------------------------------------------- the guard


def generator_url(host: str, expr: str) -> str:
    return f"http://{host}/graph?g0.expr={quote(expr)}&g0.tab=1"


GUARD = QueryGuard(LIMITS, TrustedHosts.parse("http://prometheus:9090"))


def test_alert_expression_from_a_configured_prometheus() -> None:
    url = generator_url("prometheus:9090", 'up{job="api"} == 0')
    assert GUARD.alert_expression(url) == 'up{job="api"} == 0'
    assert GUARD.source_problem(url) is None
    assert GUARD.source_problem("") is None


def test_alert_expression_from_another_host_is_refused() -> None:
    url = generator_url("evil.example:9090", "up")
    with pytest.raises(QueryRefused) as refused:
        GUARD.alert_expression(url)
    assert "evil.example:9090" in str(refused.value) and "PROMETHEUS_HOSTS" in str(refused.value)
    assert isinstance(refused.value, UserError)
    with pytest.raises(QueryRefused) as hostile:
        GUARD.alert_expression(generator_url("<!channel>:1", "up"))
    assert "<!channel>" not in str(hostile.value) and "&lt;!channel&gt;" in str(hostile.value)


def test_costly_alert_expression_is_refused_even_from_a_configured_host() -> None:
    with pytest.raises(QueryRefused, match="no metric name"):
        GUARD.alert_expression(generator_url("prometheus:9090", REPRO))
    with pytest.raises(QueryRefused, match="no expression"):
        GUARD.alert_expression("http://prometheus:9090/graph")


def test_windows_are_clamped_to_the_maximum_lookback() -> None:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert GUARD.clamp(epoch, NOW) == NOW - timedelta(hours=24)
    assert GUARD.clamp(NOW - timedelta(hours=2), NOW) == NOW - timedelta(hours=2)
    assert GUARD.clamp(NOW + timedelta(hours=1), NOW) == NOW
    GUARD.check_range(timedelta(hours=24))
    with pytest.raises(QueryRefused, match="7d is longer than the 24h maximum"):
        GUARD.check_range(timedelta(days=7))


def test_check_raises_with_the_reasons() -> None:
    GUARD.check("rate(x[5m])", step_seconds=60)
    with pytest.raises(QueryRefused) as refused:
        GUARD.check(REPRO, step_seconds=60)
    assert len(refused.value.reasons) >= 3


# --------------------------------------------------------------------------- playbooks


def test_bundled_playbooks_are_warning_free() -> None:
    assert playbook_warnings(load_playbooks(), LIMITS) == []


def test_costly_playbook_queries_are_warned_about_with_their_place() -> None:
    playbook = Playbook(
        name="costly",
        title="Costly",
        system="tests",
        graphs=[Graph(title="All", query='count({job=~".+"})')],
    )
    [warning] = playbook_warnings([playbook], LIMITS)
    assert warning.startswith("playbook costly, graph 1 (All):") and "no metric name" in warning
