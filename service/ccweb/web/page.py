"""``GET /``: the service's own page — who you are, what you can reach and why, set-up for this service.

    home(request, ctx)                                the edge: one policy snapshot, the session, the query → HTML
    page_view(policy, signed, question, url, pinned)  pure: what the page shows, decided only through
                                                      ``Policy.decide`` (access, identity) and ``explain`` (the
                                                      "can I reach …?" box); the helper's SHA-256 in the CI snippets

A signed-in person's claims are the ones kept at sign-in (``Policy.kept_claims``), so the page decides exactly as
the API would on their ID token. A deny entry that now matches them ends the session on this very render.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Literal, Protocol

from starlette.requests import Request
from starlette.responses import Response

from ccweb.credentials import iso_time
from ccweb.explain import DEFAULT_REGION, ExplainError, Explanation, Step, explain, repository_target
from ccweb.helper_dist import helper_zipapp
from ccweb.iam import sts_name
from ccweb.policy import CompiledRule, Distributed, Entitled, Granted, Policy, RuleOutcome, Suspended, Untagged
from ccweb.reload import RunningPolicy
from ccweb.shell_dist import shell_download
from ccweb.web import session
from ccweb.web.render import link_base, render
from ccweb.web.session import SignedIn
from ccweb.web.snippets import (
    Clone,
    Pinned,
    Platform,
    ci_platforms,
    clone_url,
    first_clone,
    setup_platforms,
    without_python,
)

MAX_REPO_CHARACTERS = 2048
"""The longest ``repo`` the box takes: a clone URL is far shorter."""
MAX_REGION_CHARACTERS = 64
ISSUER_GONE = "The issuer you signed in at is no longer configured as it was; sign in again."
Outcome = Literal["granted", "denied", "suspended", "error"]


class PageContext(Protocol):
    """What the page needs of the app: the running policy and the clock."""

    @property
    def running(self) -> RunningPolicy: ...

    @property
    def clock(self) -> Callable[[], float]: ...


@dataclass(frozen=True, slots=True)
class Question:
    """The reach box's question, as the query string asked it (``repo`` None: not asked)."""

    repo: str | None = None
    region: str | None = None

    @classmethod
    def of(cls, query: Mapping[str, str]) -> Question:
        return cls(query.get("repo"), query.get("region"))


@dataclass(frozen=True, slots=True)
class Answer:
    outcome: Outcome
    lines: tuple[str, ...]
    clone: str | None = None
    """The clone URL of a granted repository."""


@dataclass(frozen=True, slots=True)
class RuleView:
    name: str
    access: str
    role_arn: str
    repositories: tuple[str, ...]
    source_identity: str | None
    """The SourceIdentity this rule would give; None when the token lacks the rule's ``source_identity`` claim."""
    identity_claim: str | None
    tags: tuple[tuple[str, str], ...] = ()
    """The session tags a request this rule decides carries, (key, value) in the rule's order."""
    refused: str | None = None
    """Why a request this rule decides is refused (a session tag's claim, a claim the sign-in left out), as a
    sentence; None when it is granted, or refused for the SourceIdentity claim (``source_identity`` None)."""


@dataclass(frozen=True, slots=True)
class Who:
    issuer: str
    issuer_url: str
    subject: str
    identity: str
    """The identity as AWS sees it: the SourceIdentity (and RoleSessionName) of the first matching rule."""
    expires_at: str
    claims: tuple[tuple[str, str], ...]
    """The claims the policy reads, each value as JSON text."""


def _rule_view(rule: CompiledRule, name: str | None, outcome: RuleOutcome) -> RuleView:
    refused = None
    if isinstance(outcome, Untagged):
        refused = f"the ccweb {outcome.sentence('your sign-in')}, so it grants you nothing"
    elif isinstance(outcome, Distributed):
        refused = f"the ccweb {outcome.sentence('your sign-in', 'you are')}"
    tags = outcome.request.tags if isinstance(outcome, Granted) else ()
    return RuleView(rule.name, rule.access, rule.role_arn, tuple(rule.source.repositories), name, rule.identity_claim,
                    tags, refused)


def _answer(policy: Policy, signed: SignedIn, question: Question) -> Answer | None:
    """The reach box's answer for ``signed``'s own claims: ``explain``, the very reasoning of ``ccweb explain``."""
    if question.repo is None:
        return None
    repo, region = question.repo.strip(), (question.region or "").strip() or None
    if not repo:
        return Answer("error", ("Name a repository, or paste its clone URL.",))
    if len(repo) > MAX_REPO_CHARACTERS or len(region or "") > MAX_REGION_CHARACTERS:
        return Answer("error", ("That is longer than any repository name, clone URL or region.",))
    try:
        repository, region, default = repository_target(policy.config, repo, region)
        result = explain(policy, signed.claims, repository, region, signed.issuer)
    except ExplainError as exc:
        return Answer("error", (_for_the_page(str(exc)),))
    lines = _unnamed_deny_entries(result).lines()
    if default:
        lines[0] = lines[0].replace(f" in {region}", f" in {region} (the default; name another region to ask there)", 1)
    decision = result.decision
    outcome: Outcome = ("granted" if isinstance(decision, Granted) else
                        "suspended" if isinstance(decision, Suspended) else "denied")
    clone = clone_url(policy, repository, region) if isinstance(decision, Granted) else None
    return Answer(outcome, tuple(lines), clone)


