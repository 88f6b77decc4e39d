"""The policy gate (docs/ci.md#policy-gate), as CI runs it on a policy change.

- each overlay's policy-cases.yaml holds through the real ``ccweb test-policy`` (exit 0); one expectation flipped
  fails with one line naming the case (exit 1); an invalid cases file is refused (exit 2);
- the cases cover what issue 16 found: a token of Okta's org authorization server as Okta issues it, a GitLab
  project in a subgroup granted and a lookalike group denied, a GitHub job of another repository of the same
  organization denied, every deny entry suspending; every rule is expected somewhere, and each case's token is
  one the policy's issuer accepts (its iss and aud);
- deploy/ci's GitHub Actions workflow and GitLab CI job validate against GitHub's and GitLab's schemas
  (check-jsonschema's vendored copies, offline), pin their actions by commit and cover every overlay; their
  commands, run as each runner runs them (GitHub's through ``docker run`` of the image, GitLab's in the image) with
  this repository's ``ccweb`` as the image's, pass on this repository's overlays, fail on a case decided otherwise,
  and stop before ccweb runs when the image is not named by digest.

No install without hashes, no image by tag, and the fallback's hashed install: test_policy_gate_supply.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import yaml

from ccweb.config import Config, parse_config

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = sorted(d for d in (ROOT / "deploy" / "kubernetes" / "overlays").iterdir() if d.is_dir())
GITHUB = ROOT / "deploy" / "ci" / "github-actions-policy-gate.yml"
GITLAB = ROOT / "deploy" / "ci" / "gitlab-policy-gate.gitlab-ci.yml"
BIN = Path(sys.executable).parent
ORG_SERVER = re.compile(r"https://[A-Za-z0-9-]+\.(okta|oktapreview|okta-emea)\.com/?")


def run(command: list[str], cwd: Path = ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **(env or {})}
    return subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=120,
                          check=False)


def ccweb(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return run([str(BIN / "ccweb"), *args], cwd)


def cases(overlay: Path) -> list[dict[str, Any]]:
    table: list[dict[str, Any]] = yaml.safe_load((overlay / "policy-cases.yaml").read_text(encoding="utf-8"))["cases"]
    return table


def config(overlay: Path) -> Config:
    return parse_config(yaml.safe_load((overlay / "policy.yaml").read_text(encoding="utf-8")))


ids = [o.name for o in OVERLAYS]


# -- each overlay's cases, through the console script -------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS, ids=ids)
def test_the_overlays_cases_hold(overlay: Path) -> None:
    result = ccweb("test-policy", "--config", "policy.yaml", "policy-cases.yaml", cwd=overlay)
    assert result.returncode == 0, result.stdout + result.stderr
    count = len(cases(overlay))
    assert result.stdout.splitlines() == [f"{count} of {count} case(s) hold: the policy decides as expected"]


@pytest.mark.parametrize("overlay", OVERLAYS, ids=ids)
def test_one_flipped_expectation_fails_naming_the_case(overlay: Path, tmp_path: Path) -> None:
    table = cases(overlay)
    index = next(i for i, case in enumerate(table) if case["expect"] == "denied")  # a job that must get nothing
    wrong = next(rule.name for rule in config(overlay).rules)
    table[index]["expect"] = wrong
    (tmp_path / "cases.yaml").write_text(yaml.safe_dump({"cases": table}), encoding="utf-8")
    result = ccweb("test-policy", "--config", str(overlay / "policy.yaml"), str(tmp_path / "cases.yaml"))
    assert result.returncode == 1
    (line,) = result.stdout.splitlines()
    assert line.startswith(f"cases[{index}] {table[index]['name']!r}: expected {wrong}, got denied (")
    assert f"{len(table) - 1} of {len(table)} case(s) hold" in result.stderr


@pytest.mark.parametrize("overlay", OVERLAYS, ids=ids)
def test_an_invalid_cases_file_is_refused(overlay: Path, tmp_path: Path) -> None:
    table = cases(overlay)
    table[1]["expect"] = "admins"  # a rule the policy does not have: a typo in a rule's name, or a removed rule
    (tmp_path / "cases.yaml").write_text(yaml.safe_dump({"cases": table}), encoding="utf-8")
    result = ccweb("test-policy", "--config", str(overlay / "policy.yaml"), str(tmp_path / "cases.yaml"))
    assert result.returncode == 2
    assert result.stdout == ""
    assert "  cases[1].expect: 'admins' is no rule of the policy" in result.stderr.splitlines()[1]


# -- what the cases cover -----------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS, ids=ids)
def test_each_case_is_a_token_its_issuer_accepts(overlay: Path) -> None:
    issuers = {issuer.name: issuer for issuer in config(overlay).issuers}
    for case in cases(overlay):
        issuer, claims = issuers[case["issuer"]], case["claims"]
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        assert claims["iss"] == issuer.issuer, case["name"]
        assert set(audiences) & set(issuer.audiences), case["name"]


@pytest.mark.parametrize("overlay", OVERLAYS, ids=ids)
def test_every_rule_and_deny_entry_is_exercised(overlay: Path) -> None:
    policy = config(overlay)
    expected = {case["expect"] for case in cases(overlay)}
    assert {rule.name for rule in policy.rules} <= expected
    assert "denied" in expected
    assert ("suspended" in expected) == bool(policy.deny)


@pytest.mark.parametrize("overlay", OVERLAYS, ids=ids)
def test_an_okta_org_server_token_as_okta_issues_it(overlay: Path) -> None:
    policy = config(overlay)
    org = {i.name: i for i in policy.issuers if ORG_SERVER.fullmatch(i.issuer)}
    groups_rules = {r.name for r in policy.rules if r.issuer in org and "groups" in r.claims}
    granted = [c for c in cases(overlay) if c["issuer"] in org and c["expect"] in groups_rules]
    assert granted, "a person granted by a rule on groups at Okta's org server"
    claims = granted[0]["claims"]
    login = org[granted[0]["issuer"]].login
    assert login is not None and claims["aud"] == login.client_id, "an ID token's aud is the client id"
    assert re.fullmatch(r"00u[A-Za-z0-9]{17}", claims["sub"]), "Okta's user ids: 00u and 17 more"
    assert claims["ver"] == 1 and isinstance(claims["iat"], int) and isinstance(claims["exp"], int)
    assert isinstance(claims["groups"], list) and isinstance(claims["email_verified"], bool)
    without = [c for c in cases(overlay) if c["issuer"] in org and "groups" not in c["claims"]]
    assert {c["expect"] for c in without} == {"denied"}, "a token without groups (no groups scope) gets nothing"


@pytest.mark.parametrize("overlay", OVERLAYS, ids=ids)
def test_a_gitlab_subgroup_is_granted_and_a_lookalike_group_denied(overlay: Path) -> None:
    gitlab = [c for c in cases(overlay) if c["claims"]["iss"] == "https://gitlab.com"]
    subgroup = [c for c in gitlab if "/" in c["claims"]["namespace_path"] and c["expect"] != "denied"]
    assert subgroup, "a project in a subgroup, granted"
    group = subgroup[0]["claims"]["namespace_path"].partition("/")[0]
    lookalike = [c for c in gitlab if c["claims"]["namespace_path"].startswith(f"{group}-")]
    assert lookalike and {c["expect"] for c in lookalike} == {"denied"}
    assert all(isinstance(c["claims"].get("project_id", ""), str) for c in gitlab), "GitLab's IDs are strings"


@pytest.mark.parametrize("overlay", OVERLAYS, ids=ids)
def test_a_github_job_of_another_repository_of_the_org_is_denied(overlay: Path) -> None:
    github = [c["claims"] | {"expect": c["expect"]} for c in cases(overlay)
              if c["claims"]["iss"] == "https://token.actions.githubusercontent.com"]
    granted = [c for c in github if c["expect"] != "denied"]
    assert granted and all(isinstance(c["repository_owner_id"], str) for c in github), "GitHub's IDs are strings"
    owner, repository = granted[0]["repository_owner_id"], granted[0]["repository_id"]
    others = [c for c in github if c["repository_owner_id"] == owner and c["repository_id"] != repository]
    assert others and {c["expect"] for c in others} == {"denied"}


# -- deploy/ci: the examples, against the platforms' schemas and this repository ------------------------------


@pytest.mark.parametrize(("path", "schema"), [(GITHUB, "vendor.github-workflows"), (GITLAB, "vendor.gitlab-ci")],
                         ids=["github", "gitlab"])
def test_the_example_validates_against_its_platforms_schema(path: Path, schema: str, tmp_path: Path) -> None:
    result = run([str(BIN / "check-jsonschema"), "--builtin-schema", schema, str(path)])
    assert result.returncode == 0, result.stdout + result.stderr
    broken = tmp_path / path.name  # the same file with a key misspelt: the check can fail
    broken.write_text(path.read_text(encoding="utf-8").replace("runs-on:", "runs_on:").replace(
        "  script:", "  scripts:"), encoding="utf-8")
    assert run([str(BIN / "check-jsonschema"), "--builtin-schema", schema, str(broken)]).returncode == 1


def github_workflow() -> dict[str, Any]:
    workflow: dict[str, Any] = yaml.safe_load(GITHUB.read_text(encoding="utf-8"))
    return workflow


def gitlab_job() -> dict[str, Any]:
    job: dict[str, Any] = yaml.safe_load(GITLAB.read_text(encoding="utf-8"))["ccweb-policy-gate"]
    return job


def test_the_github_workflow_pins_its_actions_by_commit_and_reads_only() -> None:
    """Every action, the ones the comments show for a private registry included, by commit and its version."""
    (job,) = github_workflow()["jobs"].values()
    assert [step["uses"] for step in job["steps"] if "uses" in step], "the checkout"
    text = GITHUB.read_text(encoding="utf-8")
    uses = re.findall(r"^[ #]*- uses: (\S+)(.*)$", text, re.MULTILINE)
    assert len(uses) == 3, "the checkout, and the two steps that log in to ECR"
    for action, rest in uses:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", action) and re.fullmatch(r"  # v\d+\.\d+\.\d+", rest)
    assert github_workflow()["permissions"] == {"contents": "read"}, "no id-token: the gate needs no access"


def jobs() -> dict[str, tuple[list[str], list[str]]]:
    """platform → (the OVERLAY directory of each job of its matrix, the shell commands each job runs, in order)."""
    (job,) = github_workflow()["jobs"].values()
    template = job["env"]["OVERLAY"]
    github = [template.replace("${{ matrix.overlay }}", name) for name in job["strategy"]["matrix"]["overlay"]]
    (matrix,) = gitlab_job()["parallel"]["matrix"]
    return {"github": (github, [step["run"] for step in job["steps"] if "run" in step]),
            "gitlab": (matrix["OVERLAY"], list(gitlab_job()["script"]))}


JOBS = jobs()
PLATFORMS = list(JOBS)
DIGEST = "sha256:" + "0123456789abcdef" * 4
PINNED = f"444455556666.dkr.ecr.eu-west-1.amazonaws.com/ccweb@{DIGEST}"
IMAGE_CCWEB = '''#!{python}
"""ccweb as the image runs it: records each call, then runs this repository's."""
import json, os, sys
with open(os.environ["GATE_LOG"], "a", encoding="utf-8") as log:
    log.write(json.dumps({{"argv": sys.argv[1:], "cwd": os.getcwd()}}) + "\\n")
