"""streamrec.service.frigate_session against the stand-in Frigate of each version: port 5000
without credentials, port 8971 with a login, its cookie, renewals, expiry and refusals."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from http.cookies import SimpleCookie

import pytest
from frigate_standin import COOKIE, FrigateStandIn, running

from streamrec.service.frigate_session import Credentials, FrigateAuthError, FrigateSession

PASSWORD = "frigate-admin-pw"
VERSIONS = ["0.14", "0.15", "0.16", "0.17"]


class Clock:
    """The time of both the stand-in and the session, moved by the test."""

    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def standin(clock: Clock) -> Iterator[Callable[..., FrigateStandIn]]:
    with running(clock) as start:
        yield start


def logins(frigate: FrigateStandIn) -> int:
    return sum(1 for r in frigate.requests if r.path == "/api/login")


def cookies_sent(frigate: FrigateStandIn) -> list[str]:
    sent = []
    for r in frigate.requests:
        if r.path != "/api/login" and "cookie" in r.headers:
            sent.append(SimpleCookie(r.headers["cookie"])[COOKIE].value)
    return sent


@pytest.mark.parametrize("version", VERSIONS)
def test_port_5000_needs_nothing(standin: Callable[..., FrigateStandIn], version: str) -> None:
    frigate = standin(version, auth=False)
    session = FrigateSession(frigate.url)
    assert session.request("GET", "/api/version").status == 200
    assert logins(frigate) == 0 and "cookie" not in frigate.requests[-1].headers


@pytest.mark.parametrize("version", VERSIONS)
def test_port_8971_logs_in_once_and_keeps_the_cookie(
    standin: Callable[..., FrigateStandIn], clock: Clock, version: str
) -> None:
    frigate = standin(version)
    session = FrigateSession(frigate.url, Credentials("admin", PASSWORD), clock=clock)
    for _ in range(3):
        assert session.request("GET", "/api/events").status == 200
        clock.t += 60
    assert logins(frigate) == 1 and len(set(cookies_sent(frigate))) == 1
    assert all("authorization" not in r.headers for r in frigate.requests)


def test_a_renewed_cookie_is_taken(standin: Callable[..., FrigateStandIn], clock: Clock) -> None:
    frigate = standin("0.17", session_length=3600, refresh_time=1800)
    session = FrigateSession(frigate.url, Credentials("admin", PASSWORD), clock=clock)
    session.request("GET", "/api/version")
    clock.t += 2000  # within refresh_time of the end: nginx renews the cookie on the answer
    session.request("GET", "/api/version")
    clock.t += 60
    session.request("GET", "/api/version")
    first, renewed_on, renewed = cookies_sent(frigate)
    assert first == renewed_on != renewed and logins(frigate) == 1


@pytest.mark.parametrize("version", VERSIONS)
def test_it_logs_in_again_before_the_token_expires(
    standin: Callable[..., FrigateStandIn], clock: Clock, version: str
) -> None:
    frigate = standin(version, session_length=86400, refresh_time=60)
    session = FrigateSession(frigate.url, Credentials("admin", PASSWORD), clock=clock)
    session.request("GET", "/api/version")
    clock.t += 86400 - 200  # no renewal by nginx yet, but within RENEW_BEFORE of the end
    assert session.request("GET", "/api/version").status == 200
    assert logins(frigate) == 2
    assert all(r.status != 401 for r in frigate.requests)


def test_a_token_frigate_no_longer_takes_means_one_new_login(
    standin: Callable[..., FrigateStandIn], clock: Clock
) -> None:
    frigate = standin("0.16")
    session = FrigateSession(frigate.url, Credentials("admin", PASSWORD), clock=clock)
    session.request("GET", "/api/version")
    frigate.secret = b"a new secret after a restart"
    assert session.request("GET", "/api/events").status == 200
    assert [r.status for r in frigate.requests if r.path == "/api/events"] == [401, 200]
    assert logins(frigate) == 2


@pytest.mark.parametrize("version", VERSIONS)
def test_refused_credentials_are_one_clear_log_line(
    standin: Callable[..., FrigateStandIn], caplog: pytest.LogCaptureFixture, version: str
) -> None:
    frigate = standin(version)
    session = FrigateSession(frigate.url, Credentials("admin", "wrong password"))
    with caplog.at_level(logging.INFO, logger="streamrec.frigate"):
        for _ in range(3):
            with pytest.raises(FrigateAuthError, match="refused the login") as refused:
                session.request("GET", "/api/events")
            assert "wrong password" not in str(refused.value)
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(errors) == 1
    assert "refused the login of user 'admin'" in errors[0].getMessage()
    assert "wrong password" not in caplog.text
    assert logins(frigate) == 3 and not any(r.path == "/api/events" for r in frigate.requests)
    session.credentials = Credentials("admin", PASSWORD)  # fixed: logged in, said once
    with caplog.at_level(logging.INFO, logger="streamrec.frigate"):
        assert session.request("GET", "/api/events").status == 200
    assert "logged in as admin" in caplog.text


def test_no_credentials_on_the_authenticated_port(
    standin: Callable[..., FrigateStandIn], caplog: pytest.LogCaptureFixture
) -> None:
    frigate = standin("0.16")
    session = FrigateSession(frigate.url)
    with caplog.at_level(logging.INFO, logger="streamrec.frigate"):
        assert session.request("GET", "/api/events").status == 401
        assert session.request("GET", "/api/events").status == 401
    (line,) = [r.getMessage() for r in caplog.records]
    assert "8971" in line and "port 5000" in line


def test_credentials_in_the_url_log_in_and_never_go_as_basic(
    standin: Callable[..., FrigateStandIn],
) -> None:
    frigate = standin("0.15")
    session = FrigateSession(frigate.url.replace("http://", f"http://admin:{PASSWORD}@"))
    assert session.base == frigate.url and PASSWORD not in repr(session.credentials)
    assert session.request("GET", "/api/events").status == 200
    assert all("authorization" not in r.headers for r in frigate.requests)
    assert logins(frigate) == 1
