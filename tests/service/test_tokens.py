"""Token verification against a real issuer on loopback (discovery + JWKS over HTTP), real crypto: what is
refused and why, the memory of verified tokens, and a token's one identity whatever shape its signature has."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey, RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ccweb.app import create_app
from ccweb.config import parse_config
from ccweb.errors import InvalidToken, UpstreamUnavailable
from ccweb.tokens import TokenVerifier, VerifiedToken, token_sha256
from support import RecordingSTS, serve

NOW = int(time.time())

CURVES = {  # the algorithm, its curve and the curve's order n (a signature (r, s) verifies as (r, n - s) too)
    "ES256": ("P-256", int("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551", 16)),
    "ES384": ("P-384", int("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF"
                           "C7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973", 16)),
    "ES512": ("P-521", int("01FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFA"
                           "51868783BF2F966B7FCC0148F709A5D03BB5C9B8899C47AEBB6FB71E91386409", 16)),
}


@dataclass
class Issuer:
    """A loopback OIDC issuer whose key set and availability a test can change."""

    rsa: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048, parameters={"kid": "rsa-1"}))
    ec: ECKey = field(default_factory=lambda: ECKey.generate_key("P-256", parameters={"kid": "ec-1"}))
    curves: dict[str, ECKey] = field(default_factory=lambda: {
        alg: ECKey.generate_key(curve, parameters={"kid": alg.lower()}) for alg, (curve, _) in CURVES.items()})
    url: str = ""
    jwks_hits: int = 0
    fail: bool = False

    def jwks(self) -> dict[str, Any]:
        keys: list[RSAKey | ECKey] = [self.rsa, self.ec, *self.curves.values()]
        return {"keys": [key.as_dict(private=False) for key in keys]}

    def app(self) -> Starlette:
        async def configuration(_: Request) -> JSONResponse:
            return JSONResponse({"issuer": self.url, "jwks_uri": f"{self.url}/jwks"})

        async def keys(_: Request) -> JSONResponse:
            self.jwks_hits += 1
            if self.fail:
                return JSONResponse({"error": "down"}, 503)
            return JSONResponse(self.jwks())

        return Starlette(routes=[Route("/.well-known/openid-configuration", configuration), Route("/jwks", keys)])

    def claims(self, **extra: Any) -> dict[str, Any]:
        base = {"iss": self.url, "aud": "ccweb", "sub": "user-1", "email": "a@example.com",
                "iat": NOW, "exp": NOW + 600}
        base.update(extra)
        return {k: v for k, v in base.items() if v is not None}

    def token(self, key: Any = None, alg: str = "RS256", header: dict[str, Any] | None = None,
              **claims: Any) -> str:
        key = key or self.rsa
        head = {"alg": alg, "kid": key.kid, **(header or {})}
        head = {k: v for k, v in head.items() if v is not None}
        return jwt.encode(head, self.claims(**claims), key, algorithms=[alg])


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    state = Issuer()
    with serve(state.app()) as url:
        state.url = url
        yield state


def verifier_for(issuer: Issuer, **kwargs: Any) -> Callable[[str], VerifiedToken]:
    config = parse_config({"issuers": [{"name": "corp", "issuer": issuer.url, "audiences": ["ccweb", "other"]}]})
    kwargs.setdefault("clock", lambda: NOW)  # tokens are minted around NOW, however late in the run this is

    def verify(token: str) -> VerifiedToken:
        async def run() -> VerifiedToken:
            async with httpx.AsyncClient() as http:
                return await TokenVerifier(config, http, **kwargs).verify(token)

        return asyncio.run(run())

    return verify


def b64(data: bytes | dict[str, Any]) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unsigned(header: dict[str, Any], claims: dict[str, Any], signature: str = "") -> str:
    return f"{b64(header)}.{b64(claims)}.{signature}"


def hs256_with(issuer: Issuer, secret: bytes) -> str:
    """The classic key-confusion attack: HMAC keyed with the issuer's *public* key material."""
    signing_input = f"{b64({'alg': 'HS256', 'kid': 'rsa-1'})}.{b64(issuer.claims())}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def foreign_key_token(issuer: Issuer, extra_header: dict[str, Any] | None = None) -> str:
    attacker = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})
    header = {"alg": "RS256", "kid": "rsa-1", **(extra_header or {})}
    return jwt.encode(header, issuer.claims(), attacker)


