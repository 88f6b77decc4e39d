"""``ccweb-helper doctor``'s check of the console's GRC URLs (``codecommit::<region>://<repo>``): does git hand
them to ``ccweb-helper grc`` (the four keys ``setup`` writes, ``setup.grc_keys``), and if AWS's
git-remote-codecommit is installed too, which of the two git runs and how to choose.

git itself says what it does with such a URL: ``git ls-remote --get-url`` prints it after ``insteadOf``.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping

from ccweb_helper import gitconfig
from ccweb_helper.client import one_line
from ccweb_helper.doctor_git import program_of
from ccweb_helper.doctor_report import Report

SAMPLES = (("codecommit::<region>://", "codecommit::us-east-1://example"), ("codecommit://", "codecommit://example"))
AWS_HELPER = "git-remote-codecommit"
CHOOSE_AWS = "to have AWS's run instead (with AWS keys), run `ccweb-helper setup --no-grc`"


def _git(env: Mapping[str, str], *args: str) -> str | None:
    """What ``git args`` prints (stripped), None when it fails or cannot run."""
    try:
        result = gitconfig.run_git(list(args), env)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


class GrcChecks(Report):
    """The check of GRC URLs."""

    def grc_urls(self) -> None:
        env = self.env
        rewritten = {url: _git(env, "ls-remote", "--get-url", url) for _, url in SAMPLES}
        aws = shutil.which(AWS_HELPER, path=self.env.get("PATH"))
        ours = [url for url, seen in rewritten.items() if seen is not None and seen.startswith("ccweb::")]
        if not ours:
            if aws:
                self.say("note", f"git runs AWS's git-remote-codecommit ({aws}) for codecommit:: URLs (the "
                                 "console's GRC URLs), which needs AWS keys; to have ccweb serve them, run "
                                 "`ccweb-helper setup` (without --no-grc).")
            else:
                self.say("note", "codecommit:: URLs (the console's GRC URLs) are not set up, so git cannot clone "
                                 "them (`'remote-codecommit' is not a git command`); run `ccweb-helper setup` to "
                                 "have ccweb serve them.")
            return
        for form, url in SAMPLES:
            if url not in ours:
                self.say("warn", f"git does not hand {form}… URLs to ccweb as it does the other GRC form ({url} "
                                 f"becomes {one_line(rewritten[url] or '?', 200)}); run `ccweb-helper setup` (it adds "
                                 "the missing url.ccweb::….insteadOf).")
        alias = _git(env, "config", "--get", "alias.remote-ccweb")
        other = shutil.which("git-remote-ccweb", path=self.env.get("PATH"))
        if other:
            self.say("warn", f"git runs {other} for ccweb:: URLs, not ccweb-helper's alias.remote-ccweb; remove "
                             "that program from PATH.")
        elif not alias:
            self.say("FAIL", "git rewrites codecommit:: URLs to ccweb:: but has no alias.remote-ccweb to run for "
                             "them (git says `'remote-ccweb' is not a git command`); run `ccweb-helper setup`.")
            return
        else:
            program, found = program_of(alias, env)
            if not found:
                self.say("FAIL", f"git would run `{one_line(alias, 200)}` (alias.remote-ccweb) for codecommit:: URLs "
                                 f"but `{one_line(program, 200)}` cannot be found; run `ccweb-helper setup` with the "
                                 "helper you installed.")
                return
        if (_git(env, "config", "--get", "protocol.ccweb.allow") or "").lower() != "always":
            self.say("warn", "protocol.ccweb.allow is not `always`, so a submodule whose .gitmodules holds a "
                             "codecommit:: URL fails (`transport 'ccweb' not allowed`); run `ccweb-helper setup`.")
        elif not other and len(ours) == len(SAMPLES):
            self.say("ok", f"git hands codecommit:: URLs (the console's GRC URLs) to `{one_line(alias or '', 200)}`.")
        if aws:
            self.say("note", f"AWS's git-remote-codecommit is installed too ({aws}), but git runs ccweb for "
                             f"codecommit:: URLs while url.ccweb::.insteadOf is set; {CHOOSE_AWS}.")
