"""One redaction for everything streamrec logs, prints, emits or serves: secrets never leave.

Two complementary nets:

- :func:`redact_url` parses a URL: its user info (up to the *last* ``@`` of the authority, since a
  password may hold ``/ ? # @``, spaces or ``%``) and every query parameter named like a secret
  (``token``, ``password``, ``key``..., also percent-encoded as ``%74oken``) or like the
  credentials of a camera's URL (:data:`CAMERA_SECRETS`, :data:`CAMERA_USERS`: ``pwd``,
  ``usr``, ``sid``, ``k``...) become ``***``. :func:`redact` applies it to every URL inside a
  text.
- :func:`register` remembers secret values (camera URL credentials, the MQTT password, webhook
  headers, the HTTP token...; :func:`register_config` takes them all from a config), and
  :func:`redact` also masks any occurrence of them, raw or percent-encoded, wherever it appears
  (a library's error message that quotes half a URL, a log line); one shorter than 4
  characters only where it stands alone (not inside a longer word).

:class:`RedactingFilter` runs every log record through :func:`redact`; the CLI installs it on
its handlers, so nothing logged by streamrec or the libraries it uses carries a secret.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import asdict
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

if TYPE_CHECKING:
    from streamrec.config import Config

MASK = "***"

#: names of keys, query parameters and headers whose values are secrets
_SECRET_NAME = re.compile(
    r"pass|pwd|token|secret|key|auth|credential|cookie|headers$|signature|session|^sig$", re.I
)
#: query parameters of cameras' snapshot and stream URLs that carry a password, a session or
#: a key, by vendor: Hikvision/Ezviz (``auth``, ``k``), Dahua/Amcrest/Lorex (``loginpas``),
#: Reolink (``password``, ``token``), Foscam (``pwd``, ``loginpas``), Axis (``pwd``), Synology
#: Surveillance Station (``_sid``, ``sid``), TP-Link Tapo/Kasa (``stok``), Ubiquiti
#: (``api_key``), Blue Iris (``pw``, ``session``), Milestone, Instar (``pwd``), Vivotek
#: (``passwd``), Motion/motionEye (``_signature``), Shinobi (``auth``), plus the usual
#: ``key``/``secret``/``sig`` forms (matched by :data:`_SECRET_NAME` too)
CAMERA_SECRETS = frozenset(
    {
        "k", "sid", "_sid", "ssid", "stok", "pw", "pwd", "psw", "passwd", "loginpas",
        "loginpass", "pass", "password", "passwort", "apikey", "api_key", "access_token",
        "accesstoken", "sig", "_signature", "hash",
    }
)  # fmt: skip
#: query parameters naming the user of those credentials (Foscam ``usr``, Reolink ``user``,
#: Dahua ``loginuse``...): masked in URLs, but not remembered as secrets (``admin``)
CAMERA_USERS = frozenset(
    {"u", "usr", "user", "username", "loginuse", "login", "account", "acc", "uid"}
)
#: a URL in a text: a scheme, then everything up to white space that is followed by something
#: that does not look like it still belongs to the URL (a password may hold spaces; see below)
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]*")
_QUERY_PARAM = re.compile(r"([^&;=#]+)=([^&;#]*)")
#: secrets shorter than this are masked only where they stand alone (a 3-letter token inside
#: an ordinary word is not it)
_MIN_SECRET = 4

_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None
_lock = threading.Lock()


def is_secret_key(name: str) -> bool:
    """Whether a key, query parameter or header name holds a secret (percent-encoding undone)."""
    return bool(_SECRET_NAME.search(unquote(name)))


def is_secret_param(name: str) -> bool:
    """Whether a URL's query parameter carries a secret (a camera vendor's names included)."""
    return is_secret_key(name) or unquote(name).strip().lower() in CAMERA_SECRETS


def _masked_param(name: str) -> bool:
    return is_secret_param(name) or unquote(name).strip().lower() in CAMERA_USERS


def _split_authority(url: str) -> tuple[str, str, str] | None:
    """``(scheme://, userinfo, rest)`` of a URL with user info, else None.

    The user info ends at the last ``@`` before the host: a password may hold ``/ ? # @``, so
    the ``@`` that counts is the last one followed by a host and then the end, ``/``, ``?``, ``#``
    or ``:port``.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return None
    best = -1
    for m in re.finditer("@", rest):
        tail = rest[m.end() :]
        if re.match(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-_~%]+)(:\d+)?([/?#]|$)", tail):
            best = m.start()
    if best < 0:
        return None
    return scheme + sep, rest[:best], rest[best + 1 :]


def split_userinfo(url: str) -> tuple[str, str, str] | None:
    """``(url without user info, user, password)`` (percent-decoded) if ``url`` has user info."""
    parts = _split_authority(url)
    if parts is None:
        return None
    scheme, userinfo, rest = parts
    user, _, password = userinfo.partition(":")
    return scheme + rest, unquote(user), unquote(password)


def redact_url(url: str) -> str:
    """``url`` with its user info and secret query parameters masked."""
    parts = _split_authority(url)
    if parts is not None:
        scheme, _, rest = parts
        url = f"{scheme}{MASK}@{rest}"
    head, question, query = url.partition("?")
    if not question:
        return url
    query, hash_, fragment = query.partition("#")

    def param(m: re.Match[str]) -> str:
        return f"{m[1]}={MASK}" if _masked_param(m[1]) else m[0]

    return f"{head}?{_QUERY_PARAM.sub(param, query)}{hash_}{fragment}"


def register(*values: str | None) -> None:
    """Remember secret values: :func:`redact` masks them anywhere (raw or percent-encoded)."""
    global _pattern
    forms = set()
    for value in values:
        if value:
            forms |= {value, unquote(value), quote(value, safe=""), quote(unquote(value), safe="")}
    forms.discard("")
    with _lock:
        if forms <= _secrets:
            return
        _secrets.update(forms)
        ordered = sorted(_secrets, key=len, reverse=True)  # longest first: no partial leftovers
        _pattern = re.compile(
            "|".join(
                re.escape(s) if len(s) >= _MIN_SECRET else rf"(?<![^\W_]){re.escape(s)}(?![^\W_])"
                for s in ordered
            )
        )


def forget_registered() -> None:
    """Forget every registered secret (a process that loads another config; tests)."""
    global _pattern
    with _lock:
        _secrets.clear()
        _pattern = None


def register_url(url: str | None) -> None:
    """Remember the credentials of a URL: its user info (and each part) and secret parameters."""
    if not url:
        return
    parts = _split_authority(url)
    if parts is not None:
        userinfo = parts[1]
        register(userinfo, userinfo.partition(":")[2])  # not the user name alone: "admin"
    _, question, query = url.partition("?")
    if question:
        for m in _QUERY_PARAM.finditer(query.partition("#")[0]):
            if is_secret_param(m[1]):
                register(m[2])


def register_config(cfg: Config) -> None:
    """Remember every secret of a config: camera URLs, MQTT, webhook, HTTP token, Frigate..."""

    def walk(node: Any, secret: bool) -> None:
        if isinstance(node, dict):
            for k, v in node.items():  # everything under a secret key (headers) is secret
                walk(v, secret or is_secret_key(str(k)))
        elif isinstance(node, (list, tuple)):
            for v in node:
                walk(v, secret)
        elif isinstance(node, str):
            if "://" in node:
                register_url(node)
            if secret:
                register(node)

    walk(asdict(cfg), False)


def redact(text: str) -> str:
    """``text`` with every URL's credentials and every registered secret masked."""
    if not text:
        return text
    pattern = _pattern  # known secrets first: a URL cut short by a space is still covered
    out = pattern.sub(MASK, text) if pattern is not None else text
    return _URL.sub(lambda m: redact_url(m[0]), out) if "://" in out else out


class RedactingFilter(logging.Filter):
    """Runs every log record (message, arguments, exception text) through :func:`redact`."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: leave it to the handler's error path
            return True
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True
