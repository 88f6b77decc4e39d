# ccweb-helper.sh, part 4 of 4: `setup`, `grc` and the command.
# Not a script of its own: the service serves the parts joined in order, one file (ccweb.shell_dist.PARTS).

# --- setup (helper/ccweb_helper/setup.py, global git config only) ----------------------------------------

# KEY VALUE...: set KEY to exactly these values in the global git config, unless it holds them already.
want() {
  want_key=$1; shift
  have=$(git_config --global --get-all "$want_key")
  wanted=
  for value; do wanted=$wanted$NL$value; done
  wanted=${wanted#"$NL"}  # git prints one value a line, an empty one as an empty line
  [ "$have" = "$wanted" ] && return
  git config --global --replace-all "$want_key" "$1" </dev/null || fail "\`git config --global --replace-all $want_key\` failed; run \`ccweb-helper setup\` again (it writes only what is missing)."
  shift
  for value in "$@"; do
    git config --global --add "$want_key" "$value" </dev/null || fail "\`git config --global --add $want_key\` failed; run \`ccweb-helper setup\` again (it writes only what is missing)."
  done
  changes=$((changes + 1))
}

# KEY VALUE: add VALUE to the list KEY (an insteadOf) in the global git config when it is not there; the
# person's own values stay.
want_in() {
  git_config --global --get-all "$1" >"$tmp/have"
  has_value "$2" && return
  git config --global --add "$1" "$2" </dev/null || fail "\`git config --global --add $1\` failed; run \`ccweb-helper setup\` again (it writes only what is missing)."
  changes=$((changes + 1))
}

# KEY [VALUE-ERE]: remove KEY (only its values VALUE-ERE matches) from the global git config.
unwant() {
  git config --global --unset-all "$@" </dev/null || fail "\`git config --global --unset-all $1\` failed; run \`ccweb-helper setup --no-grc\` again."
  changes=$((changes + 1))
}

# Whether alias.remote-ccweb value $1 is one setup writes: "$helper grc", or an earlier setup's (a ccweb-helper's
# grc) (setup.py: _our_alias).
our_alias() {
  [ "$1" = "$helper grc" ] && return 0
  case $1 in *ccweb-helper*' 'grc | *ccweb_helper*' 'grc) return 0 ;; esac
  return 1
}

# --no-grc: take out the GRC keys setup writes (setup.py: grc_removals): its insteadOf values, an alias that runs
# a ccweb-helper's grc (another is left, and named), the protocol setting.
drop_grc() {
  git_config --global --get-all url.ccweb::.insteadOf >"$tmp/have"
  has_value codecommit:: && unwant url.ccweb::.insteadOf '^codecommit::$'
  git_config --global --get-all url.ccweb::codecommit://.insteadOf >"$tmp/have"
  has_value codecommit:// && unwant url.ccweb::codecommit://.insteadOf '^codecommit://$'
  git_config --global --get-all alias.remote-ccweb >"$tmp/have"
  found= kept=
  while IFS= read -r line; do
    if our_alias "$line"; then found=1; else kept=1; fi
  done <"$tmp/have"
  while IFS= read -r line; do
    if ! our_alias "$line"; then
      printf "ccweb-helper setup: note: alias.remote-ccweb = '%s' is left in your global git config: it is not the \`%s grc\` setup writes; if it is not yours, run \`git config --global --unset-all alias.remote-ccweb\`.\n" "$(safe "$line" 200)" "$(safe "$helper" 200)" >&2
    elif [ -n "$kept" ]; then  # only this value (an ERE of it, anchored), once
      pattern="^$(printf '%s\n' "$line" | sed 's/[][\\.^$*+?(){}|]/\\&/g')\$"
      if git_config --global --get-all alias.remote-ccweb "$pattern" >/dev/null; then
        unwant alias.remote-ccweb "$pattern"
      fi
    fi
  done <"$tmp/have"
  [ -n "$found" ] && [ -z "$kept" ] && unwant alias.remote-ccweb
  if git_config --global --get-all protocol.ccweb.allow >/dev/null; then unwant protocol.ccweb.allow; fi
}

has_value() {  # whether $tmp/have holds the line $1
  while IFS= read -r line; do [ "$line" = "$1" ] && return 0; done <"$tmp/have"
  return 1
}

section() {  # the credential section of git URL $1: only this helper answers, with the repository's path
  want "credential.$1.helper" "" "$helper"
  if [ "$(git_config --global --bool --get-all "credential.$1.useHttpPath")" != true ]; then
    want "credential.$1.useHttpPath" true
  fi
  sections=$((sections + 1))
}

