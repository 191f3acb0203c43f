"""Prometheus adapter: range and instant queries through prometheus-api-client.

prometheus-api-client is synchronous (requests), so every call runs in `asyncio.to_thread`.
Its session normally retries 5xx with a back-off of several seconds; here the retries are cut
to one immediate reconnect so that an outage fails fast.
Every SDK or transport failure becomes `IntegrationError(system="prometheus")`.

Timeouts: each call has one deadline, `timeout` seconds after it was made. A call still waiting
for a worker thread at its deadline is never sent; a request that is sent gets what is left as
its connect and read timeout (the session's adapter enforces a bound on every request, whatever
the SDK passes), so at the deadline the connection is closed and Prometheus, which cancels a
query whose client has gone, stops evaluating it. Prometheus is also given a `timeout=`
parameter a little shorter than that, so it gives up on its own and says so. The caller stops
waiting at the deadline in any case.
"""

from __future__ import annotations

import ast
import asyncio
import json
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import requests
from prometheus_api_client.exceptions import PrometheusApiClientException
from prometheus_api_client.prometheus_connect import PrometheusConnect
from requests.adapters import HTTPAdapter
from requests.models import PreparedRequest, Response
from urllib3.util.retry import Retry

from bot.core.clusters import ClusterCatalog, UnknownClusterError
from bot.core.errors import IntegrationError

SYSTEM = "prometheus"

#: Prometheus refuses range queries with more points than this per series.
MAX_POINTS = 11_000
#: choose_step aims for at most this many points per series (and at least half of it).
TARGET_POINTS = 600
#: "Nice" steps in seconds; each is at most twice the previous one.
_NICE_STEPS: tuple[int, ...] = (
    1, 2, 3, 5, 10, 15, 20, 30,
    60, 120, 180, 300, 600, 900, 1200, 1800,
    3600, 7200, 10800, 21600, 43200, 86400,
)  # fmt: skip
_DAY = 86400
_MAX_MESSAGE = 300
#: Prometheus is asked to give up after this share of the time left, so its own "timeout"
#: error arrives before the client's.
_SERVER_SHARE = 0.8
#: A call with less time than this left is not sent at all.
_MIN_REQUEST_S = 0.05
#: How much longer than the deadline the caller waits for the worker thread to report.
_GRACE_S = 0.25

