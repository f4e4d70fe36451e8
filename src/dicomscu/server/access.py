"""Who may use serve, on both of its protocols: one policy, so that the HTTP side is never an open door beside a
DIMSE port that checks its callers.

What each protocol enforces:

============================  ===========================================  =======================================
rule                          DIMSE                                        DICOMweb (HTTP)
============================  ===========================================  =======================================
listening address             ``--bind`` (default: every interface)        ``--http-bind`` (default: 127.0.0.1)
TLS (``--tls-cert/--tls-key``)  TLS on the DIMSE port                       HTTPS with the same certificate (never
                                                                           plain HTTP beside a TLS DIMSE port)
client certificate            ``--tls-ca``: required                       ``--tls-ca``: required
caller identity               ``--require-calling AE``                     ``--http-token-file``: a bearer token
                                                                           or a ``user:password`` (Basic)
read-only (``--read-only``)   C-STORE answered 0x0124 (not authorized)     STOW-RS answered 403
``--no-overwrite``            C-STORE answered 0x0111 (duplicate)          STOW-RS item failed, reason 0x0111
============================  ===========================================  =======================================

A server whose DIMSE side checks its callers (``--require-calling``) refuses to start its HTTP side without
an equivalent check there (tokens, or client certificates).
"""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass

from dicomscu.errors import UsageError

#: The realm named in a 401's WWW-Authenticate challenge.
REALM = "dicomscu serve"


@dataclass(frozen=True)
class Credentials:
    """What an HTTP request may authenticate with: bearer tokens, and user:password pairs (HTTP Basic)."""

    tokens: tuple[str, ...] = ()
    users: tuple[tuple[str, str], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.tokens or self.users)

    @classmethod
    def from_file(cls, path: str) -> "Credentials":
        """One credential a line: a bearer token, or ``user:password`` for HTTP Basic; ``#`` comments and
        blank lines skipped.  A usage error (naming the file, never a secret) when it holds none."""
        try:
            with open(path, encoding="utf-8") as handle:
                lines = [line.strip() for line in handle]
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"{path}: {getattr(exc, 'strerror', None) or exc}", option="http_token_file") from None
        tokens, users = [], []
        for line in lines:
            if not line or line.startswith("#"):
                continue
            if any(ord(c) < 0x21 or ord(c) > 0x7E for c in line):
                raise UsageError(f"{path}: a credential holds a space or a character that is not printable "
                                 "ASCII (it could not be sent in a header)", option="http_token_file")
            user, colon, password = line.partition(":")
            if colon:
                users.append((user, password))
            else:
                tokens.append(line)
        if not tokens and not users:
            raise UsageError(f"{path}: holds no token (one a line, or user:password)", option="http_token_file")
        return cls(tuple(tokens), tuple(users))

    def allows(self, authorization: str | None) -> bool:
        """Whether an Authorization header value carries one of these credentials (compared in constant time)."""
        scheme, _, value = (authorization or "").strip().partition(" ")
        value = value.strip()
        if scheme.lower() == "bearer" and value:
            return any(hmac.compare_digest(value.encode(), token.encode()) for token in self.tokens)
        if scheme.lower() == "basic" and value:
            try:
                user, colon, password = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return False
            if not colon:
                return False
            found = False
            for known_user, known_password in self.users:
                same = hmac.compare_digest(user.encode(), known_user.encode())
                found |= same & hmac.compare_digest(password.encode(), known_password.encode())
            # a token given as the password of any user name, as many servers take it
            found |= any(hmac.compare_digest(password.encode(), token.encode()) for token in self.tokens)
            return found
        return False


@dataclass(frozen=True)
class AccessPolicy:
    """The rules serve applies to every request, whatever the protocol."""

    read_only: bool = False
    #: Calling AE titles the DIMSE side accepts (empty: any).
    require_calling: tuple[str, ...] = ()
    #: The DIMSE and the HTTP side demand a client certificate signed by our CA (``--tls-ca``).
    client_certificates: bool = False
    #: The HTTP side demands one of these (none: no authentication there).
    credentials: Credentials = Credentials()

    def check_http_side(self, bind: str) -> str | None:
        """Refuse an HTTP side weaker than the DIMSE side (a usage error); a warning for an open one on a
        non-loopback address (returned), None when there is nothing to say."""
        if self.require_calling and not (self.credentials or self.client_certificates):
            raise UsageError("DICOMweb beside a DIMSE port that accepts only some calling AE titles "
                             "(--require-calling) would let anyone in over HTTP: give --http-token-file "
                             "(or --tls-ca for client certificates)", option="http_port")
        if not (self.credentials or self.client_certificates) and bind not in ("127.0.0.1", "::1", "localhost"):
            return (f"DICOMweb on {bind or 'every interface'} asks for no credentials: anyone who reaches it "
                    "can read and store (give --http-token-file, --tls-ca or --read-only)")
        return None
