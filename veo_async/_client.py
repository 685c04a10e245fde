"""``AsyncVeoClient``: configuration, submit / get / wait / generate / download.

One client wraps one ``httpx.AsyncClient``. The API key is added per API request (never set on
the shared HTTP client), so it cannot travel with a download to the video CDN, and API requests
never follow redirects, so it cannot travel to another host either.

Every API request goes through one boundary (:mod:`veo_async._boundary`): send, read the
body (capped), parse, under one wall-clock ``request_deadline``, every failure typed and
redacted there. This module decides what to do with the result: retry, pace after a 429, or
(for a create that cannot be proven unsent) raise :class:`CreateOutcomeUnknownError`.
"""

from __future__ import annotations

import logging
import os
import random
import weakref
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, overload

import anyio
import httpx
from pydantic import SecretStr

from . import _timing
from ._boundary import Exchange, parse_reply, redact_logs
from ._config import (
    DEFAULT_BASE_URL,
    check_limits,
    resolve_base_url,
    resolve_key,
    resolve_time_scale,
)
from ._download import DownloadedVideo, download_video
from ._exceptions import (
    APIStatusError,
    ConfigurationError,
    CreateOutcomeUnknownError,
    GenerationFailedError,
    RateLimitError,
    RequestValidationError,
    VeoError,
    WaitTimeoutError,
)
from ._loops import current_loop, loop_guard
from ._models import Generation, VideoRequest, build_request
from ._polling import PollPolicy
from ._ratelimit import RateGovernor
from ._retry import RetryConfig, RetryDecision, backoff_delay, decide
from ._transport import DirectAPI, open_http
from .instrumentation import NO_INSTRUMENTATION, Instrumentation, RequestKind, Span
from .polling import JobTiming, PollPlanner

if TYPE_CHECKING:
    from .batch import (
        Batch,
        BatchInput,
        BatchObserver,
        BatchOptions,
        DurableBatch,
        StoreOptions,
    )
    from .stores import JobStore, SharedBudget

__all__ = ["DEFAULT_BASE_URL", "ENDPOINTS", "AsyncVeoClient", "Endpoint"]

logger = logging.getLogger("veo_async")

Endpoint = Literal["universal", "google"]
#: Create/poll path per endpoint style: the universal path reaches every video model; the Google
#: vendor path is the one in the original Veo2 guide.
ENDPOINTS: Mapping[str, str] = {
    "universal": "/v2/video/generations",
    "google": "/v2/generate/video/google/generation",
}
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
DEFAULT_MAX_DOWNLOAD_BYTES = 2 * 1024**3
#: Wall-clock seconds for one API request: connect, send, the whole body, parse.
DEFAULT_REQUEST_DEADLINE = 60.0
#: Largest API (JSON) reply body read, after decoding; a status reply is well under 64 KiB.
DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024
UpdateCallback = Callable[[Generation], Awaitable[None] | None]