_STATUS_RE = re.compile(r"HTTP Status Code (\d{3}) \((.*)\)\s*$", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Series:
    """One time series of a range query. `points` are (unix seconds, value) pairs.

    Values are floats parsed from Prometheus' strings; "NaN", "+Inf" and "-Inf" become
    `math.nan`, `math.inf` and `-math.inf` (the renderer draws non-finite values as gaps).
    """

    labels: dict[str, str]
    points: list[tuple[float, float]]


@dataclass(frozen=True, slots=True)
class Sample:
    """One value of an instant query. A scalar result has empty labels."""

    labels: dict[str, str]
    timestamp: float
    value: float


def choose_step(start: datetime, end: datetime) -> float:
    """A query_range step (seconds) giving between ~300 and 600 points, never below 1 s.

    Steps are "nice" values (1 s, 15 s, 1 min, 5 min, 1 h, ...; whole days beyond a day), so
    graphs of neighbouring windows line up. The result always keeps (end-start)/step far below
    Prometheus' 11,000 points limit.
    """
    span = (end - start).total_seconds()
    if span <= 0:
        return 1.0
    minimum = span / TARGET_POINTS
    for step in _NICE_STEPS:
        if step >= minimum:
            return float(step)
    return float(math.ceil(minimum / _DAY) * _DAY)


def _format_step(step: float) -> str:
    text = f"{step:.3f}".rstrip("0").rstrip(".")
    return text or "0"


def _to_float(raw: object) -> float:
    # float() understands Prometheus' "NaN", "+Inf" and "-Inf".
    if isinstance(raw, str | int | float):
        return float(raw)
    raise ValueError(f"not a number: {raw!r}")


def _labels(raw: object) -> dict[str, str]:
    if not isinstance(raw, Mapping):
        raise ValueError("metric is not an object")
    return {str(key): str(value) for key, value in raw.items()}


def _point(raw: object) -> tuple[float, float]:
    if not isinstance(raw, list | tuple) or len(raw) != 2:
        raise ValueError(f"not a [timestamp, value] pair: {raw!r}")
    return _to_float(raw[0]), _to_float(raw[1])


def parse_matrix(result: object) -> list[Series]:
    """Convert the `data.result` of a range query into Series (raises ValueError if malformed)."""
    if not isinstance(result, list):
        raise ValueError("result is not a list")
    series: list[Series] = []
    for item in result:
        if not isinstance(item, Mapping):
            raise ValueError("series is not an object")
        values = item.get("values")
        if not isinstance(values, list):
            raise ValueError("series has no values")
        series.append(Series(labels=_labels(item.get("metric", {})), points=[_point(v) for v in values]))
    return series


def parse_instant(result: object) -> list[Sample]:
    """Convert the `data.result` of an instant query (vector or scalar) into Samples."""
    if not isinstance(result, list):
        raise ValueError("result is not a list")
    if len(result) == 2 and not isinstance(result[0], Mapping):
        # A scalar (or string) result is a bare [timestamp, "value"] pair.
        timestamp, value = _point(result)
        return [Sample(labels={}, timestamp=timestamp, value=value)]
    samples: list[Sample] = []
    for item in result:
        if not isinstance(item, Mapping):
            raise ValueError("sample is not an object")
        if "value" not in item:
            raise ValueError("the query returned a range vector; an instant query needs an instant vector")
        timestamp, value = _point(item["value"])
        samples.append(Sample(labels=_labels(item.get("metric", {})), timestamp=timestamp, value=value))
    return samples


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


def error_from_sdk(exc: PrometheusApiClientException) -> IntegrationError:
    """Turn prometheus-api-client's "HTTP Status Code 400 (b'{...}')" into an IntegrationError.

    The status and Prometheus' `errorType`/`error` are only available inside the message text,
    so they are parsed from it: message "bad_data: 1:5: parse error: ...", status 400.
    """
    text = str(exc)
    match = _STATUS_RE.match(text)
    if match is None:
        return IntegrationError(SYSTEM, _short(text) or type(exc).__name__)
    status = int(match.group(1))
    body_repr = match.group(2)
    try:
        body = ast.literal_eval(body_repr)
    except (ValueError, SyntaxError):
        body = body_repr
    body_text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    try:
        payload = json.loads(body_text)
    except ValueError:
        payload = None
    if isinstance(payload, Mapping) and ("errorType" in payload or "error" in payload):
        error_type = str(payload.get("errorType") or "error")
        detail = str(payload.get("error") or "")
        message = f"{error_type}: {detail}" if detail else error_type
    else:
        message = f"HTTP {status}: {body_text}" if body_text.strip() else f"HTTP {status}"
    return IntegrationError(SYSTEM, _short(message), status=status)


def _error_from_transport(exc: requests.RequestException) -> IntegrationError:
    if isinstance(exc, requests.Timeout):
        return IntegrationError(SYSTEM, "request timed out")
    if isinstance(exc, requests.ConnectionError):
        return IntegrationError(SYSTEM, "cannot connect (connection refused or reset)")
    return IntegrationError(SYSTEM, _short(f"{type(exc).__name__}: {exc}"))


def _require_aware(name: str, moment: datetime) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")


def _no_retry() -> Retry:
    # One immediate reconnect for a refused connection; no retries on status codes (5xx
    # comes back as a response and is reported), no back-off. read=False re-raises a read
    # timeout as itself (requests.ReadTimeout) instead of wrapping it as a ConnectionError.
    return Retry(
        total=1,
        connect=1,
        read=False,
        status=0,
        other=0,
        redirect=0,
        status_forcelist=(),
        backoff_factor=0,
        raise_on_status=False,
        respect_retry_after_header=False,
    )


def _bounded(timeout: float | tuple[float | None, float | None] | None, most: float) -> tuple[float, float]:
    """requests' (connect, read) timeout, each at most `most` seconds."""
    if timeout is None:
        return most, most
    if isinstance(timeout, tuple):
        connect, read = timeout
        return min(connect or most, most), min(read or most, most)
    return min(timeout, most), min(timeout, most)


class _BoundedAdapter(HTTPAdapter):
    """An adapter that never lets a request wait longer than `most` seconds per connect or
    read, even when the caller passes no timeout (or a longer one)."""

    def __init__(self, most: float) -> None:
        super().__init__(max_retries=_no_retry())
        self.most = most

    def send(
        self,
        request: PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float | None, float | None] | None = None,
        verify: bool | str = True,
        cert: Any = None,
        proxies: dict[str, str] | None = None,
    ) -> Response:
        return super().send(
            request,
            stream=stream,
            timeout=_bounded(timeout, self.most),
            verify=verify,
            cert=cert,
            proxies=proxies,
        )


