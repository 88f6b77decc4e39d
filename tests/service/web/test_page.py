"""The service's page, ``GET /``: what a person signed out, or signed in as alice, bob or mallory, reads; the
deny list and a changed policy; a claim holding HTML shown as text; a page that runs nothing inline and
loads nothing from elsewhere, with labelled inputs and headings in order; and its static files."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from typing import Any

import pytest

from ccweb.routes import HELPER_PATH
from ccweb.shell_dist import SHELL_HELPER_PATH
from webpage import ROLE, Page, PageClient, policy


@pytest.fixture
def page() -> Iterator[PageClient]:
    client = PageClient(policy(web={"issuer": "corp", "client_id": "ccweb-web",
                                    "public_url": "https://ccweb.example.com",
                                    "session_secret": {"env": "CCWEB_TEST_SESSION_SECRET"}}))
    yield client
    client.close()


def test_signed_out_the_page_says_what_the_service_is_for_and_offers_sign_in(page: PageClient) -> None:
    response = page.get()
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    shown = Page.of(response)
    assert "CodeCommit" in shown.text_of("intro")
    [sign_in] = shown.all("a", id="sign-in")
    assert sign_in.get("href") == "/auth/login"
    for absent in ("who", "access", "reach", "sign-out", "reach-answer", "notice"):
        assert shown.by_id(absent) is None, absent
    assert shown.by_id("setup") is not None
    assert len(shown.all("section", data_platform=None)) == 7


def test_without_sign_in_configured_the_page_still_sets_you_up() -> None:
    client = PageClient(policy())
    try:
        shown = Page.of(client.get(repo="demo"))
    finally:
        client.close()
    assert not shown.all("a", id="sign-in"), "no web.issuer: nothing to sign in at"
    assert shown.by_id("intro") is not None
    assert shown.by_id("reach-answer") is None, "signed out, the box answers no one"
    assert "setup --url http://ccweb.test" in shown.text_of("setup-unix-download"), "the request's own URL"


def test_the_snippets_name_the_public_url_and_the_links_its_path() -> None:
    client = PageClient(policy(web={"public_url": "https://git.example.com/ccweb"}),
                        base_url="http://10.0.0.7:8080")
    try:
        shown = Page.of(client.get())
    finally:
        client.close()
    code = shown.text_of("setup-unix-download")
    assert "curl -fsSL https://git.example.com/ccweb/helper/ccweb-helper -o" in code
    assert "setup --url https://git.example.com/ccweb" in code
    assert "10.0.0.7" not in shown.root.all_text
    [stylesheet] = shown.all("link", rel="stylesheet")
    assert stylesheet.get("href") == "/ccweb/static/ccweb.css"
    assert all((s.get("src") or "").startswith("/ccweb/static/") for s in shown.all("script"))


def rules_shown(shown: Page) -> dict[str, tuple[str | None, str | None]]:
    return {str(li.get("data-rule")): (li.get("data-access"), li.get("data-role"))
            for li in shown.all("li", class_="rule")}


@pytest.mark.parametrize(("user", "identity", "rules"), [
    ("alice", "alice@example.com", {"developers": ("write", ROLE + "developers")}),
    ("bob", "bob@example.com", {"contractors": ("read", ROLE + "readers")}),
    ("mallory", "mallory@example.net", {}),
], ids=["alice", "bob", "mallory"])
def test_signed_in_each_person_sees_who_they_are_and_every_rule_that_grants_them_something(
        page: PageClient, user: str, identity: str, rules: dict[str, tuple[str, str]]) -> None:
    csrf = page.sign_in(user)
    response = page.get()
    shown = Page.of(response)
    [who] = shown.all(data_identity=None)
    assert who.get("data-identity") == identity
    assert identity in shown.text_of("who")
    [issuer] = shown.all(data_issuer=None)
    assert issuer.get("data-issuer") == "corp"
    assert "https://idp.example.com" in issuer.all_text
    assert rules_shown(shown) == rules
    assert (shown.by_id("no-access") is not None) == (not rules)
    for li in shown.all("li", class_="rule"):
        assert all(str(li.get(attribute)) in li.all_text for attribute in ("data-rule", "data-access", "data-role"))
    [form] = shown.all("form", id="sign-out")
    assert (form.get("method"), form.get("action")) == ("post", "/auth/logout")
    assert [i.get("value") for i in shown.all("input", name="csrf", type="hidden")] == [csrf]
    assert not shown.all("a", id="sign-in")
    assert shown.all("form", id="reach")


def test_the_identity_is_the_one_aws_sees_and_a_rule_without_its_claim_grants_nothing() -> None:
    rules = [{"name": "by-handle", "issuer": "corp", "claims": {"groups": "engineering"}, "role_arn": ROLE + "h",
              "repositories": ["app"], "access": "read", "source_identity": "handle"},
             {"name": "long-names", "issuer": "corp", "claims": {"groups": "engineering"}, "role_arn": ROLE + "l",
              "repositories": ["lib"], "access": "read"}]
    client = PageClient({**policy(), "rules": rules})
    try:
        client.sign_in({"sub": "u-1", "email": "first.last+tag@example.com", "email_verified": True,
                        "groups": ["engineering"]})
        shown = Page.of(client.get())
    finally:
        client.close()
    [who] = shown.all(data_identity=None)
    assert who.get("data-identity") == "first.last+tag@example.com"
    [handle] = shown.all("li", data_rule="by-handle")
    assert 'claim handle, which your sign-in does not carry, so it grants you nothing' in handle.all_text


def test_a_deny_entry_that_matches_ends_the_session_on_the_next_page(page: PageClient) -> None:
    page.sign_in("bob")
    suspended = policy(web=page.config["web"], deny=[{"name": "offboarding", "claims": {"email": "bob@example.com"},
                                                      "reason": "contract ended"}])
    page.reload(suspended)
    shown = Page.of(page.get(repo="demo"))
    assert "suspended by its operators (contract ended)" in shown.text_of("suspended")
    assert shown.by_id("who") is None and shown.by_id("reach-answer") is None
    assert shown.all("a", id="sign-in")
    again = Page.of(page.get())
    assert again.by_id("who") is None, "the session ended with the suspension"
    assert again.by_id("suspended") is None


def test_a_policy_that_reads_other_claims_since_sign_in_is_said(page: PageClient) -> None:
    page.sign_in("alice")
    assert Page.of(page.get()).by_id("policy-changed") is None
    changed = policy(web=page.config["web"])
    changed["rules"][0]["repositories"] = ["demo", "docs"]
    page.reload(changed)
    shown = Page.of(page.get())
    assert shown.by_id("policy-changed") is None, "the same claims read: the page decides exactly"
    [developers] = shown.all("li", data_rule="developers")
    assert "docs" in developers.all_text, "decided with the new policy"
    changed["rules"][0]["claims"] = {"groups": "engineering", "department": "r&d"}
    page.reload(changed)  # (the service ends such a session before its page: tests/service/web/test_session.py)
    assert "policy changed after you signed in" in Page.of(page.get()).text_of("policy-changed")


def test_an_ended_session_shows_the_page_signed_out_with_a_notice(page: PageClient) -> None:
    page.sign_in("alice", lasting=600)
    page.now += 601
    shown = Page.of(page.get())
    assert shown.by_id("who") is None
    [notice] = shown.all(id="notice")
    assert notice.get("role") == "alert"
    assert "sign in again" in notice.all_text
    assert Page.of(page.get()).by_id("notice") is None, "said once"


HTML_CLAIMS = {"sub": "<b>u-1</b>", "email": "<script>alert(1)</script>@example.com", "email_verified": True,
               "name": "<img src=x onerror=alert(2)>", "groups": ["engineering", "<i>x</i>"]}


def test_claims_holding_html_show_as_text_and_never_as_markup(page: PageClient) -> None:
    page.sign_in(HTML_CLAIMS)
    response = page.get(repo="<svg onload=alert(3)>", region="<u>eu</u>")
    assert "<script>alert" not in response.text and "<img src=x" not in response.text
    assert "<svg" not in response.text and "<b>u-1" not in response.text and "<u>eu" not in response.text
    shown = Page.of(response)
    assert "<script>alert(1)</script>@example.com" in shown.text_of("who"), "shown to the person, as text"
    assert not [s for s in shown.all("script") if s.get("src") is None]
    assert not shown.all("img") and not shown.all("svg") and not shown.all("b") and not shown.all("u")
    assert shown.all("input", id="reach-repo")[0].get("value") == "<svg onload=alert(3)>"


def test_the_page_runs_nothing_inline_and_loads_nothing_from_elsewhere(page: PageClient) -> None:
    page.sign_in("alice")
    signed_out = PageClient(policy())
    try:
        responses = (page.get(repo="demo"), signed_out.get())
    finally:
        signed_out.close()
    for response in responses:
        shown = Page.of(response)
        elements = shown.all()
        assert not shown.all("style"), "no <style>: the CSP is default-src 'self'"
        assert not [e.tag for e in elements if "style" in e.attrs], "no style= attributes"
        assert not [(e.tag, a) for e in elements for a in e.attrs if a.startswith("on")], "no inline handlers"
        for script in shown.all("script"):
            assert script.get("src") == "/static/copy.js" and not script.all_text
        urls = [e.get(a) or "" for e in elements for a in ("src", "href", "action") if a in e.attrs]
        assert all(u.startswith("/") or u.startswith("#") for u in urls), urls
        assert not re.search(r"javascript:", response.text, re.IGNORECASE)


def test_the_page_is_for_people_on_any_screen_and_with_any_means(page: PageClient) -> None:
    page.sign_in("bob")
    shown = Page.of(page.get(repo="other"))
    [html] = shown.all("html")
    assert html.get("lang") == "en"
    [viewport] = shown.all("meta", name="viewport")
    assert "width=device-width" in str(viewport.get("content"))
    assert len(shown.all("main")) == 1 and shown.all("header") and shown.all("footer")
    levels = [int(e.tag[1]) for e in shown.all() if re.fullmatch(r"h[1-6]", e.tag)]
    assert levels[0] == 1 and levels.count(1) == 1
    assert all(b <= a + 1 for a, b in itertools.pairwise(levels)), f"a heading level skipped: {levels}"
    labels = {str(label.get("for")) for label in shown.all("label")}
    inputs = [i for i in shown.all("input") if i.get("type") != "hidden"]
    assert inputs and all(i.get("id") in labels for i in inputs), "every input has its label"
    ids = [e.get("id") for e in shown.all(id=None)]
    assert len(ids) == len(set(ids)), "ids are unique"
    assert all(e.all_text for e in shown.all("button")), "every button says what it does"


def test_each_copyable_block_has_a_name_of_its_own(page: PageClient) -> None:
    """A screen reader lists the code blocks and their copy buttons (copy.js names each button after its block's
    ``aria-labelledby``): "A job" three times, or "With pip" on two systems, cannot be told apart."""
    page.sign_in("alice")
    shown = Page.of(page.get(repo="demo"))
    texts = {str(e.get("id")): e.all_text for e in shown.all(id=None)}
    blocks = shown.all("pre", data_copy=None)
    names = [", ".join(texts[i].rstrip(":") for i in str(pre.get("aria-labelledby") or "").split()) for pre in blocks]
    assert len(blocks) == 17 and all(names), names
    assert len(set(names)) == len(names), sorted(n for n in names if names.count(n) > 1)
    assert "GitLab CI, A job" in names and "Windows (PowerShell), With pip, in a checkout of ccweb's source" in names
    assert "Clone it" in names, "the reach box's git clone"
    assert "Azure Pipelines, On a Windows agent (PowerShell)" in names


def test_head_answers_as_get_without_a_body(page: PageClient) -> None:
    response = page.request("HEAD", "/")
    assert response.status_code == 200
    assert response.content == b""


def test_the_setup_names_the_downloads_the_service_serves(page: PageClient) -> None:
    shown = Page.of(page.get())
    assert f"https://ccweb.example.com{HELPER_PATH} " in shown.text_of("setup-unix-download")
    assert f"https://ccweb.example.com{SHELL_HELPER_PATH} " in shown.text_of("setup-unix-sh")
    assert f"https://ccweb.example.com{HELPER_PATH} " in shown.text_of("setup-windows-download")


@pytest.mark.parametrize("name", ["ccweb.css", "copy.js", "favicon.svg"])
def test_static_files_are_served_with_an_etag_and_kept_an_hour(page: PageClient, name: str) -> None:
    response = page.get(f"/static/{name}")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "public, max-age=3600"
    etag = response.headers["etag"]
    assert response.content
    again = page.request("GET", f"/static/{name}", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    head = page.request("HEAD", f"/static/{name}")
    assert head.status_code == 200 and head.headers["etag"] == etag


def test_static_media_types(page: PageClient) -> None:
    types: dict[str, Any] = {n: page.get(f"/static/{n}").headers["content-type"] for n in ("ccweb.css", "copy.js")}
    assert types == {"ccweb.css": "text/css; charset=utf-8", "copy.js": "text/javascript; charset=utf-8"}


@pytest.mark.parametrize("name", ["nothing.css", "..%2Fpage.py", "page.html", "..%2Ftemplates%2Fpage.html"])
def test_only_the_static_files_are_served(page: PageClient, name: str) -> None:
    response = page.get(f"/static/{name}")
    assert response.status_code == 404
    assert "extends" not in response.text and "import" not in response.text, "a file of the package is not served"
    if "%2F" not in name:  # a path with a slash reaches no route at all
        assert "There is no such file here." in response.text