def tamper_payload(issuer: Issuer) -> str:
    head, _, sig = issuer.token().split(".")
    return f"{head}.{b64(issuer.claims(sub='admin'))}.{sig}"


def swap_header(issuer: Issuer, header: dict[str, Any]) -> str:
    """The issuer's genuine token with its header replaced (signature left as it was)."""
    _, body, sig = issuer.token().split(".")
    return f"{b64(header)}.{body}.{sig}"


def tamper_header(issuer: Issuer) -> str:
    return swap_header(issuer, {"alg": "RS256", "kid": "rsa-1", "typ": "at+jwt"})


def signed_rs256(issuer: Issuer, header: dict[str, Any], payload: bytes) -> str:
    """RS256 by hand with the issuer's own key, for headers a JOSE library would refuse to write."""
    signing_input = f"{b64(header)}.{b64(payload)}"
    private = issuer.rsa.private_key
    assert private is not None
    signature = private.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64(signature)}"


def resign_header(issuer: Issuer, header: dict[str, Any]) -> str:
    """A token correctly signed by the issuer's own key but carrying ``header``."""
    return signed_rs256(issuer, {"alg": "RS256", "kid": "rsa-1", **header}, json.dumps(issuer.claims()).encode())


REJECTED: list[tuple[str, Callable[[Issuer], str], str]] = [
    ("alg-none", lambda i: unsigned({"alg": "none"}, i.claims()), "algorithm"),
    ("alg-none-with-kid", lambda i: unsigned({"alg": "none", "kid": "rsa-1"}, i.claims(), "sig"), "algorithm"),
    ("alg-None-mixed-case", lambda i: unsigned({"alg": "None"}, i.claims()), "algorithm"),
    ("hs256-keyed-with-public-pem", lambda i: hs256_with(i, i.rsa.as_pem(private=False)), "algorithm"),
    ("hs256-keyed-with-modulus", lambda i: hs256_with(i, str(i.rsa.as_dict()["n"]).encode()), "algorithm"),
    ("hs512", lambda i: jwt.encode({"alg": "HS512"}, i.claims(), OctKey.generate_key(512),
                                   algorithms=["HS512"]), "algorithm"),
    ("foreign-key-same-kid", foreign_key_token, "bad_signature"),
    ("foreign-ec-key-same-kid", lambda i: i.token(ECKey.generate_key("P-256", parameters={"kid": "ec-1"}),
                                                   alg="ES256"), "bad_signature"),
    ("jku-header", lambda i: foreign_key_token(i, {"jku": "http://127.0.0.1:1/attacker.json"}), "forbidden_header"),
    ("jwk-header", lambda i: foreign_key_token(i, {"jwk": i.rsa.as_dict(private=False)}), "forbidden_header"),
    ("x5u-header", lambda i: resign_header(i, {"x5u": "https://attacker.example/cert.pem"}), "forbidden_header"),
    ("x5c-header", lambda i: resign_header(i, {"x5c": ["MIIB"]}), "forbidden_header"),
    ("crit-header", lambda i: resign_header(i, {"crit": ["exp"]}), "forbidden_header"),
    ("tampered-payload", tamper_payload, "bad_signature"),
    ("tampered-header", tamper_header, "bad_signature"),
    ("truncated-signature", lambda i: i.token()[:-10], "bad_signature"),
    ("empty-signature", lambda i: i.token().rsplit(".", 1)[0] + ".", "malformed"),
    ("alg-swapped-to-ps256", lambda i: swap_header(i, {"alg": "PS256", "kid": "rsa-1"}), "bad_signature"),
    ("es256-header-on-rsa-key", lambda i: resign_header(i, {"alg": "RS256", "kid": "ec-1"}), "bad_signature"),
    ("unknown-kid", lambda i: i.token(RSAKey.generate_key(2048, parameters={"kid": "nobody"})), "unknown_key"),
    ("kid-not-a-string", lambda i: resign_header(i, {"kid": 7}), "malformed"),
    ("wrong-iss", lambda i: i.token(iss="https://login.attacker.example"), "unknown_issuer"),
    ("iss-trailing-slash", lambda i: i.token(iss=i.url + "/"), "unknown_issuer"),
    ("iss-missing", lambda i: i.token(iss=None), "unknown_issuer"),
    ("wrong-aud", lambda i: i.token(aud="someone-else"), "audience"),
    ("aud-list-without-ours", lambda i: i.token(aud=["a", "b"]), "audience"),
    ("aud-missing", lambda i: i.token(aud=None), "missing_claim"),
    ("azp-another-client-beside-ours", lambda i: i.token(aud=["other-app", "ccweb"], azp="other-app"),
     "authorized_party"),
    ("azp-another-client-single-aud", lambda i: i.token(azp="other-app"), "authorized_party"),
    ("azp-empty", lambda i: i.token(azp=""), "authorized_party"),
    ("azp-a-list-of-ours", lambda i: i.token(azp=["ccweb"]), "authorized_party"),
    ("azp-null", lambda i: signed_rs256(i, {"alg": "RS256", "kid": "rsa-1"},
                                        json.dumps({**i.claims(), "azp": None}).encode()), "authorized_party"),
    ("expired", lambda i: i.token(exp=NOW - 3600, iat=NOW - 7200), "expired"),
    ("expired-beyond-leeway", lambda i: i.token(exp=NOW - 120), "expired"),
    ("exp-missing", lambda i: i.token(exp=None), "missing_claim"),
    ("exp-not-a-number", lambda i: i.token(exp="tomorrow"), "invalid_claim"),
    ("nbf-in-future", lambda i: i.token(nbf=NOW + 3600), "not_yet_valid"),
    ("iat-in-future", lambda i: i.token(iat=NOW + 3600), "not_yet_valid"),
    ("sub-missing", lambda i: i.token(sub=None), "missing_claim"),
    ("sub-empty", lambda i: i.token(sub=""), "invalid_claim"),
    ("oversized", lambda i: i.token(padding="x" * 20000), "too_large"),
    ("garbage", lambda i: "not-a-token", "malformed"),
    ("two-parts", lambda i: ".".join(i.token().split(".")[:2]), "malformed"),
    ("jwe-five-parts", lambda i: "a.b.c.d.e", "malformed"),
    ("header-not-json", lambda i: "bm90IGpzb24." + i.token().split(".", 1)[1], "malformed"),
    ("payload-json-array", lambda i: signed_rs256(i, {"alg": "RS256", "kid": "rsa-1"}, b"[1,2]"), "malformed"),
    ("header-nested-deeply", lambda i: b64(b"[" * 5000 + b"]" * 5000) + "." + i.token().split(".", 1)[1],
     "malformed"),
    ("alg-a-list", lambda i: swap_header(i, {"alg": ["RS256"], "kid": "rsa-1"}), "algorithm"),
    ("alg-an-object", lambda i: swap_header(i, {"alg": {}, "kid": "rsa-1"}), "algorithm"),
    ("signed-payload-nested-deeply", lambda i: signed_rs256(i, {"alg": "RS256", "kid": "rsa-1"},
                                                            b"[" * 5000 + b"]" * 5000), "malformed"),
    ("exp-past-the-year-9999", lambda i: i.token(exp=1e308), "invalid_claim"),
]


