"""The page's copyable set-up: the helper on a person's machine, and a CI job, filled in for this service. Pure.

    setup_platforms(url, clone, login=…)        → macOS and Linux, Windows: install, `ccweb-helper setup`, `git clone`
    ci_platforms(url, audience, clone, pinned)  → GitHub Actions … Kubernetes: the job's snippet and the claims
    without_python(url, pinned)                 → the sh helper's download, check, install and `setup`
    first_clone(policy, issuer, claims)         → a repository the person can reach, as a clone URL (else a
                                                  placeholder)

The CI snippets and claims say what docs/ci.md says (a test renders them for ``https://ccweb.example.com`` and
finds each in that file). Text fields may hold `code` spans in backquotes, as the docs do; the template shows
them as ``<code>``, escaped like everything else. Values from the configuration or the request (the URL, the
audience) are quoted for the shell or YAML they land in whenever they hold more than plain URL characters.

Every CI snippet that downloads the helper checks it against a pinned SHA-256 before anything runs it: on the
page the service's own (``Pinned``, from the ``Download`` its route serves), in docs/ci.md a CI variable.
"""

from __future__ import annotations

import itertools
import json
import re
import shlex
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ccweb.explain import DEFAULT_REGION
from ccweb.policy import CompiledRule, Entitled, Granted, Policy, Repository
from ccweb_helper.grc import standard_host
from ccweb_helper.hosts import is_loopback, split_host

PLACEHOLDER_REPOSITORY = "MyRepo"
MAX_CLONE_DECISIONS = 20
HOME_CHMOD = "chmod +x ~/.local/bin/ccweb-helper"
_SH_PLAIN = re.compile(r"[A-Za-z0-9_./:@%+=,~-]+")
_PS_PLAIN = re.compile(r"[A-Za-z0-9_./:%+=~-]+")
_YAML_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_./:%+=~@-]*")
_GLOB = re.compile(r"[*?\[]")


def sh_word(value: str) -> str:
    """``value`` as one word of a POSIX shell command line."""
    return value if _SH_PLAIN.fullmatch(value) else shlex.quote(value)


def ps_word(value: str) -> str:
    """``value`` as one argument of a PowerShell command line."""
    return value if _PS_PLAIN.fullmatch(value) else "'" + value.replace("'", "''") + "'"


def yaml_scalar(value: str) -> str:
    """``value`` as a YAML scalar, block or flow context (a JSON string is a YAML double-quoted scalar)."""
    return value if _YAML_PLAIN.fullmatch(value) else json.dumps(value)


@dataclass(frozen=True, slots=True)
class Block:
    """One copyable code block, with the sentence before it (`code` spans allowed)."""

    id: str
    title: str
    code: str
    note: str = ""


@dataclass(frozen=True, slots=True)
class Platform:
    """One platform's set-up: a person's operating system, or a CI platform (then with the claims its tokens
    carry, as (claim, example) pairs in docs/ci.md's words)."""

    id: str
    title: str
    intro: str
    blocks: tuple[Block, ...]
    claims: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Clone:
    """The first ``git clone`` the page suggests."""

    url: str
    repository: str
    region: str
    placeholder: bool
    """No repository this person can reach was found: ``MyRepo`` stands in for one."""


def _regions(policy: Policy) -> Iterator[str]:
    """Regions to try for a repository glob that names none: GRC's, the git endpoints', the default."""
    config = policy.config
    if config.grc.region is not None:
        yield config.grc.region
    yield from (endpoint.region for endpoint in config.git_endpoints)
    yield DEFAULT_REGION


def clone_url(policy: Policy, repository: str, region: str) -> str:
    """``repository`` in ``region`` as a clone URL: at the region's git endpoint when the configuration has one,
    else at its GRC endpoint, else at the standard CodeCommit host (https; http only to loopback)."""
    config = policy.config
    host = next((e.host for e in config.git_endpoints if e.region == region), None)
    host = host or config.grc.endpoints.get(region) or standard_host(region)
    scheme = "http" if is_loopback(split_host(host)[0]) else "https"
    return f"{scheme}://{host}/v1/repos/{repository}"


def _candidates(rules: Iterable[CompiledRule], regions: tuple[str, ...]) -> Iterator[Repository]:
    """The concrete repositories ``rules`` name, in order: a name without a region in each of ``regions``."""
    for rule in rules:
        for glob in rule.globs:
            if not _GLOB.search(glob.text):
                region, _, name = glob.text.rpartition("/")
                yield from (Repository(name, r) for r in ((region,) if region else regions))