class AsyncVeoClient:
    """Async client for the AI/ML API's Google Veo video generation.

    Use it as an async context manager (``async with AsyncVeoClient() as client:``) so its
    connections are closed. Every option is keyword-only except the key:

    * ``api_key``: falls back to the ``AIMLAPI_KEY`` environment variable.
    * ``base_url``: falls back to ``AIMLAPI_BASE_URL``, then ``https://api.aimlapi.com``. Plain
      HTTP is refused for non-loopback hosts unless ``allow_insecure_http=True``.
    * ``endpoint``: ``"universal"`` (``/v2/video/generations``, every model; the default) or
      ``"google"`` (``/v2/generate/video/google/generation``, the Veo2 guide's path).
    * ``timeout``: seconds or an ``httpx.Timeout`` for each HTTP request.
    * ``retry``: a :class:`RetryConfig` (see ``veo_async._retry`` for which failures retry).
    * ``limits``: ``httpx.Limits`` for the connection pool of the client created here.
    * ``http_client``: your own ``httpx.AsyncClient`` (proxies, custom transports, sharing);
      it is not closed by this client.
    * ``requests_per_second``: an optional client-side rate shared by every request.
    * ``poll_policy``: the default :class:`PollPolicy` for ``wait`` and batches.
    * ``time_scale``: real seconds per service second, for a time-compressed emulator (falls
      back to the ``VEO_ASYNC_TIME_SCALE`` environment variable, then 1.0). It scales the default
      poll policy and the computed retry backoffs (a server's ``Retry-After`` is used as given),
      so the SDK's timing matches the emulator's ``--time-scale``.
    * ``fast_transport``: run httpx over aiohttp (httpx-aiohttp, a dependency on CPython) when
      on asyncio, with status requests sent to aiohttp directly: about a fifth of the client CPU
      per status request of httpx's own transport. ``None`` (the default) means "on asyncio
      when installed", ``False`` always httpx's own transport, ``True`` insists (an error if
      httpx-aiohttp is missing). Trio and a user's ``http_client`` always use httpx as given.
    * ``max_download_bytes``: the size cap for downloads.
    * ``request_deadline``: wall-clock seconds for one API request, from sending to the parsed
      body (default 60; ``None`` disables it). ``timeout`` limits each read; this limits the
      whole exchange, so a reply trickled a byte at a time still ends. A create whose deadline
      expires is of unknown outcome; a poll is retried.
    * ``max_response_bytes``: the largest API reply body read (default 1 MiB, after decoding);
      a longer one is an :class:`~veo_async.InvalidResponseError` (for a create: of unknown
      outcome) and is not read further.
    * ``instrumentation``: hooks that report spans and metrics (see
      :mod:`veo_async.instrumentation`; OpenTelemetry with
      ``veo_async.instrumentation.otel.OpenTelemetryInstrumentation``). Default: none, at no cost.
    * ``shared_budget``: a :class:`~veo_async.stores.SharedBudget` (``pip install
      'veo-async[redis]'``): one request budget in Redis for every process on this API key.
      Each request also waits for its token (after this client's own pacing); the pace the
      client learns from 429s is published to the other processes and a lower one they
      publish is adopted. asyncio only (the first request on trio raises
      :class:`ConfigurationError`). The client does not close it.

    One client belongs to one event loop: it is bound to the loop it is first used on, closes
    its connections when that loop shuts down, and raises ``RuntimeError`` if used on another.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | httpx.URL | None = None,
        endpoint: Endpoint = "universal",
        timeout: float | httpx.Timeout | None = None,
        retry: RetryConfig | None = None,
        limits: httpx.Limits | None = None,
        http_client: httpx.AsyncClient | None = None,
        requests_per_second: float | None = None,
        poll_policy: PollPolicy | None = None,
        time_scale: float | None = None,
        fast_transport: bool | None = None,
        allow_insecure_http: bool = False,
        max_download_bytes: int = DEFAULT_MAX_DOWNLOAD_BYTES,
        request_deadline: float | None = DEFAULT_REQUEST_DEADLINE,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        instrumentation: Instrumentation | None = None,
        shared_budget: SharedBudget | None = None,
    ) -> None:
        self._api_key = SecretStr(resolve_key(api_key))
        redact_logs(self._api_key.get_secret_value())
        url = resolve_base_url(base_url, allow_insecure_http)
        if endpoint not in ENDPOINTS:
            raise ConfigurationError(
                f"endpoint must be one of {sorted(ENDPOINTS)}, got {endpoint!r}"
            )
        check_limits(max_download_bytes, request_deadline, max_response_bytes)
        self.request_deadline = request_deadline
        #: The hooks that report spans and metrics (:data:`NO_INSTRUMENTATION` by default).
        self.instrumentation: Instrumentation = instrumentation or NO_INSTRUMENTATION
        self.max_response_bytes = max_response_bytes
        self.base_url = url
        self.endpoint: Endpoint = endpoint
        self.path = ENDPOINTS[endpoint]
        self._api_url: httpx.URL | None = None
        self._api_url_for: tuple[httpx.URL, str] | None = None
        self.timeout = (
            timeout
            if isinstance(timeout, httpx.Timeout)
            else (httpx.Timeout(timeout) if timeout is not None else DEFAULT_TIMEOUT)
        )
        self.retry = retry or RetryConfig()
        self.time_scale = time_scale = resolve_time_scale(time_scale)
        self.poll_policy = poll_policy or PollPolicy(time_scale=time_scale)
        self.max_download_bytes = max_download_bytes
        self.governor = RateGovernor(
            requests_per_second, time_scale=time_scale, shared_budget=shared_budget
        )
        self._limits = limits or httpx.Limits(max_connections=100, max_keepalive_connections=100)
        self._user_http = http_client
        self._http: httpx.AsyncClient | None = http_client
        self._direct: DirectAPI | None = None
        self._fast_transport = fast_transport
        self._rng = random.Random()
        self._closed = False
        self._loop: object | None = None
        self._loop_ended = False
        self._guard: Any = None
        #: Which transport is in use: "user", "httpx" or "aiohttp" (set on first use).
        self.transport_name: str | None = "user" if http_client is not None else None

    # ------------------------------------------------------------------ lifecycle

    def __repr__(self) -> str:
        # getattr: repr must work on a half-built client too (tracebacks with locals)
        base_url = getattr(self, "base_url", None)
        return (
            f"AsyncVeoClient(base_url={str(base_url)!r}, "
            f"endpoint={getattr(self, 'endpoint', None)!r}, api_key='**********')"
        )

    async def __aenter__(self) -> AsyncVeoClient:
        await self._http_here()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client this object created (a user-supplied one is left open)."""
        self._closed = True
        guard, self._guard = self._guard, None
        if self._http is not None and self._user_http is None:
            http, self._http = self._http, None
            with anyio.CancelScope(shield=True):
                if guard is not None and self._loop is current_loop():
                    await guard.aclose()  # (its finally sees the client closed: no-op)
                await http.aclose()

    def _check_loop(self) -> None:
        loop = current_loop()
        if loop is None or self._user_http is not None:
            return
        if self._loop is None:
            self._loop = loop
        elif loop is not self._loop:
            ended = (
                " (that loop has ended; its connections were closed with it)"
                if self._loop_ended
                else ""
            )
            raise RuntimeError(
                "this AsyncVeoClient was first used on another event loop"
                f"{ended}, and its HTTP connections belong to that loop; create one client per "
                "event loop, e.g. inside the function you pass to asyncio.run(), or use "
                "VeoClient for blocking code"
            )

    async def _http_here(self) -> httpx.AsyncClient:
        """The HTTP client, checked against the running loop (async entry points use this)."""
        http = self._ensure_http()
        if self._guard is None and self._user_http is None and self._loop is not None:
            self._guard = loop_guard(weakref.ref(self), http)
            await self._guard.__anext__()
        return http

    def _ensure_http(self) -> httpx.AsyncClient:
        if self._closed:
            raise RuntimeError("this AsyncVeoClient is closed")
        self._check_loop()
        if self._http is None:
            stack = open_http(
                timeout=self.timeout, limits=self._limits, fast_transport=self._fast_transport
            )
            self._http, self._direct, self.transport_name = stack.http, stack.direct, stack.name
        return self._http

    @property
    def http_client(self) -> httpx.AsyncClient:
        """The underlying ``httpx.AsyncClient`` (created on first use)."""
        return self._ensure_http()

    # ------------------------------------------------------------------ HTTP core

    def _auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key.get_secret_value()}"}

    def _joined_url(self) -> httpx.URL:
        """The API URL, joined once (URL parsing was ~10 % of a status request's CPU)."""
        url, key = self._api_url, self._api_url_for
        if url is None or key is None or key[0] is not self.base_url or key[1] is not self.path:
            url = self._api_url = self.base_url.join(self.path)
            self._api_url_for = (self.base_url, self.path)
        return url

    async def _request_json(
        self,
        method: str,
        *,
        json_body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        is_create: bool,
        request_model: VideoRequest | None = None,
    ) -> Generation:
        """Send one API request with retries; parse the body into a ``Generation``."""
        http = await self._http_here()
        url = self._joined_url()
        attempt = 0
        rate_limited = 0
        kind = RequestKind.CREATE if is_create else RequestKind.POLL
        while True:
            attempt += 1
            sent_at = await self.governor.acquire()
            started = _timing.monotonic()
            span = self.instrumentation.start_request(kind, attempt)
            try:
                status_code, generation = await self._attempt(
                    http, method, url, json_body=json_body, params=params
                )
            except VeoError as exc:
                error = exc
                _span_failed(span, exc)
            except BaseException as exc:
                span.fail(exc)
                span.end()
                raise
            else:
                _span_succeeded(span, status_code, generation)
                self.governor.on_success(sent_at=sent_at)
                logger.debug(
                    "%s %s -> %s %s (%.3f s)",
                    method,
                    self.path,
                    status_code,
                    generation.status,
                    _timing.monotonic() - started,
                )
                return generation
            if isinstance(error, APIStatusError) and not isinstance(error, RateLimitError):
                # the server's limiter admitted it (a 5xx or 4xx is still an answer)
                self.governor.on_success(sent_at=sent_at)
            decision = decide(error, is_create=is_create, config=self.retry)
            logger.debug("%s %s failed (attempt %d): %s", method, self.path, attempt, error)
            if decision is RetryDecision.OUTCOME_UNKNOWN:
                raise CreateOutcomeUnknownError(
                    "the create request may or may not have started a billed generation "
                    f"({error}); it was not retried to avoid paying twice. Resubmit only if "
                    "a possible duplicate is acceptable",
                    request=request_model,
                    request_id=error.request_id,
                ) from error
            if decision is RetryDecision.RAISE:
                raise error
            if isinstance(error, RateLimitError):
                rate_limited += 1
                self._pause_for(error, rate_limited, sent_at, kind)
                attempt -= 1  # waiting out a rate limit does not use up an attempt
                continue
            if attempt >= self.retry.max_attempts:
                raise error
            self.instrumentation.retried(kind)
            await _timing.sleep(backoff_delay(attempt, self.retry, rng=self._rng) * self.time_scale)

    def _pause_for(
        self, error: RateLimitError, rate_limited: int, sent_at: float, kind: RequestKind
    ) -> None:
        """Pace every request after a 429, or raise when waiting is pointless.

        The computed backoff is the floor: ``Retry-After`` 0, negative or a past date is not
        "retry now, forever"; a longer server wait is used as given, up to
        ``RetryConfig.max_retry_after``. Beyond that (a quota, not a pause) the error is raised
        at once rather than stalling every request for hours.
        """
        if rate_limited > max(self.retry.max_attempts, 1) * 4:
            raise error
        wait = error.retry_after
        if wait is not None and wait > self.retry.max_retry_after:
            error.message = (
                f"{error.message}; the server asks to wait {wait:.0f} s, longer than "
                f"RetryConfig.max_retry_after ({self.retry.max_retry_after:g} s), so "
                "the request was not retried"
            )
            error.args = (error.message,)
            raise error
        delay = backoff_delay(rate_limited, self.retry, rng=self._rng) * self.time_scale
        if wait is not None:
            delay = max(delay, wait)
        self.governor.on_rate_limited(delay, sent_at=sent_at)
        self.instrumentation.rate_limited(kind)
        self.instrumentation.retried(kind)

    def _secrets(self) -> tuple[str]:
        return (self._api_key.get_secret_value(),)

    async def _attempt(
        self,
        http: httpx.AsyncClient,
        method: str,
        url: httpx.URL,
        *,
        json_body: Mapping[str, Any] | None,
        params: Mapping[str, str] | None,
    ) -> tuple[int, Generation]:
        """One exchange (see :class:`veo_async._boundary.Exchange`): a generation, or a typed,
        redacted :class:`VeoError`."""
        exchange = Exchange(
            self.request_deadline, self.max_response_bytes, self.timeout, self._secrets()
        )
        return await exchange.send(
            http,
            method,
            url,
            headers=self._auth_headers,
            json_body=json_body,
            params=params,
            direct=self._direct if http is self._http else None,
        )

    @staticmethod
    def _parse(response: httpx.Response, method: str, content: bytes | None = None) -> Generation:
        """Turn one reply into a generation or a typed error (see ``parse_reply``)."""
        return parse_reply(response, method, content)

    # ------------------------------------------------------------------ public API

    async def submit(
        self,
        request: VideoRequest | None = None,
        /,
        *,
        prompt: str | None = None,
        model: str = "veo2",
        extra_body: Mapping[str, Any] | None = None,
        **fields: Any,
    ) -> Generation:
        """Create a generation and return it (usually ``queued``). Costs credits.

        Pass a request model (``Veo2TextToVideo(...)``), or ``prompt=`` with keyword fields
        (``model`` defaults to ``"veo2"``). Invalid values raise
        :class:`~veo_async.RequestValidationError` before anything is sent. A create is retried
        only when it provably started nothing; otherwise
        :class:`~veo_async.CreateOutcomeUnknownError` is raised.
        """
        req = self._make_request(
            request, prompt=prompt, model=model, extra_body=extra_body, **fields
        )
        return await self._create(req)

    def _make_request(
        self,
        request: VideoRequest | None,
        *,
        prompt: str | None,
        model: str,
        extra_body: Mapping[str, Any] | None,
        **fields: Any,
    ) -> VideoRequest:
        if request is not None:
            if not isinstance(request, VideoRequest):
                raise TypeError(
                    f"submit() takes a VideoRequest or prompt=..., got {type(request).__name__}"
                )
            if prompt is not None or fields:
                raise TypeError("pass either a request model or prompt=/fields, not both")
            if extra_body:
                merged = {**(request.extra_body or {}), **extra_body}
                return request.model_copy(update={"extra_body": merged})
            return request
        if prompt is None:
            raise TypeError("submit() needs a request model or prompt=...")
        return build_request(prompt, model=model, extra_body=extra_body, **fields)

    async def _create(self, request: VideoRequest) -> Generation:
        generation = await self._request_json(
            "POST", json_body=request.to_body(), is_create=True, request_model=request
        )
        logger.info("created generation %s (%s)", generation.id, request.model)
        return generation

    async def get(self, generation_id: str) -> Generation:
        """Poll a generation once. Retries transient failures; 404 raises ``NotFoundError``."""
        gid = _check_id(generation_id)
        return await self._request_json("GET", params={"generation_id": gid}, is_create=False)

    async def wait(
        self,
        generation: str | Generation,
        *,
        timeout: float | None = 1000.0,
        poll_policy: PollPlanner | None = None,
        expected_seconds: float = 45.0,
        on_update: UpdateCallback | None = None,
        raise_on_failure: bool = True,
    ) -> Generation:
        """Poll until the generation is ``completed`` or ``error``, or ``timeout`` seconds pass.

        Returns the completed generation. Raises :class:`~veo_async.GenerationFailedError` when
        it ends in ``error`` or completes without a video URL (unless ``raise_on_failure`` is
        false), and :class:`~veo_async.WaitTimeoutError` (carrying the id) on timeout; the
        generation may still finish, so you can wait again later. ``on_update`` is called with
        every polled state. ``expected_seconds`` is the prior for the first poll. ``poll_policy``:
        any :class:`~veo_async.polling.PollPlanner` (default: the client's ``poll_policy``).

        Given a :class:`Generation` (as :meth:`generate` does with a fresh create), the first
        poll is scheduled from its creation. Given an id string, the job's age is unknown: the
        first poll is immediate, and later ones follow what the replies say (``queued``: the
        job starts no earlier than now; in progress: it is at least past the first-poll offset).
        """
        planner: PollPlanner = poll_policy or self.poll_policy
        if isinstance(generation, Generation):
            gid, last = generation.id, generation
        else:
            gid, last = _check_id(generation), None
        if last is not None and last.is_terminal:
            return self._finish(last, raise_on_failure)
        # A fresh create is timed from now; a bare id is "resumed": its age is unknown, so the
        # planner polls it at once and times later polls from what the replies say.
        job = JobTiming(_timing.monotonic(), expected_seconds, resumed=last is None)
        with anyio.move_on_after(timeout) as scope:
            due = planner.first_poll(job, job.submitted)
            while True:
                delay = due - _timing.monotonic()
                if delay > 0:
                    await _timing.sleep(delay)
                last = await self.get(gid)
                job.polls += 1
                if on_update is not None:
                    maybe = on_update(last)
                    if maybe is not None:
                        await maybe
                now = _timing.monotonic()
                if last.is_terminal:
                    planner.finished(job, last, now)
                    return self._finish(last, raise_on_failure)
                due = planner.next_poll(job, last, now)
        assert scope.cancel_called
        raise WaitTimeoutError(
            f"generation {gid} did not finish within {timeout} s "
            f"(last status: {last.status if last else 'unknown'}); it may still complete: "
            f"call wait({gid!r}) again later",
            generation_id=gid,
            last=last,
        )

    @staticmethod
    def _finish(generation: Generation, raise_on_failure: bool) -> Generation:
        if raise_on_failure and generation.failed:
            reason = generation.error_message or "completed without a video URL"
            raise GenerationFailedError(
                f"generation {generation.id} failed: {reason}", generation=generation
            )
        return generation

    async def generate(
        self,
        request: VideoRequest | None = None,
        /,
        *,
        prompt: str | None = None,
        model: str = "veo2",
        extra_body: Mapping[str, Any] | None = None,
        timeout: float | None = 1000.0,
        on_update: UpdateCallback | None = None,
        **fields: Any,
    ) -> Generation:
        """Submit and wait: returns the completed generation (see :meth:`submit`, :meth:`wait`)."""
        req = self._make_request(
            request, prompt=prompt, model=model, extra_body=extra_body, **fields
        )
        generation = await self._create(req)
        if on_update is not None:
            maybe = on_update(generation)
            if maybe is not None:
                await maybe
        return await self.wait(
            generation,
            timeout=timeout,
            expected_seconds=req.expected_seconds(),
            on_update=on_update,
        )

    async def download(
        self,
        source: Generation | str,
        path: str | os.PathLike[str],
        *,
        overwrite: bool = False,
        max_bytes: int | None = None,
    ) -> DownloadedVideo:
        """Stream a generation's video (or a video URL) to ``path``; returns its size and SHA-256.

        The file is written to a temporary name in the same folder and renamed into place only
        when complete and of the announced length. An existing file is never replaced unless
        ``overwrite=True``. If ``path`` is a folder, the file is named ``<generation id>.mp4``.
        The API key is never sent with the download.
        """
        if isinstance(source, Generation):
            if not source.video_url:
                raise GenerationFailedError(
                    f"generation {source.id} has no video to download (status {source.status})",
                    generation=source,
                )
            url, name_hint = source.video_url, source.id
        else:
            url, name_hint = str(source), None
        target = Path(path)
        if await anyio.Path(target).is_dir():
            from ._download import safe_filename, url_file_stem

            target = target / safe_filename(name_hint or url_file_stem(url))
        span = self.instrumentation.start_request(RequestKind.DOWNLOAD, 1)
        if name_hint is not None:
            span.set("veo.generation_id", name_hint)
        try:
            saved = await download_video(
                await self._http_here(),
                url,
                target,
                overwrite=overwrite,
                max_bytes=max_bytes if max_bytes is not None else self.max_download_bytes,
                timeout=self.timeout,
                retry=self.retry,
                api_host=self.base_url.host,
                time_scale=self.time_scale,
            )
        except BaseException as exc:
            span.fail(exc)
            raise
        else:
            span.set("veo.download.bytes", saved.size)
            return saved
        finally:
            span.end()

    # ------------------------------------------------------------------ many jobs

    @overload
    def batch(
        self,
        inputs: Iterable[BatchInput] | AsyncIterable[BatchInput],
        *,
        options: BatchOptions | None = None,
        max_concurrency: int = 32,
        requests_per_second: float | None = None,
        poll_policy: PollPolicy | None = None,
        job_timeout: float | None = 1000.0,
        batch_timeout: float | None = None,
        max_generations: int | None = None,
        credit_budget: float | None = None,
        observer: BatchObserver | None = None,
        buffer: int = 64,
        estimated_credits_per_job: float | None = None,
        create_grace: float = 10.0,
        max_poll_failures: int = 5,
        progress: bool = False,
        queue_ahead: float | None = 1.0,
        store: None = None,
        store_options: StoreOptions | None = None,
    ) -> Batch: ...

    @overload
    def batch(
        self,
        inputs: Iterable[BatchInput] | AsyncIterable[BatchInput],
        *,
        options: BatchOptions | None = None,
        max_concurrency: int = 32,
        requests_per_second: float | None = None,
        poll_policy: PollPolicy | None = None,
        job_timeout: float | None = 1000.0,
        batch_timeout: float | None = None,
        max_generations: int | None = None,
        credit_budget: float | None = None,
        observer: BatchObserver | None = None,
        buffer: int = 64,
        estimated_credits_per_job: float | None = None,
        create_grace: float = 10.0,
        max_poll_failures: int = 5,
        progress: bool = False,
        queue_ahead: float | None = 1.0,
        store: JobStore | str,
        store_options: StoreOptions | None = None,
    ) -> DurableBatch: ...

    def batch(
        self,
        inputs: Iterable[BatchInput] | AsyncIterable[BatchInput],
        *,
        options: BatchOptions | None = None,
        max_concurrency: int = 32,
        requests_per_second: float | None = None,
        poll_policy: PollPolicy | None = None,
        job_timeout: float | None = 1000.0,
        batch_timeout: float | None = None,
        max_generations: int | None = None,
        credit_budget: float | None = None,
        observer: BatchObserver | None = None,
        buffer: int = 64,
        estimated_credits_per_job: float | None = None,
        create_grace: float = 10.0,
        max_poll_failures: int = 5,
        progress: bool = False,
        queue_ahead: float | None = 1.0,
        store: JobStore | str | None = None,
        store_options: StoreOptions | None = None,
    ) -> Batch:
        """Submit many requests and yield results in completion order (see :class:`Batch`).

        ``async with client.batch(prompts, max_concurrency=32) as results:
        async for result in results: ...``. The options are those of
        :class:`~veo_async.BatchOptions`: pass them as keywords, or one ``options=`` object.

        With ``store`` (a :class:`~veo_async.stores.JobStore` or a URL:
        ``sqlite:///path/jobs.sqlite3``, ``redis://host:6379/0``) the batch is durable: its jobs
        live in the store, a rerun with the same inputs resumes it after a crash (nothing is
        submitted twice), and several processes or machines running it on one Redis share the
        work (see :class:`~veo_async.batch.DurableBatch` and ``store_options``).
        """
        from .batch import Batch
        from .batch._options import resolve_options

        opts = resolve_options(
            options,
            max_concurrency=max_concurrency,
            requests_per_second=requests_per_second,
            poll_policy=poll_policy,
            job_timeout=job_timeout,
            batch_timeout=batch_timeout,
            max_generations=max_generations,
            credit_budget=credit_budget,
            observer=observer,
            buffer=buffer,
            estimated_credits_per_job=estimated_credits_per_job,
            create_grace=create_grace,
            max_poll_failures=max_poll_failures,
            progress=progress,
            queue_ahead=queue_ahead,
        )
        if store is not None:
            from .batch import DurableBatch

            return DurableBatch(_ClientJobs(self), inputs, opts, store, store_options)
        if store_options is not None:
            raise TypeError("store_options= needs store= (a JobStore or a store URL)")
        return Batch(_ClientJobs(self), inputs, opts)

    def as_completed(
        self,
        generation_ids: Iterable[str],
        *,
        options: BatchOptions | None = None,
        max_concurrency: int = 32,
        requests_per_second: float | None = None,
        poll_policy: PollPolicy | None = None,
        job_timeout: float | None = 1000.0,
        batch_timeout: float | None = None,
        max_generations: int | None = None,
        credit_budget: float | None = None,
        observer: BatchObserver | None = None,
        buffer: int = 64,
        estimated_credits_per_job: float | None = None,
        create_grace: float = 10.0,
        max_poll_failures: int = 5,
        progress: bool = False,
        queue_ahead: float | None = 1.0,
    ) -> Batch:
        """Track existing generation ids and yield each one as it finishes (see :class:`Batch`).

        Takes the options of :meth:`batch`.
        """
        from .batch import Batch, BatchItem
        from .batch._options import resolve_options

        opts = resolve_options(
            options,
            max_concurrency=max_concurrency,
            requests_per_second=requests_per_second,
            poll_policy=poll_policy,
            job_timeout=job_timeout,
            batch_timeout=batch_timeout,
            max_generations=max_generations,
            credit_budget=credit_budget,
            observer=observer,
            buffer=buffer,
            estimated_credits_per_job=estimated_credits_per_job,
            create_grace=create_grace,
            max_poll_failures=max_poll_failures,
            progress=progress,
            queue_ahead=queue_ahead,
        )
        items = (BatchItem(generation_id=g) for g in generation_ids)
        return Batch(_ClientJobs(self), items, opts)