@pytest.mark.parametrize(("name", "make", "reason"), REJECTED, ids=[case[0] for case in REJECTED])
def test_rejected_tokens(issuer: Issuer, name: str, make: Callable[[Issuer], str], reason: str) -> None:
    token = make(issuer)
    with pytest.raises(InvalidToken) as caught:
        verifier_for(issuer)(token)
    assert caught.value.reason == reason
    assert caught.value.status == 401
    assert caught.value.headers() == {"WWW-Authenticate": 'Bearer error="invalid_token"'}
    assert token not in caught.value.detail


ACCEPTED: list[tuple[str, Callable[[Issuer], str]]] = [
    ("rs256", lambda i: i.token()),
    ("es256", lambda i: i.token(i.ec, alg="ES256")),
    ("ps256", lambda i: i.token(alg="PS256")),
    ("aud-list-with-ours", lambda i: i.token(aud=["x", "ccweb"])),
    ("azp-ours", lambda i: i.token(aud=["other-app", "ccweb"], azp="ccweb")),
    ("azp-our-other-audience", lambda i: i.token(azp="other")),
    ("second-audience", lambda i: i.token(aud="other")),
    ("expired-within-leeway", lambda i: i.token(exp=NOW - 10)),
    ("no-kid-tries-published-keys", lambda i: i.token(header={"kid": None})),
]