def first_clone(policy: Policy, issuer: str | None, claims: Mapping[str, Any] | None) -> Clone:
    """A repository the signed-in person can reach (``Policy.decide`` grants it): the first concrete name among the
    rules that grant them something, then among the other rules (a rule of ``*`` names none); else ``MyRepo`` in
    the first region the page would try.

    Every render asks this, so it asks ``decide`` at most ``1 + MAX_CLONE_DECISIONS`` times, however large the
    policy: one question for what the person is granted at all (nothing, or suspended: ``MyRepo`` at once), then
    one per repository tried."""
    regions = tuple(dict.fromkeys(_regions(policy)))
    if issuer is not None and claims is not None:
        entitled = policy.decide(issuer, claims, None)
        if isinstance(entitled, Entitled):
            theirs = {rule.index for rule in entitled.rules}
            others = (rule for rule in policy.rules if rule.index not in theirs)
            tried: set[Repository] = set()
            for where in _candidates(itertools.chain(entitled.rules, others), regions):
                if where in tried:
                    continue
                if len(tried) == MAX_CLONE_DECISIONS:
                    break
                tried.add(where)
                if isinstance(policy.decide(issuer, claims, where), Granted):
                    return Clone(clone_url(policy, where.repository, where.region), where.repository, where.region,
                                 placeholder=False)
    region = regions[0]
    return Clone(clone_url(policy, PLACEHOLDER_REPOSITORY, region), PLACEHOLDER_REPOSITORY, region, placeholder=True)


def setup_platforms(url: str, clone: Clone, *, login: bool) -> tuple[Platform, ...]:
    """Install the helper, ``ccweb-helper setup --url <url>`` and a first ``git clone``: macOS and Linux, Windows.

    The one-file download is run through Python, so ``setup`` records the helper whether or not the directory
    is on PATH (``ccweb_helper.setup.helper_command``); the sh helper records its own absolute path."""
    sh_url, ps_url, sh_clone = sh_word(url), ps_word(url), sh_word(clone.url)
    first = ("The first `git clone` opens your browser to sign in (or run `ccweb-helper login` first; "
             "`ccweb-helper login --device` over SSH)." if login else
             "This service names no sign-in for the helper: point `CCWEB_TOKEN_FILE` at a file holding an OIDC "
             "token of an issuer it trusts.")
    mine = (f"`{PLACEHOLDER_REPOSITORY}` stands for a repository of yours." if clone.placeholder
            else f"`{clone.repository}` ({clone.region}) is a repository you can reach.")
    unix = Platform("unix", "macOS and Linux", f"{first} {mine}", (
        Block("setup-unix-download", "The helper as one file (needs only Python 3.9 or later)", "\n".join([
            "mkdir -p ~/.local/bin",
            f"curl -fsSL {sh_url}/helper/ccweb-helper -o ~/.local/bin/ccweb-helper && {HOME_CHMOD}",
            f"python3 ~/.local/bin/ccweb-helper setup --url {sh_url}",
            f"git clone {sh_clone}",
        ])),
        Block("setup-unix-pip", "With pip, in a checkout of ccweb's source", "\n".join([
            "python3 -m pip install ./helper",
            f"ccweb-helper setup --url {sh_url}",
            f"git clone {sh_clone}",
        ])),
        Block("setup-unix-sh", "Without Python: the helper in POSIX sh (needs curl)", "\n".join([
            "mkdir -p ~/.local/bin",
            f"curl -fsSL {sh_url}/helper/ccweb-helper.sh -o ~/.local/bin/ccweb-helper && {HOME_CHMOD}",
            f"~/.local/bin/ccweb-helper setup --url {sh_url}",
            f"git clone {sh_clone}",
        ]), note="It has no interactive sign-in: set `CCWEB_TOKEN_FILE` to a file holding your OIDC token."),
    ))
    windows = Platform("windows", "Windows (PowerShell)", f"{first} {mine}", (
        Block("setup-windows-download", "The helper as one file (needs Python 3.9 or later and Git for Windows)",
              "\n".join([
                  f'curl.exe -fsSL {ps_url}/helper/ccweb-helper -o "$HOME\\ccweb-helper"',
                  f'py "$HOME\\ccweb-helper" setup --url {ps_url}',
                  f"git clone {ps_word(clone.url)}",
              ])),
        Block("setup-windows-pip", "With pip, in a checkout of ccweb's source", "\n".join([
            "py -m pip install .\\helper",
            f"ccweb-helper setup --url {ps_url}",
            f"git clone {ps_word(clone.url)}",
        ])),
    ))
    return unix, windows


