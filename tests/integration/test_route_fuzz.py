"""Every route, every role, hostile parameters: never a server error (issue 9 §1).

Hypothesis drives each route of the app with query and form parameters drawn from the names the
app actually reads (every form field, every query argument) and values an attacker would try:
dates at and beyond the calendar's edges, huge and negative numbers, ids of other people's
records, strings of every size and script, control characters, and invalid UTF-8 in the query
string. Each role runs as itself, logged in, with a valid CSRF token (a forged form would stop
at the CSRF check and test nothing). The only assertion: no 5xx.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_wtf import FlaskForm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from wtforms.fields.core import UnboundField

import hub.blueprints.dpo
import hub.forms  # noqa: F401 - registers the forms
from hub.models import Case, OperationalGroup, Organisation, User
from tests.conftest import Account, FakeClock, csrf_token, login

ROLES = ["admin", "dpo", "coordinatrice", "cpip", "conseillere", "educateur", "logement"]
# Routes that end the session or ask other services: they are tested elsewhere.
SKIP = {"static", "auth.logout", "main.healthz", "api.token"}
QUERY_NAMES = [
    "page",
    "personne",
    "next",
    "finalite",
    "groupe",
    "langue",
    "statut",
    "recu",
    "q",
    "etat",
    "apres",
    "start",
    "end",
    "object_type",
    "object_id",
    "actor_user",
    "actor_org",
    "action",
    "decision",
    "cursor",
    "sender",
    "purpose",
    "recipient_kind",
    "recipient_roles",
]


def _subclasses(cls: type) -> Iterator[type]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def _form_field_names() -> list[str]:
    names: set[str] = set()
    for form in _subclasses(FlaskForm):
        for name in dir(form):
            if isinstance(getattr(form, name, None), UnboundField):
                names.add(name)
    names |= {
        "edit-day",
        "annuler",
        "lang",
        "langue",
        "next",
        "agents",
        "justice.date_sortie",
        "identite.date_naissance",
        "parcours.date_entree",
        "sortie.type",
    }
    return sorted(names)


FORM_NAMES = _form_field_names()

edge_dates = st.sampled_from(
    [
        "0001-01-01",
        "9999-12-31",
        "1899-12-31",
        "2100-12-31",
        "2101-01-01",
        "2026-02-30",
        "2026-13-01",
        "2026-1-1",
        "+2026-01-01",
        "2026-01-01T00:00",
        "00000-01-01",
    ]
) | st.dates().map(lambda d: d.isoformat())
numbers = st.integers(min_value=-(2**70), max_value=2**70).map(str) | st.sampled_from(
    ["0", "-1", "1e309", "NaN", "0x10", "１", "2147483648", "9223372036854775808"]
)
texts = (
    st.text(max_size=40)
    | st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x1F), max_size=20)
    | st.sampled_from(
        [
            "\r\n",
            "../../etc/passwd",
            "<script>x</script>",
            "' OR 1=1 --",
            "Ω≈ç√∫",
            "عربى",
            "中文",
            "🙂" * 50,
            "\u202e",
            "%00",
        ]
    )
    | st.integers(min_value=201, max_value=6000).map(lambda n: "é" * n)
)


NASTY = [
    "/x\r\nSet-Cookie: a=1",
    "0001-01-01",
    "9999-12-31",
    "-99999999999999999999999",
    "é" * 5000,
    "\x00\x7f\u0085",
    "\udcff".encode("utf-8", "surrogatepass").decode("latin-1"),
]


def _values(known: list[str]) -> st.SearchStrategy[str]:
    return edge_dates | numbers | texts | st.sampled_from(known)


@pytest.fixture
def known_ids(app: Flask, territory: dict[str, Account]) -> list[str]:
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        return (
            list(session.scalars(select(Case.reference)))
            + list(session.scalars(select(User.public_id)))
            + list(session.scalars(select(Organisation.public_id)))
            + list(session.scalars(select(OperationalGroup.public_id)))
            + ["1", "2", "3", "999999"]
        )


def _routes(app: Flask) -> list[tuple[str, str, list[str]]]:
    out = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint in SKIP:
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            out.append((rule.rule, method, sorted(rule.arguments)))
    return sorted(out)


def _path(rule: str, values: dict[str, str]) -> str:
    def fill(match: re.Match[str]) -> str:
        return quote(values.get(match.group(2), "x"), safe="")

    return re.sub(r"<(?:[^:<>]+:)?([^<>]*?)?([a-z_]+)>", fill, rule)


@pytest.mark.slow
@pytest.mark.config(ratelimit_enabled=False)
@pytest.mark.parametrize("db_backend", ["sqlite"], indirect=False)
@pytest.mark.parametrize("role", ROLES)
def test_no_route_answers_a_server_error_whatever_the_parameters(
    app: Flask,
    clock: FakeClock,
    territory: dict[str, Account],
    known_ids: list[str],
    role: str,
) -> None:
    client: FlaskClient = app.test_client()
    routes = _routes(app)

    def session_token() -> str:
        """A valid CSRF token of a live session: a hostile request may have ended the session
        (a failed re-authentication…); log in again rather than test the login page only."""
        page = client.get("/compte/mot-de-passe")
        if page.status_code != 200:
            state = app.extensions["maillon"]
            with state.session_factory() as session:  # a lockout must not stop the walk
                user = session.scalar(select(User).where(User.email == territory[role].email))
                assert user is not None
                user.failed_logins, user.locked_until, user.active = 0, None, True
                session.commit()
            assert login(client, clock, territory[role]).status_code == 302
        return csrf_token(client, "/compte/mot-de-passe")

    # First, systematically: every route once with every parameter set to each nasty value
    # (a CRLF, the calendar's edges, a huge number, a long text, invalid UTF-8)…
    for rule, method, _args in routes:
        for nasty in NASTY:
            path = _path(rule, dict.fromkeys(_args, nasty))
            params = dict.fromkeys(QUERY_NAMES, nasty)
            kwargs: dict[str, Any] = {"query_string": params}
            if method == "POST":
                kwargs["data"] = {
                    **dict.fromkeys(FORM_NAMES, nasty),
                    "csrf_token": session_token(),
                }
            response = client.open(path, method=method, **kwargs)
            assert response.status_code < 500, (method, path, repr(nasty), response.status_code)

    # …then explore combinations.
    @settings(
        max_examples=150,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(
        route=st.sampled_from(routes),
        path_values=st.dictionaries(
            st.sampled_from(
                [
                    "reference",
                    "public_id",
                    "consent_id",
                    "meeting_id",
                    "information_id",
                    "finding_id",
                    "object_type",
                    "object_id",
                    "token",
                    "version",
                    "number",
                ]
            ),
            _values(known_ids),
            max_size=4,
        ),
        query=st.dictionaries(st.sampled_from(QUERY_NAMES), _values(known_ids), max_size=4),
        raw_query=st.binary(max_size=12),
        form=st.dictionaries(st.sampled_from(FORM_NAMES), _values(known_ids), max_size=6),
    )
    def attempt(
        route: tuple[str, str, list[str]],
        path_values: dict[str, str],
        query: dict[str, str],
        raw_query: bytes,
        form: dict[str, str],
    ) -> None:
        rule, method, _args = route
        path = _path(rule, path_values)
        # Invalid UTF-8 as well, percent-encoded byte by byte.
        extra = "".join(f"%{b:02X}" for b in raw_query)
        query_string = "&".join(f"{quote(k)}={quote(v)}" for k, v in query.items())
        if extra:
            query_string += f"&x={extra}"
        kwargs: dict[str, Any] = {"query_string": query_string}
        if method == "POST":
            kwargs["data"] = {**form, "csrf_token": session_token()}
        response = client.open(path, method=method, **kwargs)
        assert response.status_code < 500, (method, path, query, form, response.status_code)

    attempt()