class _ClientJobs:
    """The client as the batch engine sees it (:class:`veo_async.batch.JobsAPI`)."""

    __slots__ = ("_client",)

    def __init__(self, client: AsyncVeoClient) -> None:
        self._client = client

    @property
    def governor(self) -> RateGovernor:
        """The client's rate governor."""
        return self._client.governor

    @property
    def time_scale(self) -> float:
        """Real seconds per service second."""
        return self._client.time_scale

    @property
    def poll_policy(self) -> PollPolicy:
        """The client's default poll policy."""
        return self._client.poll_policy

    @property
    def instrumentation(self) -> Instrumentation:
        """The client's instrumentation."""
        return self._client.instrumentation

    async def create(self, request: VideoRequest) -> Generation:
        """One create (retried only when it provably started nothing)."""
        return await self._client._create(request)

    async def get(self, generation_id: str) -> Generation:
        """One status request."""
        return await self._client.get(generation_id)


def _check_id(generation_id: str) -> str:
    if not isinstance(generation_id, str) or not generation_id.strip():
        raise RequestValidationError(
            f"a generation id must be a non-empty string, got {generation_id!r}",
            errors=[{"field": "generation_id", "message": "must be a non-empty string"}],
        )
    return generation_id.strip()


def _span_failed(span: Span, error: VeoError) -> None:
    """Close a request span for a failed attempt, with what the error knows."""
    span.set("http.response.status_code", getattr(error, "status_code", None))
    span.set("veo.request_id", error.request_id)
    span.fail(error)
    span.end()


def _span_succeeded(span: Span, status_code: int, generation: Generation) -> None:
    """Close a request span for a parsed reply."""
    span.set("http.response.status_code", status_code)
    span.set("veo.generation_id", generation.id)
    span.set("veo.status", str(generation.status))
    span.end()