@pytest.mark.parametrize(("name", "make"), ACCEPTED, ids=[case[0] for case in ACCEPTED])
def test_accepted_tokens(issuer: Issuer, name: str, make: Callable[[Issuer], str]) -> None:
    verified = verifier_for(issuer)(make(issuer))
    assert verified.subject == "user-1"
    assert verified.issuer.name == "corp"
    assert len(verified.sha256) == 64


def test_unknown_kids_right_after_a_fetch_fetch_nothing(issuer: Issuer) -> None:
    config = parse_config({"issuers": [{"name": "corp", "issuer": issuer.url, "audiences": ["ccweb"]}]})
    strangers = [issuer.token(RSAKey.generate_key(2048, parameters={"kid": f"k{n}"})) for n in range(20)]

    async def run() -> int:
        async with httpx.AsyncClient() as http:
            verifier = TokenVerifier(config, http, clock=lambda: NOW)
            before = issuer.jwks_hits
            await verifier.verify(issuer.token())
            for token in strangers:
                with pytest.raises(InvalidToken):
                    await verifier.verify(token)
            return issuer.jwks_hits - before

    assert asyncio.run(run()) == 1  # the first fetch; the flood, at the same moment, causes no more


def test_identity_provider_down_with_no_keys_is_503(issuer: Issuer) -> None:
    issuer.fail = True
    try:
        with pytest.raises(UpstreamUnavailable) as caught:
            verifier_for(issuer)(issuer.token())
    finally:
        issuer.fail = False
    assert caught.value.status == 503
    assert caught.value.retry_after is not None