# This script as git should run it, in $helper: its name when PATH finds this very file, else its path.
this_helper() {
  case $0 in /*) self=$0 ;; */*) self=$PWD/${0#./} ;; *) self=$(command -v -- "$0") ;; esac
  quoted=$(printf '%s\n' "$self" | sed "s/'/'\\\\''/g")
  if [ "$(command -v -- "${self##*/}" 2>/dev/null)" = "$self" ]; then
    helper="!${self##*/}"
  elif [ -x "$self" ]; then
    helper="!'$quoted'"
  else
    helper="!sh '$quoted'"
  fi
}

setup() {
  url= helper= grc_urls=1
  while [ $# -gt 0 ]; do
    case $1 in
      --url) url=${2-}; shift 2 || fail "--url needs the service's address." ;;
      --url=*) url=${1#--url=}; shift ;;
      --helper) helper=${2-}; shift 2 || fail "--helper needs the command git should run." ;;
      --helper=*) helper=${1#--helper=}; shift ;;
      --global) shift ;;
      --no-grc) grc_urls= ; shift ;;
      *) fail "unknown option $(safe "$1" 80); usage: ccweb-helper setup [--url URL] [--helper CMD] [--no-grc]" ;;
    esac
  done
  version=$(git --version 2>/dev/null) || fail "git cannot be run: install git (2.26 or newer) and make sure it is on PATH."
  version=${version#git version }; major=${version%%.*}; minor=${version#*.}; minor=${minor%%.*}
  case $major$minor in '' | *[!0-9]*) major=0 minor=0 ;; esac
  if [ "$major" -lt 2 ] || { [ "$major" = 2 ] && [ "$minor" -lt 26 ]; }; then
    fail "git $(safe "$version" 40) is too old: it ignores the \`https://git-codecommit.*.amazonaws.com\` host patterns setup writes (git applies \`*\` in credential URLs from 2.26 on); upgrade git to 2.26 or newer, then run \`ccweb-helper setup\` again. Nothing was changed."
  fi
  if [ -n "$url" ]; then use_service "$url" --url
  elif [ -n "${CCWEB_URL-}" ]; then use_service "$CCWEB_URL" CCWEB_URL
  elif found=$(git_config --global --get ccweb.url) && [ -n "$found" ]; then
    use_service "$found" "the existing ccweb.url"
  else
    printf 'ccweb-helper setup: which ccweb service? Pass --url https://<your ccweb service> (or set CCWEB_URL).\n' >&2
    exit 2
  fi
  [ -n "$helper" ] || this_helper
  case $helper in !*) ;; *) helper="!$helper" ;; esac
  changes=0 sections=0 warning= endpoints=
  want ccweb.url "$service"
  while IFS= read -r pattern; do section "$pattern"; done <<EOF
$CODECOMMIT_URLS
EOF
  # The service's own git hosts; without them (the service cannot be asked) the CodeCommit hosts still work.
  make_tmp
  # (a signal ends the probe quietly: the shell would add "Terminated"; this shell's own trap then says it)
  if (trap 'exit 1' HUP INT TERM; mode=probe; discover) 2>"$tmp/warning"; then
    discovered=1
    endpoints=$(sed -n 's/^git_endpoint=//p' "$tmp/discovery" | LC_ALL=C tr '[:upper:]' '[:lower:]')
  else
    warning=$(sed 's/^ccweb-helper setup: //' "$tmp/warning")
  fi
  while IFS= read -r endpoint; do  # each line whole: no word splitting, no * expanded to file names
    [ -n "$endpoint" ] || continue
    if ! is_git_host "$endpoint"; then
      printf "ccweb-helper setup: warning: skipped the git endpoint '%s' the service names: it is not a host name with an optional port; tell the service's operators.\n" "$(safe "$endpoint" 100)" >&2
      continue
    fi
    section "https://$endpoint"
    is_loopback "$(host_name "$endpoint")" && section "http://$endpoint"
  done <<EOF