def _unnamed_deny_entries(result: Explanation) -> Explanation:
    """``result`` without the names and conditions of the deny entries that do not apply: they are about other
    people (``email = "eve@example.com"``, ``offboarded-eve``), and the page is open to everyone who signs in. An
    entry that applies is this person's own suspension, which the API's answer names too."""
    deny = tuple(step if step.outcome == "applies" else Step(step.label.split(" ", 1)[0], step.outcome)
                 for step in result.deny)
    return replace(result, deny=deny)


def _for_the_page(sentence: str) -> str:
    """An ``ExplainError`` sentence without the command line's option names."""
    for option, word in (("--repo: ", ""), ("--region: ", ""), ("--region ", "The region ")):
        if sentence.startswith(option):
            sentence = word + sentence.removeprefix(option)
            break
    return sentence[:1].upper() + sentence[1:]


def _shown(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 300 else text[:297] + "..."


@dataclass(frozen=True, slots=True)
class PageView:
    """Everything ``page.html`` shows."""

    url: str
    sign_in: bool
    who: Who | None
    rules: tuple[RuleView, ...]
    suspended: str | None
    policy_changed: bool
    answer: Answer | None
    question: Question
    clone: Clone
    setup: tuple[Platform, ...]
    ci: tuple[Platform, ...]
    ci_audience: str
    without_python: str
    csrf: str | None
    default_region: str = DEFAULT_REGION


def page_view(policy: Policy, signed: SignedIn | None, question: Question, url: str, pinned: Pinned) -> PageView:
    """What the page shows to ``signed`` (None: signed out), for the service at ``url`` whose downloads have the
    SHA-256s ``pinned``. Pure."""
    config = policy.config
    who: Who | None = None
    rules: tuple[RuleView, ...] = ()
    suspended: str | None = None
    answer: Answer | None = None
    if signed is not None:
        decision = policy.decide(signed.issuer, signed.claims, None)
        if isinstance(decision, Suspended):
            entry = decision.entry
            suspended = (f"Access to ccweb for {decision.identity} is suspended by its operators"
                         + (f" ({entry.reason.rstrip('.')})" if entry.reason else "")
                         + "; ask them to lift the suspension. You are signed out.")
            signed = None
        elif isinstance(decision, Distributed):
            suspended = (f"Access to ccweb for {decision.identity} is refused: the ccweb "
                         f"{decision.sentence('your sign-in', 'you are')}. You are signed out.")
            signed = None
        else:
            names = decision.names if isinstance(decision, Entitled) else ()
            identity = next((n for n in names if n is not None), None) or sts_name(decision.identity)
            issuer = config.issuer_named(signed.issuer)
            who = Who(signed.issuer, issuer.issuer, signed.subject, identity, iso_time(signed.expires_at),
                      tuple((name, _shown(value)) for name, value in sorted(signed.claims.items())))
            if isinstance(decision, Entitled):
                rules = tuple(_rule_view(r, name, outcome)
                              for r, name, outcome in zip(decision.rules, names, decision.outcomes, strict=True))
            answer = _answer(policy, signed, question)
    clone = first_clone(policy, signed.issuer if signed else None, signed.claims if signed else None)
    login = any(i.login is not None for i in config.issuers)
    return PageView(
        url=url, sign_in=config.web.sign_in, who=who, rules=rules, suspended=suspended,
        policy_changed=signed is not None and signed.claims_digest != policy.kept_claims_digest(signed.issuer),
        answer=answer,
        question=question, clone=clone, setup=setup_platforms(url, clone, login=login),
        ci=ci_platforms(url, config.audience_for_ci, clone.url, pinned), ci_audience=config.audience_for_ci,
        without_python=without_python(url, pinned), csrf=signed.csrf if signed else None,
    )


def issuer_unchanged(policy: Policy, signed: SignedIn) -> bool:
    """Whether the policy still has the issuer ``signed`` signed in at, at the same URL (a reload may change it)."""
    issuer = next((i for i in policy.config.issuers if i.name == signed.issuer), None)
    return issuer is not None and signed.claims.get("iss") == issuer.issuer


def service_url(request: Request, public_url: str | None) -> str:
    """The URL the snippets name: ``web.public_url``, else the one this request came to."""
    return public_url or str(request.base_url).rstrip("/")


async def home(request: Request, ctx: PageContext) -> Response:
    """``GET /`` and ``HEAD /``."""
    snapshot = ctx.running.current  # one snapshot for the whole page
    policy = snapshot.policy
    signed = session.signed_in(request, ctx.clock())
    if signed is not None and not issuer_unchanged(policy, signed):
        session.end(request, ISSUER_GONE)
        signed = None
    url = service_url(request, policy.config.web.public_url)
    pinned = Pinned(helper_zipapp().sha256, shell_download().sha256)  # the Downloads the helper routes serve
    view = page_view(policy, signed, Question.of(request.query_params), url, pinned)
    if signed is not None and view.suspended is not None:
        session.end(request, None)  # the deny list applies to the page too: the session ends now
    notice = session.take_notice(request)
    return render(request, "page.html", {"title": "Your access" if view.who else "Git access to CodeCommit",
                                         "view": view, "notice": notice,
                                         "base": link_base(request, policy.config.web.public_url)})