class _Expired(Exception):
    """The call's deadline passed before a worker thread could send it."""


def _server_timeout(seconds: float) -> str:
    # Prometheus durations take integers with units only ("4000ms", not "4.0s").
    return f"{max(round(seconds * 1000 * _SERVER_SHARE), 100)}ms"


class PrometheusMetrics:
    """Async facade over `PrometheusConnect` (each call runs in a worker thread).

    `timeout` (seconds) is the deadline of each call, from the moment it is made: see the
    module docstring for how the request, Prometheus and the caller each stop at it.
    """

    def __init__(self, url: str, timeout: float = 10) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.url = url.rstrip("/")
        self.timeout = timeout
        session = requests.Session()
        adapter = _BoundedAdapter(timeout)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        self._session = session
        self._client = PrometheusConnect(
            url=self.url,
            retry=_no_retry(),
            session=session,
            # The SDK annotates timeout as int; requests takes a float.
            timeout=cast(Any, timeout),
        )
        # The SDK mounts an adapter of its own on its URL, which would win over the ones
        # above for every query: put the bounded one back in its place.
        session.mount(self.url, adapter)

    async def query_range(
        self, query: str, start: datetime, end: datetime, step_seconds: float | None = None
    ) -> list[Series]:
        """Evaluate `query` over [start, end]; the step defaults to `choose_step(start, end)`."""
        _require_aware("start", start)
        _require_aware("end", end)
        if end < start:
            raise ValueError("end must not be before start")
        step = choose_step(start, end) if step_seconds is None else step_seconds
        if step <= 0:
            raise ValueError("step_seconds must be positive")
        result = await self._call(
            self._client.custom_query_range, query, start_time=start, end_time=end, step=_format_step(step)
        )
        try:
            return parse_matrix(result)
        except ValueError as exc:
            raise IntegrationError(SYSTEM, _short(f"unexpected query_range result: {exc}")) from exc

    async def query_instant(self, query: str, at: datetime | None = None) -> list[Sample]:
        """Evaluate `query` at `at` (Prometheus' "now" when None)."""
        params: dict[str, str] = {}
        if at is not None:
            _require_aware("at", at)
            params["time"] = f"{at.timestamp():.3f}"
        result = await self._call(self._client.custom_query, query, params=params)
        try:
            return parse_instant(result)
        except ValueError as exc:
            raise IntegrationError(SYSTEM, _short(f"unexpected query result: {exc}")) from exc

    async def _call(
        self, method: Any, query: str, params: dict[str, str] | None = None, **kwargs: Any
    ) -> object:
        deadline = time.monotonic() + self.timeout

        def send() -> object:
            left = deadline - time.monotonic()
            if left < _MIN_REQUEST_S:
                raise _Expired
            bounded = {**(params or {}), "timeout": _server_timeout(left)}
            return method(query, params=bounded, timeout=cast(Any, left), **kwargs)

        try:
            async with asyncio.timeout(self.timeout + _GRACE_S):
                result: object = await asyncio.to_thread(send)
        except (_Expired, TimeoutError) as exc:
            raise IntegrationError(SYSTEM, f"request timed out after {self.timeout:g}s") from exc
        except PrometheusApiClientException as exc:
            raise error_from_sdk(exc) from exc
        except requests.RequestException as exc:
            # Includes requests' JSONDecodeError for a 200 that is not JSON.
            raise _error_from_transport(exc) from exc
        except (KeyError, TypeError) as exc:
            # A 200 whose JSON lacks data.result (not a Prometheus API).
            raise IntegrationError(SYSTEM, _short(f"unexpected response: {exc!r}")) from exc
        return result

    def close(self) -> None:
        """Release the HTTP connection pool."""
        self._client.close()