os.execv({ccweb!r}, [{ccweb!r}, *sys.argv[1:]])
'''
RUNNER_DOCKER = '''#!{python}
"""docker on the runner, for the one command the gate runs: the image's ccweb, the checkout mounted read-only at
/policies, as uid 10001 (others' read permission), offline."""
import json, os, re, sys
args, options = sys.argv[1:], {{}}
if args[:2] != ["run", "--rm"]:
    sys.exit(f"docker: not the gate's command: {{args}}")
args = args[2:]
while args[0].startswith("-"):
    options[args[0]], args = args[1], args[2:]
image, argv = args[0], args[1:]
if not image or re.search(r"\\s", image):  # a tag runs, as docker runs it: only the job's own check refuses it
    print(f"docker: invalid reference format: {{image!r}}", file=sys.stderr); sys.exit(125)
source, _, mode = options["-v"].partition(":/policies:")
assert mode == "ro" and options["--network"] == "none" and options["--entrypoint"] == "ccweb", options
workdir = options["-w"]
assert workdir == "/policies" or workdir.startswith("/policies/"), workdir
mapped = []
for arg in argv:
    if arg.startswith("/"):
        assert arg.startswith("/policies/"), f"{{arg}}: not in the container"
        arg = source + arg[len("/policies"):]
    path = os.path.join(source, workdir[len("/policies/"):], arg)
    if os.path.exists(path):
        assert os.stat(path).st_mode & 0o004, f"{{arg}}: uid 10001 cannot read it"
    mapped.append(arg)
