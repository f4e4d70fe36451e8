"""One DICOMweb service (a base URL): HTTP requests with every failure said in dicomscu's terms.

Authentication is HTTP Basic (``https://user:password@host/...``) or a bearer token
(``--token-file``, or the DICOMSCU_TOKEN environment variable); neither is ever
logged.  Every request is bounded by the connect and read timeouts; 429 and 503 are
retried at most :data:`RETRIES` times, honouring Retry-After up to
:data:`MAX_RETRY_AFTER` seconds.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from dicomscu.errors import AssociationRejected, ConnectionFailed, OperationFailed, PeerTimeout, UnknownHost, UsageError
from dicomscu.transport.peer import TLS, Timeouts

LOGGER = logging.getLogger("dicomscu.web")
RETRIES = 3
MAX_RETRY_AFTER = 30.0
#: What an error page may say in our one-line message, at most.
MESSAGE_CHARS = 200


@dataclass(frozen=True)
class WebPeer:
    """A DICOMweb service: its base URL (no credentials in it), how to authenticate, TLS and timeouts."""

    url: str
    username: str | None = None
    password: str | None = None
    token: str | None = None
    tls: TLS | None = None
    timeouts: Timeouts = Timeouts()

    @classmethod
    def parse(cls, url: str, *, token: str | None = None, tls: TLS | None = None,
              timeouts: Timeouts = Timeouts()) -> "WebPeer":
        from urllib.parse import unquote, urlsplit, urlunsplit

        parts = urlsplit(url)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise UsageError(f"{url}: not an http:// or https:// URL", option="url")
        netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
        if ":" in parts.hostname:
            netloc = f"[{parts.hostname}]" + (f":{parts.port}" if parts.port else "")
        base = urlunsplit((parts.scheme.lower(), netloc, parts.path.rstrip("/"), "", ""))
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password else None
        return cls(base, username, password, token, tls, timeouts)

    def __str__(self) -> str:
        return self.url


def _capped_retry(cap: float):
    """urllib3's Retry with the server's Retry-After capped at `cap` seconds (urllib3 honours it whole: a
    ``Retry-After: 3600`` would wait an hour whatever --timeout says)."""
    import urllib3

    class CappedRetry(urllib3.Retry):
        def get_retry_after(self, response):
            wanted = super().get_retry_after(response)
            return None if wanted is None else min(wanted, cap)

    return CappedRetry


class WebService:
    """Requests to one :class:`WebPeer` over pooled keep-alive connections."""

    def __init__(self, peer: WebPeer, connections: int = 4) -> None:
        import urllib3

        self.peer = peer
        context = None
        if peer.url.startswith("https://"):
            context = (peer.tls or TLS()).context()
        self._pool = urllib3.PoolManager(
            num_pools=2, maxsize=connections, block=True, ssl_context=context,
            timeout=urllib3.Timeout(connect=peer.timeouts.connect, read=peer.timeouts.network),
            retries=_capped_retry(min(MAX_RETRY_AFTER, peer.timeouts.network))(total=RETRIES, connect=0, read=0, redirect=5, status=RETRIES,
                                  status_forcelist=(429, 503), allowed_methods=None, backoff_factor=0.5,
                                  respect_retry_after_header=True, raise_on_status=False,
                                  backoff_max=MAX_RETRY_AFTER))
        self._auth: dict[str, str] = {}
        if peer.token:
            self._auth["Authorization"] = f"Bearer {peer.token}"
        elif peer.username is not None:
            self._auth.update(urllib3.make_headers(basic_auth=f"{peer.username}:{peer.password or ''}"))

    def close(self) -> None:
        self._pool.clear()

    def __enter__(self) -> "WebService":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def request(self, method: str, path: str, *, fields: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
                headers: Mapping[str, str] | None = None, body: Any = None, stream: bool = False,
                accept: tuple[int, ...] = (), what: str = "request", body_again: Callable[[], Any] | None = None):
        """The response to `method` `path` (below the base URL); raises a DicomscuError for any failure
        (an HTTP status of 400 or more not in `accept`).

        With `stream` the body is left unread (``response.stream()``); release it with
        ``response.release_conn()``.  A streamed `body` (an iterable) cannot be sent twice: urllib3 would
        retry a 503 or follow a 307/308 with an empty body.  So such a request is retried, and redirected,
        here, with a new body from `body_again` (without it, the 503 or the redirect is the answer).
        """
        from urllib3.exceptions import (
            ConnectTimeoutError,
            HTTPError,
            MaxRetryError,
            NameResolutionError,
            NewConnectionError,
            ProtocolError,
            ReadTimeoutError,
            SSLError,
        )

        url = self.peer.url + path
        if fields:
            from urllib.parse import urlencode

            url += "?" + urlencode(list(fields.items()) if isinstance(fields, Mapping) else list(fields))
        all_headers = {**self._auth, **(headers or {})}
        streamed = body is not None and not isinstance(body, (bytes, str))
        LOGGER.debug("%s %s", method, url)  # never the headers: they hold the credentials
        try:
            for attempt in range(RETRIES + 1):
                response = self._pool.request(method, url, headers=all_headers, body=body,
                                              preload_content=not stream, chunked=streamed,
                                              retries=False if streamed else None)
                again = response.status in (307, 308) or (response.status in (429, 503) and attempt < RETRIES)
                if not (streamed and body_again is not None and again):
                    break
                if response.status in (307, 308):
                    from urllib.parse import urljoin

                    url = urljoin(url, response.headers.get("Location") or url)
                else:
                    time.sleep(self._retry_wait(response, attempt))
                response.drain_conn()
                body = body_again()  # the same files, read again from the start
        except MaxRetryError as exc:
            raise self._failure(exc.reason or exc, what) from None
        except (NameResolutionError, NewConnectionError, ConnectTimeoutError, ReadTimeoutError, SSLError,
                ProtocolError) as exc:
            raise self._failure(exc, what) from None
        except HTTPError as exc:  # pragma: no cover - any other urllib3 failure
            raise ConnectionFailed(f"{self.peer}: {what} failed: {exc}") from None
        if response.status >= 400 and response.status not in accept:
            raise self._status_error(response, what)
        return response

    def _retry_wait(self, response, attempt: int) -> float:
        """Seconds before retrying a streamed request: the server's Retry-After, else a backoff, capped as
        urllib3's retries are (:func:`_capped_retry`)."""
        cap = min(MAX_RETRY_AFTER, self.peer.timeouts.network)
        wanted = (response.headers.get("Retry-After") or "").strip()
        seconds = float(wanted) if wanted.replace(".", "", 1).isdigit() else 0.5 * 2 ** attempt
        return min(seconds, cap)

    def _failure(self, exc, what: str) -> Exception:
        from urllib3.exceptions import (
            ConnectTimeoutError,
            NameResolutionError,
            NewConnectionError,
            ReadTimeoutError,
            SSLError,
        )

        where = self.peer.url
        if isinstance(exc, NameResolutionError):
            return UnknownHost(f"unknown host in {where}")
        if isinstance(exc, ConnectTimeoutError):
            return PeerTimeout(f"no answer from {where} within {self.peer.timeouts.connect:g} s (connect timeout)")
        if isinstance(exc, ReadTimeoutError):
            return PeerTimeout(f"{where}: the {what} got no answer within {self.peer.timeouts.network:g} s "
                               "(read timeout)")
        if isinstance(exc, SSLError):
            return ConnectionFailed(f"TLS with {where} failed: {exc} (check --tls-ca; --tls-no-verify only for "
                                    "testing)")
        if isinstance(exc, NewConnectionError) and "refused" in str(exc).lower():
            return ConnectionFailed(f"connection refused by {where}: nothing listens there (check the URL and "
                                    "that the DICOMweb service is running)")
        return ConnectionFailed(f"{where}: the {what} failed: {exc}")

    def _status_error(self, response, what: str) -> Exception:
        text = _message_of(response)
        status = f"HTTP {response.status} {response.reason or ''}".strip()
        message = f"{self.peer}: the {what} was answered {status}" + (f": {text}" if text else "")
        if response.status in (401, 403):
            hint = "give a token with --token-file or DICOMSCU_TOKEN, or user:password@ in the URL"
            return AssociationRejected(message, hint=hint)
        return OperationFailed(message)


def _message_of(response) -> str:
    """What an error response says, in one short line (HTML reduced to its text)."""
    try:
        data = response.data if response.data is not None else response.read(64 * 1024)
    except Exception:  # the body itself failed: the status says enough
        return ""
    text = data[:64 * 1024].decode("utf-8", "replace")
    if "<" in text and ">" in text:
        text = re.sub(r"(?is)<(script|style).*?</\1>", " ", text)
        text = re.sub(r"<[^>]+>", " ", text)
    text = " ".join(text.split())
    return text[:MESSAGE_CHARS] + ("..." if len(text) > MESSAGE_CHARS else "")