HELPER = "ccweb-helper"
SH_HELPER = "ccweb-helper.sh"
VARIABLES = {HELPER: "CCWEB_HELPER_SHA256", SH_HELPER: "CCWEB_HELPER_SH_SHA256"}
"""The CI variables docs/ci.md keeps each download's pinned SHA-256 in."""
_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class Pinned:
    """The SHA-256 each CI snippet checks its download against before running it: the page's are this service's own
    (``Download.sha256`` of what ``GET /helper/ccweb-helper`` and ``…sh`` serve), copied into the CI configuration
    with the snippet; None (docs/ci.md's form) is the CI variable of ``VARIABLES``, set once per release."""

    helper: str | None = None
    sh_helper: str | None = None

    def __post_init__(self) -> None:
        for value in (self.helper, self.sh_helper):
            if value is not None and not _HEX.fullmatch(value):
                raise ValueError(f"not a SHA-256 in lower-case hex: {value!r}")

    def of(self, name: str) -> str | None:
        return self.helper if name == HELPER else self.sh_helper

    def comment(self, name: str, reference: str) -> str:
        """The comment above the download: what the value pins, and when to change it."""
        if self.of(name) is not None:
            return f"# pins this release's {name} by its SHA-256: update it when the service's helper changes"
        return f"# {reference}: a CI variable, set from GET /helper/{name}.sha256 as each release rolls out"



IN_CI_VARIABLES = Pinned()
"""docs/ci.md's form: each snippet checks against the CI variable that holds the pinned value."""

def _checked(url: str, pinned: Pinned, name: str = HELPER, github: bool = False) -> list[str]:
    """The comment, then download ``name``, check it against the pinned SHA-256 (``sha256sum -c -``: GNU coreutils
    and BusyBox) and only then make it ``/usr/local/bin/ccweb-helper``, as separate commands."""
    variable = VARIABLES[name]
    reference = f"vars.{variable}" if github else variable
    expected = pinned.of(name) or ("${{ " + reference + " }}" if github else f"${variable}")
    return [pinned.comment(name, reference),
            f"curl -fsSL {sh_word(url)}/helper/{name} -o {name}",
            f'echo "{expected}  {name}" | sha256sum -c -',
            f"chmod +x {name} && mv {name} /usr/local/bin/ccweb-helper"]


def _chained(lines: list[str]) -> list[str]:
    """``_checked``'s commands as one ``&&`` list, so a failed check stops it whether or not the platform's shell
    stops at the first failing command (Azure Pipelines' ``script`` does not)."""
    comment, *commands = lines
    return [comment, *(("  " if i else "") + c + (" &&" if i < len(commands) - 1 else "")
                       for i, c in enumerate(commands))]


def _powershell(url: str, pinned: Pinned) -> list[str]:
    """The same check in PowerShell (``Get-FileHash``; ``-ne`` ignores the hex's case) on a Windows agent."""
    expected = f"'{pinned.helper}'" if pinned.helper else f"$env:{VARIABLES[HELPER]}"
    return [pinned.comment(HELPER, VARIABLES[HELPER]),
            f'$helper = "$env:AGENT_TEMPDIRECTORY\\{HELPER}"   # outside the work tree, removed after the job',
            f"curl.exe -fsSL {ps_word(url)}/helper/{HELPER} -o $helper",
            f"if ((Get-FileHash $helper -Algorithm SHA256).Hash -ne {expected}) {{ throw '{HELPER}: FAILED' }}",
            f"python $helper setup --url {ps_word(url)}"]


def _indented(lines: list[str], spaces: int) -> str:
    return "\n".join(" " * spaces + line for line in lines)