# ---------------------------------------------------------------- one per cluster


class PrometheusSources:
    """Which Prometheus answers for which cluster.

    An organisation with several clusters usually runs a Prometheus in each: the graphs, runbook
    checks, verification and investigation of an alert must read the one of the cluster the alert
    came from, or a prod incident would be judged by dev's numbers. `clusters.yaml` names a
    cluster's Prometheus (``prometheus_url``); ``PROMETHEUS_URL`` answers for every other cluster
    and for alerts naming a cluster that is not listed (they are only read, never acted on), which
    suits a global query layer such as Thanos or Mimir.
    """

    def __init__(
        self,
        catalog: ClusterCatalog,
        default: PrometheusMetrics | None,
        per_cluster: Mapping[str, PrometheusMetrics] | None = None,
    ) -> None:
        self.catalog = catalog
        self.default = default
        self.per_cluster = dict(per_cluster or {})

    @classmethod
    def connect(
        cls, catalog: ClusterCatalog, default_url: str | None, *, timeout: float
    ) -> PrometheusSources:
        """One client per distinct URL (clusters sharing a Prometheus share its connections)."""
        by_url: dict[str, PrometheusMetrics] = {}

        def client(url: str) -> PrometheusMetrics:
            key = url.rstrip("/")
            if key not in by_url:
                by_url[key] = PrometheusMetrics(key, timeout=timeout)
            return by_url[key]

        default = client(default_url) if default_url else None
        per_cluster = {
            name: client(spec.prometheus_url)
            for name, spec in catalog.clusters.items()
            if spec.prometheus_url is not None
        }
        return cls(catalog, default, per_cluster)

    @property
    def configured(self) -> bool:
        """Some Prometheus is configured (graphs and checks are on)."""
        return self.default is not None or bool(self.per_cluster)

    @property
    def urls(self) -> list[str]:
        """Every configured Prometheus (an alert's generatorURL may point at any of them)."""
        found = [self.default.url] if self.default is not None else []
        found += [c.url for c in self.per_cluster.values()]
        return list(dict.fromkeys(found))

    def for_cluster(self, name: str | None) -> PrometheusMetrics | None:
        """The Prometheus of a cluster (or of a host's run: `PROMETHEUS_URL`)."""
        if name is not None and name in self.per_cluster:
            return self.per_cluster[name]
        return self.default

    def for_labels(self, labels: Mapping[str, str] | None) -> PrometheusMetrics | None:
        """The Prometheus of the cluster an alert with these labels came from."""
        try:
            return self.for_cluster(self.catalog.select(labels))
        except UnknownClusterError:
            return self.default

    def close(self) -> None:
        """Release every client's connections."""
        seen: set[int] = set()
        for client in [self.default, *self.per_cluster.values()]:
            if client is not None and id(client) not in seen:
                seen.add(id(client))
                client.close()