def remembering_verifier(issuer: Issuer, clock: Callable[[], float], **kwargs: Any) -> tuple[
    Callable[[str], VerifiedToken], TokenVerifier
]:
    """One verifier kept across calls (each call runs on its own event loop with its own HTTP client)."""
    config = parse_config({"issuers": [{"name": "corp", "issuer": issuer.url, "audiences": ["ccweb"]}]})
    holder: dict[str, TokenVerifier] = {}

    def verify(token: str) -> VerifiedToken:
        async def run() -> VerifiedToken:
            async with httpx.AsyncClient() as http:
                verifier = holder.setdefault("v", TokenVerifier(config, http, clock=clock, **kwargs))
                for keys in verifier.issuer_keys():
                    keys.http = http
                return await verifier.verify(token)

        return asyncio.run(run())

    verify(issuer.token())  # builds the verifier and fetches the key set
    return verify, holder["v"]


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every token whose signature is checked, in order."""
    from joserfc import jws

    checked: list[str] = []
    real = jws.deserialize_compact

    def counting(token: str, *args: Any, **kwargs: Any) -> Any:
        checked.append(token)
        return real(token, *args, **kwargs)

    monkeypatch.setattr(jws, "deserialize_compact", counting)  # the module ccweb.tokens checks signatures with
    return checked


def test_a_repeated_token_is_checked_once_and_the_memory_is_bounded(issuer: Issuer, checks: list[str]) -> None:
    verify, verifier = remembering_verifier(issuer, lambda: NOW, max_verified=2)
    first, second, third = (issuer.token(sub=f"repeat-{n}") for n in (1, 2, 3))
    checks.clear()
    for _ in range(3):
        assert verify(first).subject == "repeat-1"
    assert checks == [first]  # the signature was checked once; the repeats cost a hash

    head, body, signature = first.split(".")
    forged = f"{head}.{body}.{signature[:-4]}AAAA"  # the remembered token with another signature
    with pytest.raises(InvalidToken) as caught:
        verify(forged)
    assert caught.value.reason == "bad_signature"

    verify(second)
    verify(third)
    assert len(verifier) == 2  # bounded: the least recently used (first) went
    checks.clear()
    verify(first)
    assert checks == [first]


def test_a_remembered_token_still_expires(issuer: Issuer) -> None:
    now = [float(NOW)]
    verify, _ = remembering_verifier(issuer, lambda: now[0])
    token = issuer.token(exp=NOW + 600)
    assert verify(token).subject == "user-1"
    now[0] = NOW + 600 + 61  # past exp and the 60 s leeway
    with pytest.raises(InvalidToken) as caught:
        verify(token)
    assert caught.value.reason == "expired"


def test_a_remembered_token_is_refused_once_its_key_is_withdrawn() -> None:
    rotating = Issuer()
    with serve(rotating.app()) as url:
        rotating.url = url
        now = [float(NOW)]
        verify, _ = remembering_verifier(rotating, lambda: now[0], key_max_age=300)
        token = rotating.token()
        assert verify(token).subject == "user-1"
        # The identity provider withdraws the key (say, it leaked) and publishes a new one under another kid.
        rotating.rsa = RSAKey.generate_key(2048, parameters={"kid": "rsa-2"})
        now[0] += 120
        assert verify(token).subject == "user-1"  # within the key set's max age, as before this memory existed
        now[0] += 300  # the key set is now older than its max age: it is fetched again, without rsa-1
        with pytest.raises(InvalidToken) as caught:
            verify(token)
        assert caught.value.reason == "unknown_key"
        assert verify(rotating.token()).subject == "user-1"


def test_requests_bringing_the_same_token_at_once_share_one_check(issuer: Issuer, checks: list[str]) -> None:
    config = parse_config({"issuers": [{"name": "corp", "issuer": issuer.url, "audiences": ["ccweb"]}]})
    good = issuer.token(sub="crowd-1")
    head, body, signature = issuer.token(sub="crowd-2").split(".")
    forged = f"{head}.{body}.{signature[:-4]}AAAA"
    forged_twin = f"{good.rsplit('.', 1)[0]}.{signature}"  # what `good` signs, with another token's signature

    async def run() -> tuple[list[Any], list[Any]]:
        async with httpx.AsyncClient() as http:
            verifier = TokenVerifier(config, http, clock=lambda: NOW)  # no key set yet: they all wait for it
            both = await asyncio.gather(*(verifier.verify(token) for _ in range(10) for token in (good, forged_twin)),
                                        return_exceptions=True)
            refused = await asyncio.gather(*(verifier.verify(forged) for _ in range(20)), return_exceptions=True)
            return both, refused

    both, refused = asyncio.run(run())
    accepted, twins = both[0::2], both[1::2]
    assert all(isinstance(v, VerifiedToken) and v.subject == "crowd-1" for v in accepted), accepted
    assert all(isinstance(e, InvalidToken) and e.reason == "bad_signature" for e in twins + refused), twins + refused
    assert checks == [good, forged_twin, forged]  # one signature check each, not ten or twenty


def test_a_token_issued_to_another_client_is_refused_with_a_sentence(issuer: Issuer) -> None:
    with pytest.raises(InvalidToken) as caught:
        verifier_for(issuer)(issuer.token(aud=["other-app", "ccweb"], azp="other-app"))
    assert caught.value.detail == (
        "The OIDC token was refused: it was issued to another application (its 'azp', the client it was issued "
        "to, is none of: ccweb, other); use a token issued for this service."
    )


# --- one token, one identity ------------------------------------------------------------------------------


def reshaped(token: str, order: int) -> str:
    """``token`` with its ECDSA signature (r, s) re-shaped as (r, n - s): as valid, but other bytes."""
    signing_input, signature = token.rsplit(".", 1)
    raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    half = len(raw) // 2
    s = int.from_bytes(raw[half:], "big")
    return f"{signing_input}.{b64(raw[:half] + (order - s).to_bytes(half, 'big'))}"


def signed_part_sha256(token: str) -> str:
    """What an operator computes from a token: ``printf %s "${TOKEN%.*}" | sha256sum``."""
    return hashlib.sha256(token.rsplit(".", 1)[0].encode()).hexdigest()


@pytest.mark.parametrize("alg", list(CURVES))
def test_a_reshaped_ecdsa_signature_is_the_same_token(issuer: Issuer, checks: list[str], alg: str) -> None:
    token = issuer.token(issuer.curves[alg], alg=alg, sub=f"twin-{alg}")
    twin = reshaped(token, CURVES[alg][1])
    assert twin != token
    verify, verifier = remembering_verifier(issuer, lambda: NOW)
    remembered = len(verifier)
    checks.clear()
    assert verify(token).sha256 == verify(twin).sha256 == token_sha256(twin) == signed_part_sha256(token)
    assert len(verifier) == remembered + 1  # one memory entry for the two shapes
    assert checks == [token, twin]  # the twin's own signature was checked: it was not taken on trust
    for _ in range(2):
        verify(token)
        verify(twin)
    assert checks == [token, twin]  # both shapes are now remembered


def test_a_forged_signature_over_what_a_remembered_token_signs_is_refused(issuer: Issuer, checks: list[str]) -> None:
    verify, verifier = remembering_verifier(issuer, lambda: NOW)
    token = issuer.token(issuer.ec, alg="ES256", sub="victim")
    assert verify(token).subject == "victim"
    signing_input = token.rsplit(".", 1)[0]
    other = issuer.token(issuer.ec, alg="ES256", sub="someone-else").rsplit(".", 1)[1]
    for signature in (b64(bytes(64)), b64(b"\xff" * 64), other, reshaped(f"x.{other}", CURVES["ES256"][1])[2:]):
        forged = f"{signing_input}.{signature}"
        with pytest.raises(InvalidToken) as caught:
            verify(forged)
        assert caught.value.reason == "bad_signature", signature
        assert token_sha256(forged) == token_sha256(token)  # the audit names the token it forges
    checks.clear()
    assert verify(token).subject == "victim"
    assert checks == []  # the genuine token is still remembered: a forgery neither poisons nor evicts it
    assert len(verifier) == 2


def test_the_audit_line_names_a_token_by_what_its_issuer_signed(
    issuer: Issuer, caplog: pytest.LogCaptureFixture
) -> None:
    config = parse_config({
        "issuers": [{"name": "corp", "issuer": issuer.url, "audiences": ["ccweb"]}],
        "rules": [{"name": "readers", "issuer": "corp", "claims": {"email": {"pattern": r".+@example\.com"}},
                   "role_arn": "arn:aws:iam::111122223333:role/readers", "repositories": ["*"], "access": "read"}],
    })
    app = create_app(config, sts=RecordingSTS(clock=lambda: NOW), clock=lambda: NOW)
    token = issuer.token(issuer.ec, alg="ES256", sub="audited")
    twin = reshaped(token, CURVES["ES256"][1])
    forged = f"{token.rsplit('.', 1)[0]}.{b64(bytes(64))}"
    caplog.set_level(logging.INFO, logger="ccweb.audit")
    with serve(app) as url:
        statuses = [
            httpx.post(f"{url}/v1/credentials", headers={"Authorization": f"Bearer {sent}"}, timeout=30,
                       json={"protocol": "https", "host": "git-codecommit.us-east-2.amazonaws.com",
                             "path": "v1/repos/app"}).status_code
            for sent in (token, twin, forged)
        ]
    assert statuses == [200, 200, 401]
    lines = [r.fields for r in caplog.records if r.name == "ccweb.audit"]  # type: ignore[attr-defined]
    assert [line["outcome"] for line in lines] == ["issued", "issued", "invalid_token"]
    assert [line["token_sha256"] for line in lines] == [signed_part_sha256(token)] * 3
    assert len(app.state.policy.current.verifier) == 1
