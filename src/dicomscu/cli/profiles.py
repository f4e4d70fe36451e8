"""Server profiles: ``dicomscu --find @pacs ...`` instead of host, port and AE titles every time.

A TOML file (``--config FILE``, else ``$XDG_CONFIG_HOME/dicomscu/servers.toml``, else
``~/.config/dicomscu/servers.toml``) names servers::

    [pacs]
    host = "pacs.example.org"
    port = 11112
    call = "PACS"          # called AE title
    aetitle = "MYSCU"      # our calling AE title
    timeout = 30           # seconds, every wait
    tls = true             # or tls_ca / tls_cert / tls_key (paths)

Options given on the command line override the profile; the profile overrides the
defaults.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass

from dicomscu.errors import UsageError

#: Every setting and the TOML type it must have.
TYPES: dict[str, type | tuple[type, ...]] = {
    "host": str, "port": int, "call": str, "aetitle": str, "timeout": (int, float), "max_pdu": int, "window": int,
    "tls": bool, "tls_ca": str, "tls_cert": str, "tls_key": str, "tls_no_verify": bool,
    "url": str, "token": str,  # a DICOMweb service instead of host and port; its bearer token
    "cluster": str,  # a Dask scheduler for --store (--cluster)
}
KEYS = set(TYPES)
_TYPE_NAMES = {str: "a string in quotes", int: "a whole number", (int, float): "a number of seconds",
               bool: "true or false"}


@dataclass(frozen=True)
class Profile:
    name: str
    settings: dict

    def get(self, key: str, default=None):
        return self.settings.get(key, default)


def default_path(environ=None) -> str:
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "dicomscu", "servers.toml")


def load(path: str | None, environ=None) -> dict[str, Profile]:
    """All profiles of `path` (or the default file; a missing default file means none)."""
    explicit = path is not None
    path = path or default_path(environ)
    if not os.path.exists(path):
        if explicit:
            raise UsageError(f"--config {path}: no such file")
        return {}
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"server profiles {path}: {exc}") from None
    except UnicodeDecodeError:
        raise UsageError(f"server profiles {path}: not a text (TOML) file") from None
    profiles = {}
    for name, settings in data.items():
        if not isinstance(settings, dict):
            raise UsageError(f"server profiles {path}: [{name}] must be a table of settings")
        unknown = set(settings) - KEYS
        if unknown:
            raise UsageError(f"server profiles {path}: [{name}] has unknown setting(s) {', '.join(sorted(unknown))} "
                             f"(known: {', '.join(sorted(KEYS))})")
        if "host" not in settings and "url" not in settings:
            raise UsageError(f"server profiles {path}: [{name}] needs a host (or the url of a DICOMweb service)")
        for key, value in settings.items():
            _check_type(path, name, key, value)
        profiles[name] = Profile(name, settings)
    return profiles


def _check_type(path: str, name: str, key: str, value) -> None:
    """A setting of the wrong type is named with its file (TOML's `tls = "no"` is true in Python)."""
    wanted = TYPES[key]
    right = isinstance(value, wanted) and not (isinstance(value, bool) and wanted is not bool)
    if not right:
        raise UsageError(f"server profiles {path}: [{name}] {key} = {value!r}: expected {_TYPE_NAMES[wanted]}")
    if key == "timeout" and not value > 0:
        raise UsageError(f"server profiles {path}: [{name}] timeout = {value!r}: expected a positive number")


def find(name: str, path: str | None, environ=None) -> Profile:
    profiles = load(path, environ)
    if name not in profiles:
        where = path or default_path(environ)
        known = ", ".join(sorted(profiles)) or "none"
        raise UsageError(f"unknown server profile @{name} (profiles in {where}: {known})")
    return profiles[name]


def listing(path: str | None, environ=None) -> str:
    profiles = load(path, environ)
    where = path or default_path(environ)
    if not profiles:
        return f"no server profiles in {where}\n"
    lines = [f"server profiles in {where}:"]
    for name, profile in sorted(profiles.items()):
        settings = profile.settings
        if settings.get("url"):  # DICOMweb; the token, if any, is never shown
            lines.append(f"  @{name}: {settings['url']} (DICOMweb)" + (" with a token" if settings.get("token") else ""))
            continue
        line = f"  @{name}: {settings.get('call', 'ANY-SCP')}@{settings['host']}:{settings.get('port', 104)}"
        if settings.get("aetitle"):
            line += f" as {settings['aetitle']}"
        if settings.get("tls") or settings.get("tls_ca") or settings.get("tls_cert"):
            line += " (TLS)"
        lines.append(line)
    return "\n".join(lines) + "\n"
