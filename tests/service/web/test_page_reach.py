"""The page's "can I reach …?" box: it answers for the signed-in person's own claims with ``ccweb explain``'s
reasoning (the deny list first, then each rule and why it did or did not apply), for a name or a clone URL, and
turns bad input into one sentence beside the box."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from webpage import Page, PageClient, policy

GIT_HOST = "git.example.com"


@pytest.fixture
def page() -> Iterator[PageClient]:
    client = PageClient(policy(git_endpoints=[{"host": GIT_HOST, "region": "eu-west-1"}]))
    yield client
    client.close()


def ask(page: PageClient, repo: str, region: str | None = None) -> tuple[str | None, str]:
    """(the answer's outcome, its text) for ``repo`` (and ``region``)."""
    params = {"repo": repo} if region is None else {"repo": repo, "region": region}
    response = page.get(**params)
    assert response.status_code == 200
    shown = Page.of(response)
    [answer] = shown.all(id="reach-answer")
    return answer.get("data-outcome"), answer.all_text


@pytest.mark.parametrize(("user", "repo", "region", "answer"), [
    ("alice", "demo", None, ("granted", ["granted: rule 'developers' gives write access as "
                                         "arn:aws:iam::111122223333:role/ccweb-developers, SourceIdentity "
                                         "alice@example.com", "in us-east-1 (the default"])),
    ("bob", "demo", "eu-west-1", ("granted", ["granted: rule 'contractors' gives read access",
                                              "rules[0] 'developers': does not apply",
                                              'claim groups = ["contractors"]: no element equals "engineering"'])),
    ("bob", "other", None, ("denied", ["denied: no rule grants 'other' in us-east-1",
                                       "repository 'other' is not in its repositories ('demo')"])),
    ("bob", f"https://{GIT_HOST}/v1/repos/demo", None, ("granted", ["repository 'demo' in eu-west-1;"])),
    ("bob", "https://git-codecommit.ap-south-1.amazonaws.com/v1/repos/demo", None,
     ("granted", ["repository 'demo' in ap-south-1;"])),
    ("mallory", "demo", None, ("denied", ["denied: no rule grants 'demo' in us-east-1",
                                          "does not match the pattern '.+@example\\.com'"])),
], ids=["alice-granted", "bob-granted-elsewhere", "bob-no-rule", "bob-git-endpoint-url", "bob-codecommit-url",
        "mallory-no-rule"])
def test_the_box_answers_with_the_reasons_for_your_own_claims(
        page: PageClient, user: str, repo: str, region: str | None, answer: tuple[str, list[str]]) -> None:
    outcome, said = answer
    page.sign_in(user)
    got, text = ask(page, repo, region)
    assert got == outcome, text
    for sentence in said:
        assert sentence in text, text
    assert text.index("deny list") < text.index("rules"), "the deny list first"


def test_a_granted_repository_comes_with_its_clone_url(page: PageClient) -> None:
    page.sign_in("alice")
    page.get(repo="app", region="eu-west-1")
    shown = Page.of(page.get(repo="app", region="eu-west-1"))
    assert "git clone https://git.example.com/v1/repos/app" in shown.text_of("reach-answer")
    shown = Page.of(page.get(repo="app"))
    assert "git clone https://git-codecommit.us-east-1.amazonaws.com/v1/repos/app" in shown.text_of("reach-answer")


def test_the_deny_list_is_checked_first_without_naming_whom_it_suspends(page: PageClient) -> None:
    deny = [{"name": "no-demo-for-alice", "issuer": "corp", "claims": {"email": "alice@example.com"}},
            {"name": "later", "claims": {"email": "nobody@example.com"}}]
    page.sign_in("bob")
    page.reload(policy(git_endpoints=page.config["git_endpoints"], deny=deny))
    outcome, text = ask(page, "demo")
    assert outcome == "granted", text
    assert "deny list, checked first: deny[0]: does not apply deny[1]: does not apply rules, first match" in text
    assert "alice@example.com" not in text and "no-demo-for-alice" not in text, "who else is suspended is not said"
    assert "nobody@example.com" not in text


@pytest.mark.parametrize(("repo", "region", "sentence"), [
    ("not a repository!", None, "'not a repository!' is not a repository name"),
    ("demo", "mars-north-1", "'mars-north-1' is not an AWS region (e.g. us-east-1)"),
    ("https://git-codecommit.us-east-1.amazonaws.com/v1/repos/demo", "eu-west-1",
     "The region eu-west-1 contradicts the URL, whose host is in us-east-1"),
    ("https://github.com/acme/app", None, "'github.com' is neither an AWS CodeCommit host nor a git endpoint"),
    ("http://git-codecommit.us-east-1.amazonaws.com/v1/repos/demo", None, "Refusing a credential for plain http"),
    ("", None, "Name a repository, or paste its clone URL."),
    ("x" * 3000, None, "longer than any repository name"),
    ("https://[abc/v1/repos/demo", None, "'https://[abc/v1/repos/demo' is not a clone URL: its host cannot be read"),
    ("https://a\uff03b/v1/repos/x", None, "'https://a\uff03b/v1/repos/x' is not a clone URL: its host cannot be read"),
    (".", None, "'.' is not a repository name"),
    ("..", "eu-west-1", "'..' is not a repository name"),
], ids=["not-a-name", "not-a-region", "region-contradicts-url", "not-codecommit", "plain-http", "empty", "too-long",
        "url-unclosed-bracket", "url-full-width-host", "dot", "dot-dot"])
def test_bad_input_is_one_sentence_beside_the_box(page: PageClient, repo: str, region: str | None,
                                                  sentence: str) -> None:
    page.sign_in("alice")
    outcome, text = ask(page, repo, region)
    assert outcome == "error"
    assert sentence in text, text
    assert "--repo" not in text and "--region" not in text, "the command line's options mean nothing here"


def test_signed_out_the_box_answers_no_one(page: PageClient) -> None:
    shown = Page.of(page.get(repo="demo"))
    assert shown.by_id("reach") is None and shown.by_id("reach-answer") is None


def test_the_question_stays_in_the_box(page: PageClient) -> None:
    page.sign_in("bob")
    shown = Page.of(page.get(repo="other", region="eu-west-1"))
    [repo] = shown.all("input", id="reach-repo")
    [region] = shown.all("input", id="reach-region")
    assert (repo.get("value"), region.get("value")) == ("other", "eu-west-1")
    [form] = shown.all("form", id="reach")
    assert (form.get("method"), form.get("action")) == ("get", "/")
    assert (repo.get("name"), region.get("name")) == ("repo", "region")