def ci_platforms(url: str, audience: str, clone: str, pinned: Pinned = IN_CI_VARIABLES) -> tuple[Platform, ...]:
    """Each CI platform's job, filled in with the service's ``url``, its CI ``audience``, a ``clone`` URL and the
    helper's ``pinned`` SHA-256 (unset: docs/ci.md's CI variable), and the claims its tokens carry (docs/ci.md)."""
    setup, git_clone = f"ccweb-helper setup --url {sh_word(url)}", f"git clone {sh_word(clone)}"
    steps = [*_chained(_checked(url, pinned)), setup, git_clone]
    comment, *commands = _checked(url, pinned)
    items = [*commands, setup, git_clone]  # one command each: GitLab and Bitbucket stop at the first that fails
    aud = yaml_scalar(audience)
    aud_example = f"the service's CI audience, e.g. `{audience}`"
    github = Platform("github-actions", "GitHub Actions", (
        "The job needs `permissions: id-token: write`; without it GitHub gives it no token (nor to pull requests "
        "from forks), and the helper says so."), (Block("ci-github-actions", "A job", "\n".join([
            "jobs:", "  build:", "    runs-on: ubuntu-latest", "    permissions:",
            "      id-token: write        # the job's OIDC token", "      contents: read", "    steps:",
            "      - run: |", _indented([*_chained(_checked(url, pinned, github=True)), setup], 10),
            f"      - run: {git_clone}"])),), (
        ("`iss`", "`https://token.actions.githubusercontent.com` (GitHub Enterprise Server: "
                  "`https://<host>/_services/token`)"),
        ("`aud`", aud_example),
        ("`sub`", "`repo:acme/app:ref:refs/heads/main`, `repo:acme/app:environment:production`, "
                  "`repo:acme/app:pull_request`"),
        ("others", "`repository`, `repository_owner`, `repository_id`, `ref`, `environment`, `event_name`, "
                   "`job_workflow_ref`, `actor`"),
    ))
    gitlab = Platform("gitlab", "GitLab CI", (
        "GitLab mints a token only for the audiences a job asks for, into the variable it names. Name it "
        "`CCWEB_TOKEN`:"), (Block("ci-gitlab", "A job", "\n".join([
            "clone:", "  id_tokens:", "    CCWEB_TOKEN:",
            f"      aud: {aud}   # the service's CI audience (GET {url}/.well-known/ccweb)",
            "  script:", f"    {comment}", *(f"    - {item}" for item in items)])),), (
        ("`iss`", "`https://gitlab.com`, or your GitLab's URL"),
        ("`aud`", "what `id_tokens` asked for"),
        ("`sub`", "`project_path:acme/app:ref_type:branch:ref:main`"),
        ("others", "`project_path`, `namespace_path`, `ref`, `ref_type`, `ref_protected` (`\"true\"`), "
                   "`environment`, `pipeline_source`, `user_login`"),
    ))
    circleci = Platform("circleci", "CircleCI", (
        "CircleCI puts the token in `CIRCLE_OIDC_TOKEN_V2` in jobs that use a context; its audience is your "
        "CircleCI organization id, so the issuer's `audiences` must include that id."), (
        Block("ci-circleci-workflow", "A workflow", "\n".join([
            "workflows:", "  build:", "    jobs:", "      - clone:",
            "          context: ccweb     # any context: it makes CircleCI inject the OIDC token"])),
        Block("ci-circleci", "A job", "\n".join([
            "jobs:", "  clone:", "    docker: [{image: cimg/python:3.12}]", "    steps:", "      - run: |",
            _indented(steps, 10)])),
        Block("ci-circleci-audience", "For the service's audience instead",
              f"export CCWEB_TOKEN=\"$(circleci run oidc get --claims {sh_word(json.dumps({'aud': audience}))})\"",
              note="To have CircleCI mint for the service's audience (its URL: then no other service is sent the "
                   "token), set the variable yourself, as above."),
    ), (
        ("`iss`", "`https://oidc.circleci.com/org/<organization id>`"),
        ("`aud`", "`<organization id>`"),
        ("`sub`", "`org/<org id>/project/<project id>/user/<user id>/vcs-origin/github.com/acme/app/vcs-ref/refs/heads/"
                  "main`"),
        ("others", "`oidc.circleci.com/project-id`, `oidc.circleci.com/context-ids`, `oidc.circleci.com/vcs-origin`, "
                   "`oidc.circleci.com/vcs-ref`"),
    ))
    buildkite = Platform("buildkite", "Buildkite", (
        "Nothing to configure in the pipeline: the helper runs `buildkite-agent oidc request-token --audience <the "
        "service's CI audience>` itself. In a container step the agent binary must be on `PATH` (the Docker plugin "
        "mounts it with `mount-buildkite-agent: true`)."), (Block("ci-buildkite", "A step", "\n".join([
            "steps:", "  - label: clone", "    command: |", _indented(steps, 6)])),), (
        ("`iss`", "`https://agent.buildkite.com` (shared by every Buildkite organization: pin `organization_slug`)"),
        ("`aud`", aud_example),
        ("`sub`", "`organization:acme:pipeline:app:ref:refs/heads/main:commit:<sha>:step:<step key>`"),
        ("others", "`organization_slug`, `organization_id`, `pipeline_slug`, `build_branch`, `build_commit`, "
                   "`step_key`"),
    ))
    bitbucket = Platform("bitbucket", "Bitbucket Pipelines", (
        "The step needs `oidc: true`; Bitbucket then sets `BITBUCKET_STEP_OIDC_TOKEN`. Its default audience is your "
        "workspace's (`ari:cloud:bitbucket::workspace/<workspace uuid>`); list it in the issuer's `audiences`, or ask "
        f"for the service's audience with `oidc: audiences: [{aud}]` (its URL: then no other service is sent the "
        "token)."), (Block("ci-bitbucket", "A pipeline", "\n".join([
            "pipelines:", "  default:", "    - step:", "        oidc: true", "        script:",
            f"          {comment}", *(f"          - {item}" for item in items)])),), (
        ("`iss`", "`https://api.bitbucket.org/2.0/workspaces/<workspace>/pipelines-config/identity/oidc`"),
        ("`aud`", "`ari:cloud:bitbucket::workspace/<workspace uuid>`, or the step's `oidc: audiences`"),
        ("`sub`", "`{<repository uuid>}:{<step uuid>}` (with a deployment environment: "
                  "`{<repository uuid>}:{<environment uuid>}:{<step uuid>}`)"),
        ("others", "`workspaceUuid`, `repositoryUuid`, `branchName`, `deploymentEnvironmentUuid`, `pipelineUuid`"),
    ))
    azure = Platform("azure-pipelines", "Azure Pipelines", (
        "Azure DevOps issues tokens for a service connection (an Azure Resource Manager connection using workload "
        "identity federation; ccweb never uses it for Azure, only its token). The connection id comes from "
        "`CCWEB_AZURE_SERVICE_CONNECTION_ID`, else `AZURESUBSCRIPTION_SERVICE_CONNECTION_ID`."), (
        Block("ci-azure-pipelines", "A step", "\n".join([
            "steps:", "  - script: |", _indented(steps, 6), "    env:",
            "      SYSTEM_ACCESSTOKEN: $(System.AccessToken)",
            "      CCWEB_AZURE_SERVICE_CONNECTION_ID: 5f0c9b2e-1d3a-4c8e-9b7f-2a6e4d1c0b93   "
            "# Project settings → Service connections"])),
        Block("ci-azure-pipelines-windows", "On a Windows agent (PowerShell)", "\n".join([
            "steps:", "  - powershell: |", _indented([*_powershell(url, pinned), f"git clone {ps_word(clone)}"], 6),
            "    env:",
            "      SYSTEM_ACCESSTOKEN: $(System.AccessToken)",
            "      CCWEB_AZURE_SERVICE_CONNECTION_ID: 5f0c9b2e-1d3a-4c8e-9b7f-2a6e4d1c0b93"])),), (
        ("`iss`", "`https://vstoken.dev.azure.com/<organization id>`"),
        ("`aud`", "`api://AzureADTokenExchange` (fixed: list it in the issuer's `audiences`)"),
        ("`sub`", "`sc://<organization>/<project>/<service connection name>`"),
    ))
    kubernetes = Platform("kubernetes", "Kubernetes (a projected service-account token)", (
        "A pod gets a token for ccweb's audience from a projected volume; the kubelet renews the file before it "
        "expires, and the helper reads it on every git call."), (Block("ci-kubernetes", "A pod", "\n".join([
            "spec:", "  serviceAccountName: builder", "  containers:", "    - name: build", "      env:",
            f"        - {{name: CCWEB_URL, value: {yaml_scalar(url)}}}",
            "        - {name: CCWEB_TOKEN_FILE, value: /var/run/secrets/ccweb/token}",
            "      volumeMounts:", "        - {name: ccweb-token, mountPath: /var/run/secrets/ccweb, readOnly: true}",
            "  volumes:", "    - name: ccweb-token", "      projected:", "        sources:",
            f"          - serviceAccountToken: {{path: token, audience: {aud}, "
            "expirationSeconds: 3600}"])),), (
        ("`iss`", "the cluster's service-account issuer, e.g. `https://oidc.eks.us-east-1.amazonaws.com/id/<id>` (its "
                  "discovery document and key set must be reachable by the service; else set `jwks_uri`)"),
        ("`aud`", "the volume's `audience`"),
        ("`sub`", "`system:serviceaccount:<namespace>:<service account>` — match it with a `pattern`"),
    ))
    return github, gitlab, circleci, buildkite, bitbucket, azure, kubernetes


def without_python(url: str, pinned: Pinned = IN_CI_VARIABLES) -> str:
    """The sh helper for CI images without Python: download, check against its ``pinned`` SHA-256, install and
    ``setup``, as one ``&&`` list (docs/ci.md)."""
    *chain, last = _chained(_checked(url, pinned, SH_HELPER))
    return "\n".join([*chain, f"{last} &&", f"  ccweb-helper setup --url {sh_word(url)}"])