os.chdir(os.path.join(source, workdir[len("/policies/"):]))
with open(os.environ["GATE_LOG"] + ".images", "a", encoding="utf-8") as log:
    log.write(json.dumps(image) + "\\n")
ccweb = os.path.join(os.environ["IMAGE_BIN"], "ccweb")  # the image's, not the runner's: it has none
os.execv(ccweb, [ccweb, *mapped])
'''


class Job(NamedTuple):
    results: list[subprocess.CompletedProcess[str]]  # each command's, up to the first that failed
    calls: list[dict[str, Any]]  # each ccweb command the image ran: argv and working directory

    @property
    def passed(self) -> bool:
        return all(r.returncode == 0 for r in self.results)


def run_job(platform: str, overlay: str, image: str, tmp_path: Path, cwd: Path = ROOT) -> Job:
    """The platform's job for ``overlay`` as its runner runs it: each command with ``bash -ec`` in the checkout,
    stopping at the first that fails. On GitHub's runner ccweb is only in the image (docker runs it); on GitLab the
    job runs in the image, so ccweb is on the PATH. Neither has this virtual environment's."""
    image_bin, runner_bin, log = tmp_path / "image", tmp_path / "runner", tmp_path / "calls.jsonl"
    for directory, name, program in [(image_bin, "ccweb", IMAGE_CCWEB), (runner_bin, "docker", RUNNER_DOCKER)]:
        directory.mkdir(exist_ok=True)
        (directory / name).write_text(program.format(python=sys.executable, ccweb=str(BIN / "ccweb")),
                                      encoding="utf-8")
        (directory / name).chmod(0o755)
    system = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and Path(p).resolve() != BIN.resolve()]
    path = [str(runner_bin if platform == "github" else image_bin), *system]
    environment = {**os.environ, "PATH": os.pathsep.join(path), "OVERLAY": overlay, "CCWEB_IMAGE": image,
                   "GATE_LOG": str(log), "IMAGE_BIN": str(image_bin)}
    results = []
    for command in JOBS[platform][1]:
        results.append(subprocess.run(["bash", "-ec", command], cwd=cwd, env=environment, capture_output=True,
                                      text=True, timeout=120, check=False))
        if results[-1].returncode:
            break
    calls = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()] if log.exists() else []
    return Job(results, calls)


def test_each_example_covers_every_overlay() -> None:
    for platform, (overlays, _) in JOBS.items():
        assert sorted(overlays) == [str(o.relative_to(ROOT)) for o in OVERLAYS], platform


GATE = [(platform, overlay) for platform, (overlays, _) in JOBS.items() for overlay in overlays]


@pytest.mark.parametrize(("platform", "overlay"), GATE, ids=[f"{p}:{o.rpartition('/')[2]}" for p, o in GATE])
def test_the_examples_job_passes_on_this_repository(platform: str, overlay: str, tmp_path: Path) -> None:
    """Both checks, in the image, on the overlay's files: the commands exactly as the file has them."""
    job = run_job(platform, overlay, PINNED, tmp_path)
    assert job.passed, "\n".join(r.stdout + r.stderr for r in job.results)
    assert [call["argv"] for call in job.calls] == [
        ["check-config", f"{overlay}/policy.yaml"],
        ["test-policy", "--config", f"{overlay}/policy.yaml", f"{overlay}/policy-cases.yaml"]]
    assert {call["cwd"] for call in job.calls} == {str(ROOT)}
    images = tmp_path / "calls.jsonl.images"
    assert platform == "gitlab" or images.read_text(encoding="utf-8").splitlines() == [json.dumps(PINNED)] * 2
    assert "case(s) hold: the policy decides as expected" in job.results[-1].stdout


@pytest.mark.parametrize("platform", PLATFORMS)
def test_the_examples_job_fails_on_a_case_the_policy_decides_otherwise(platform: str, tmp_path: Path) -> None:
    overlays, _ = JOBS[platform]
    checkout = tmp_path / "checkout"
    shutil.copytree(ROOT / overlays[0], checkout / overlays[0])
    table = cases(ROOT / overlays[0])
    table[0]["expect"] = "denied" if table[0]["expect"] != "denied" else config(ROOT / overlays[0]).rules[0].name
    (checkout / overlays[0] / "policy-cases.yaml").write_text(yaml.safe_dump({"cases": table}), encoding="utf-8")
    job = run_job(platform, overlays[0], PINNED, tmp_path, cwd=checkout)
    assert not job.passed and job.results[-1].returncode == 1
    assert job.results[-1].stdout.startswith(f"cases[0] {table[0]['name']!r}: expected {table[0]['expect']}, got ")


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("image", ["444455556666.dkr.ecr.eu-west-1.amazonaws.com/ccweb:0.1.0", "", "ccweb",
                                   PINNED[:-1], f"{PINNED}\nccweb:latest", f"ccweb:latest\n{PINNED}",
                                   f"{PINNED} ", PINNED.replace("@sha256:", "@sha512:")])
def test_an_image_not_pinned_by_digest_stops_the_job_before_ccweb_runs(platform: str, image: str,
                                                                       tmp_path: Path) -> None:
    overlays, _ = JOBS[platform]
    job = run_job(platform, overlays[0], image, tmp_path)
    assert not job.passed and job.calls == [] and len(job.results) == 1, "the first command refuses it"
    assert job.results[0].stderr.endswith("not <registry>/ccweb@sha256:<digest>\n")


def test_both_jobs_run_the_image_a_variable_names() -> None:
    """The digest lives in a CI/CD variable the operators set, which a pull or merge request cannot change."""
    (job,) = github_workflow()["jobs"].values()
    assert job["env"]["CCWEB_IMAGE"] == "${{ vars.CCWEB_IMAGE }}" and "container" not in job
    assert gitlab_job()["image"] == {"name": "$CCWEB_IMAGE", "entrypoint": [""]}, "ccweb's entrypoint emptied"
    assert "variables" not in gitlab_job() or "CCWEB_IMAGE" not in gitlab_job()["variables"]