$endpoints
EOF
  # codecommit::<region>://[profile@]<repo> and codecommit://[profile@]<repo> through `grc` (see grc below),
  # unless --no-grc leaves them to AWS's git-remote-codecommit.
  if [ -n "$grc_urls" ]; then
    want_in url.ccweb::.insteadOf codecommit::
    want_in url.ccweb::codecommit://.insteadOf codecommit://
    want alias.remote-ccweb "$helper grc"
    want protocol.ccweb.allow always
  else
    drop_grc
  fi
  cleanup
  if [ -n "$warning" ]; then
    printf "ccweb-helper setup: warning: could not read the service's git endpoints (%s); the CodeCommit hosts are configured, the service's own git hosts (if any) are not: run \`ccweb-helper setup\` again once the service is reachable.\n" "${warning%.}" >&2
  fi
  if [ "$changes" = 0 ]; then
    printf 'Already configured in your global git config (%s host patterns, service %s); nothing changed.\n' "$sections" "$service"
  else
    printf 'Wrote %s git config changes to your global git config:\n  service  %s\n  helper   %s  (after an empty `helper =`, with useHttpPath = true)\n  hosts    %s patterns: every CodeCommit host form and the service'"'"'s git endpoints\n' \
      "$changes" "$service" "$helper" "$sections"
    if [ -n "$grc_urls" ]; then
      printf '  GRC URLs codecommit::<region>://<repo> and codecommit://<repo>, through `%s grc`\n' "${helper#!}"
    else
      printf "  (codecommit:: URLs are left to AWS's git-remote-codecommit: --no-grc)\n"
    fi
  fi
  printf 'Your other credential helpers still answer for every other host.\n'
}

# --- grc: git's remote helper for the console's GRC URLs -------------------------------------------------

# git runs `git remote-ccweb <remote> <address>` (alias.remote-ccweb = <this> grc) for ccweb::<address>, which
# url.ccweb::.insteadOf makes of codecommit::<region>://[profile@]<repo> and codecommit://[profile@]<repo>.
# The profile is ignored: ccweb's token, not an AWS profile, decides. The repository's https URL is then
# handed to git's own remote-https, which asks the credential helper as for any https remote.
grc() {
  [ $# = 2 ] || fail "usage: ccweb-helper grc <remote> <address> (git runs it for codecommit:: URLs)."
  address=$2 region= forms='codecommit::<region>://<repository> or codecommit://<repository>'
  case $address in codecommit://*) shown=$(safe "$address") ;; *) shown=$(safe "codecommit::$address") ;; esac
  case $address in *://*) ;; *) fail "$shown is not a GRC URL: write $forms." ;; esac
  if [ "${address%%://*}" != codecommit ]; then
    region=${address%%://*}
    is_region "$region" || fail "'$(safe "$region" 100)' in $shown is not an AWS region (such as us-east-2); write $forms."
  fi
  repo=${address#*://}; repo=${repo%/}; repo=${repo##*@}  # a profile before the @ is accepted and ignored
  case $repo in . | .. | '' | *[!A-Za-z0-9._-]*) repo= ;; esac
  [ -n "$repo" ] && [ "${#repo}" -le 100 ] ||
    fail "$shown does not end in a CodeCommit repository name (up to 100 letters, digits, '.', '_' and '-'): write $forms."
  # The region: the URL's; else git config ccweb.region; else the service's; else AWS_REGION, AWS_DEFAULT_REGION.
  if [ -z "$region" ]; then
    trim "$(git_config --get ccweb.region)"; region=$trimmed where="git config ccweb.region"
    if [ -z "$region" ]; then
      find_service ""
      if [ -n "${service-}" ]; then
        discover; announced "grc_region="; region=$found
        where="the ccweb service $service (grc.region)"
      fi
    fi
    [ -n "$region" ] || { trim "${AWS_REGION-}"; region=$trimmed where=AWS_REGION; }
    [ -n "$region" ] || { trim "${AWS_DEFAULT_REGION-}"; region=$trimmed where=AWS_DEFAULT_REGION; }
    [ -n "$region" ] || fail "$shown names no region and none is configured: write codecommit::<region>://$repo, or run \`git config --global ccweb.region <region>\` (or set AWS_REGION)."
    is_region "$region" || fail "$where is '$(safe "$region" 100)', which is not an AWS region (such as us-east-2)."
  fi
  # The host: git config ccweb.<region>.endpoint (host[:port]); else the service's; else AWS's standard host.
  key=ccweb.$region.endpoint
  case $region in
    cn-*) standard=https://git-codecommit.$region.amazonaws.com.cn/v1/repos/ ;;
    *) standard=https://git-codecommit.$region.amazonaws.com/v1/repos/ ;;
  esac
  trim "$(git_config --get "$key")"; lower "$trimmed"; endpoint=$lowered
  if [ -n "$endpoint" ]; then
    is_git_host "$endpoint" || fail "git config $key must be host[:port] (such as git-codecommit-fips.us-east-1.amazonaws.com), not '$(safe "$endpoint" 200)'."
    prefix=https://$endpoint/v1/repos/
    is_loopback "$(host_name "$endpoint")" && prefix=http://$endpoint/v1/repos/
  else
    find_service "$standard$repo"
    prefix=
    if [ -n "${service-}" ]; then
      discover; announced "grc_endpoint=$region "; prefix=$found
    fi
    if [ -n "$prefix" ]; then
      problem=$(prefix_problem "$prefix")
      [ -z "$problem" ] || fail "the ccweb service $service names '$(safe "$prefix" 200)' for the GRC URLs of $region, which $problem; tell its operators, or set \`git config --global $key <host>\`."
    else
      prefix=$standard
    fi
  fi
  cleanup
  exec git "remote-${prefix%%://*}" "$1" "$prefix$repo"
}

is_region() { matches '[a-z]{2}(-[a-z]{3,5})?-[a-z]+-[1-9][0-9]?' "$1"; }

# Whether $1 is host[:port] as a service's git endpoint must be (hosts.git_endpoint_host): a DNS name of
# letters, digits and hyphens, or an IPv6 address in brackets; lower case.
is_git_host() {
  matches '([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*|\[[0-9a-f:.]+\])(:[0-9]{1,5})?' "$1"
}

host_name() { case $1 in \[*\]*) printf '%s\n' "${1%%]*}]" ;; *) printf '%s\n' "${1%%:*}" ;; esac; }

# Why the service's URL prefix $1 for $region cannot be used (grc.py: _prefix_problem); nothing when it can:
# exactly http(s)://<host[:port]>/v1/repos/, http for loopback only, with a CodeCommit host of $region or one
# of the service's git endpoints as host (git sends the repository there).
prefix_problem() {
  case $1 in http://*/v1/repos/ | https://*/v1/repos/) ;; *) echo "is not https://<host>/v1/repos/"; return ;; esac
  authority=${1#*://}; authority=${authority%/v1/repos/}
  case $authority in */*) echo "is not https://<host>/v1/repos/"; return ;; esac
  is_git_host "$authority" || { echo "does not name a host"; return; }
  if [ "${1%%:*}" = http ] && ! is_loopback "$(host_name "$authority")"; then
    echo "is plain http:// to a host other than loopback"; return
  fi
  if [ "${1%%:*}" = https ] && codecommit_host "$authority"; then
    in_region=$(printf '%s\n' "$authority" | sed -n 's/^\(.*\.\)\{0,1\}git-codecommit\(-fips\)\{0,1\}\.\([a-z0-9-]*\)\..*/\3/p')
    [ "$in_region" = "$region" ] || echo "is a CodeCommit host of $in_region"
    return
  fi
  has_line "git_endpoint=$authority" ||
    echo "is neither a CodeCommit host of $region nor one of the service's git endpoints"
}

# --- the command ----------------------------------------------------------------------------------------

usage() {
  printf '%s\n' 'usage: ccweb-helper <command>' '' \
    'A git credential helper for AWS CodeCommit through a ccweb service (POSIX sh and curl).' '' \
    '  setup [--url URL] [--helper CMD] [--no-grc]' \
    '                                     configure git (global config) for every CodeCommit host, once;' \
    "                                     --no-grc leaves codecommit:: URLs to AWS's git-remote-codecommit" \
    '  get | store | erase                what git runs' \
    '  grc <remote> <address>             what git runs for codecommit:: URLs (set up by setup)' '' \
    'Settings: CCWEB_URL (or git config ccweb.url), CCWEB_TOKEN or CCWEB_TOKEN_FILE (CI platforms'"'"' own' \
    'tokens are found without them), CCWEB_TIMEOUT (seconds, default 10).'
}

umask 077
mode=${1-}
trap cleanup EXIT
trap 'fail "cancelled."' INT TERM HUP
case $mode in
  store | erase) exit 0 ;;  # ccweb passwords are short-lived and never stored
  get | setup | grc) ;;
  -h | --help | help) usage; exit 0 ;;
  *) if [ -z "$mode" ] || [ -t 0 ]; then usage >&2; exit 2; fi
    exit 0 ;;  # git's protocol: a helper ignores operations it does not know
esac
shift
seconds=10
trim "${CCWEB_TIMEOUT-}"
if [ -n "$trimmed" ]; then  # a number of seconds, more than 0 and at most 600
  seconds=$trimmed
  case $seconds in *[!0-9.]* | *.*.* | .) seconds=0 ;; esac
  awk -v t="$seconds" 'BEGIN { exit !(t + 0 > 0 && t + 0 <= 600) }' ||
    fail "CCWEB_TIMEOUT must be a number of seconds between 0 and 600, not '$(safe "$CCWEB_TIMEOUT" 40)'."
fi

"$mode" "$@"
