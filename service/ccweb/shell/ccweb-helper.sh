#!/bin/sh
# ccweb-helper (POSIX sh): git's credential helper for AWS CodeCommit through a ccweb service, for images
# with git, sh and curl but no Python. Served by the service at /helper/ccweb-helper.sh: this file, then
# http.sh, credentials.sh and git.sh of its folder, joined in that order (ccweb.shell_dist.PARTS).
#
#   ccweb-helper get | store | erase          what git runs (helper = !ccweb-helper)
#   ccweb-helper setup [--url URL] [--helper CMD] [--no-grc]   configure git (global config), once
#   ccweb-helper grc <remote> <address>       git's remote helper for codecommit:: URLs (set up by setup)
#
# Settings: CCWEB_URL (else git config credential.<url>.ccwebUrl, else ccweb.url), CCWEB_TIMEOUT (seconds,
# default 10). Token, first found: CCWEB_TOKEN; the file named by CCWEB_TOKEN_FILE (read on every call); the
# CI platform's own token (GitHub Actions, Azure Pipelines, Buildkite, CircleCI, Bitbucket Pipelines; GitLab's
# id_tokens name CCWEB_TOKEN). There is no interactive login: use the Python helper for that.
#
# Runs under dash, bash and BusyBox sh; uses curl, git and POSIX tools (awk, sed, grep, tr, cut, head, tail,
# wc, cat, mktemp, rm, sleep), as few as it can: git waits for each. No token is ever on a command line (ps
# shows those to every user): curl reads its URL and headers from a configuration on its standard input, a
# pipe the shell's built-in printf writes (never a file: bash keeps large here-documents in TMPDIR), and
# nothing secret is exported. curl ignores ~/.curlrc (-q), always verifies TLS (SSL_CERT_FILE, SSL_CERT_DIR and
# CURL_CA_BUNDLE name a company's authorities), reads the proxy variables itself (HTTPS_PROXY, ALL_PROXY,
# NO_PROXY) and never proxies loopback. On any failure of `get`: one `ccweb: ...` sentence on stderr and
# `quit=1`, so git neither prompts nor tries a stored password.

# bash takes options from the environment (SHELLOPTS, BASHOPTS): xtrace would print the token, allexport export
# it, errexit skip quit=1. Off, first of all. (BASH_ENV, which a non-POSIX bash runs before this line, is the
# environment's to keep safe, as PATH is.) No pathname expansion anywhere (-f).
set +aeuvxC -f
if [ -n "${BASH_VERSION-}" ]; then
  command set +kt +o pipefail 2>/dev/null
  command shopt -u nocasematch xpg_echo lastpipe 2>/dev/null
fi

# The CodeCommit host forms (an anchored ERE over host[:port], lower case), filled in by the service.
CODECOMMIT_HOSTS='@CODECOMMIT_HOSTS@'
# ...and the git URL patterns `setup` writes for them (tests/shell checks both against ccweb_helper.hosts).
CODECOMMIT_URLS='https://git-codecommit.*.amazonaws.com
https://git-codecommit-fips.*.amazonaws.com
https://git-codecommit.*.amazonaws.com.cn
https://*.git-codecommit.*.vpce.amazonaws.com
https://*.git-codecommit-fips.*.vpce.amazonaws.com
https://*.git-codecommit.*.vpce.amazonaws.com.cn'

# Every variable of this script, unset first: one that came in the environment would stay exported, and a
# token assigned to it would reach every child process.
unset address aud audience auds authority base cfg cfg_extra changes char charset check child connect_status \
  connection detail discovered dog endpoint endpoints entry escaped expiry file fix foreign forms found grc_urls \
  have helper hint host in_region jwt_rest kept key lhost line long lowered major minor mode named origin \
  password path pattern prefix previous problem protocol proxy_var quoted rc region remote repo request_auth \
  request_body request_type rest said seconds sections self service service_where shown shown_host size skey \
  split_authority split_rest standard status tmp tmp_escaped token token_source trimmed url url_host url_path \
  url_port url_scheme username value version via want_key wanted warning what where whole zone zone_region

# Programs are found in absolute PATH entries only: git runs a credential helper in the work tree it is
# cloning, where an empty, `.` or relative entry would run a `curl` or `git` someone committed (git's own
# GIT_EXEC_PATH stays first). The C locale: no multibyte character hides a `\` or `"` from the shell.
LC_ALL=C
rest=${PATH-}: PATH=
while [ -n "$rest" ]; do
  case ${rest%%:*} in /*) PATH=$PATH${PATH:+:}${rest%%:*} ;; esac
  rest=${rest#*:}
done

JWT_CHARS='ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-'
NL='
'
CR=$(printf '\r')
SERVICE_HINT='CCWEB_URL or git config ccweb.url'
ANSWER_BYTES=69632  # the most any answer may hold (68 KiB: a 64 KiB token and the JSON around it)
ALONE="set it to the service's address alone, e.g. https://ccweb.example.com."

# --- failing, and showing what came from outside ----------------------------------------------------------

# One sentence on stderr; for `get` also quit=1 on stdout (git then neither prompts nor tries a stored
# password). Exit 1 (get, setup) or 128 (grc, as git's own fatal errors).
fail() {
  [ "$mode" = probe ] || cleanup
  case $mode in
    get) printf 'quit=1\n'; printf 'ccweb: %s\n' "$1" >&2; exit 1 ;;
    setup | probe) printf 'ccweb-helper setup: %s\n' "$1" >&2; exit 1 ;;
    *) printf 'ccweb: %s\n' "$1" >&2; exit 128 ;;
  esac
}

cleanup() {  # curl when it still runs (a signal came), then the temporary directory
  if [ -n "${child-}" ]; then kill "$child" 2>/dev/null; child=; fi
  if [ -n "${tmp-}" ]; then rm -rf -- "$tmp"; tmp=; fi
}

# $1 made safe for one line of a terminal: every byte that is not printable ASCII becomes "?"; at most $2
# characters (default 300). Never given a secret (tr and cut would see it).
safe() { printf '%s' "$1" | LC_ALL=C tr -c ' -~' '?' | cut -c "1-${2:-300}"; }

# $1 with ASCII letters in lower case, in $lowered (tr starts only when there is an upper-case letter: git
# waits for every program this script starts).
lower() {
  case $1 in
    *[ABCDEFGHIJKLMNOPQRSTUVWXYZ]*) lowered=$(printf '%s\n' "$1" | LC_ALL=C tr '[:upper:]' '[:lower:]') ;;
    *) lowered=$1 ;;
  esac
}

printable() { case $1 in *[!' '-~]*) return 1 ;; esac; }  # only printable ASCII (pure shell: maybe a secret)

trim() {  # $1 without the white space around it, in $trimmed (pure shell: it may be a token)
  trimmed=${1#"${1%%[![:space:]]*}"}; trimmed=${trimmed%"${trimmed##*[![:space:]]}"}
}

# $1 as a quoted string of curl's configuration (\ and " escaped, a line break as \n), in $escaped. Pure
# shell (a token passes through here and must not reach a command line), in time linear in its length: each of
# \ and " is replaced everywhere at once, the value split at it (IFS, no pathname expansion: set -f) and the
# parts written back by the built-in printf, each followed by the escaped character (a "." kept last keeps a
# trailing one). A line break (only ever from the environment: never in a token or URL) is replaced one by one.
# What git sends (the repository path) never comes here: the request's body is a file curl reads.
escape() {
  escaped=$1
  case $escaped in *\\*) IFS=\\; set -- $escaped.; unset IFS
    escaped=$(printf '%s\\\\' "$@"); escaped=${escaped%\\\\}; escaped=${escaped%.} ;; esac
  case $escaped in *\"*) IFS=\"; set -- $escaped.; unset IFS
    escaped=$(printf '%s\\"' "$@"); escaped=${escaped%\\\"}; escaped=${escaped%.} ;; esac
  while :; do
    case $escaped in *"$NL"*) escaped=${escaped%%"$NL"*}\\n${escaped#*"$NL"} ;; *) return ;; esac
  done
}

# Whether $1 is one compact JWT: three non-empty base64url parts, at most 64 KiB. Pure shell (a secret).
is_jwt() {
  case $1 in *[!.$JWT_CHARS]*) return 1 ;; esac
  [ "${#1}" -le 65536 ] || return 1
  jwt_rest=${1#*.}
  [ -n "${1%%.*}" ] && [ -n "${jwt_rest%%.*}" ] && [ -n "${jwt_rest#*.}" ] && case ${jwt_rest#*.} in
    *.*) return 1 ;; esac
}

is_true() { case $1 in true | True | TRUE) return 0 ;; esac; return 1; }  # what CI platforms set

# --- addresses ------------------------------------------------------------------------------------------

# Whether the whole of $2 matches the ERE $1. grep matches line by line, so a value that is not one line of
# printable ASCII (a line break, CR or other control character in it) never matches: "x\nus-east-1" is no
# region because one of its lines is. Every check that accepts a value by grep goes through here.
matches() {
  case $2 in *"$NL"* | *"$CR"* | *[[:cntrl:]]* | *[!' '-~]*) return 1 ;; esac
  LC_ALL=C grep -Eqx -e "$1" <<EOF
$2
EOF
}

# Whether host[:port] $1 (lower case) is a CodeCommit host: by the service's ERE (one grep, no pipeline), and for
# a zonal VPC endpoint name (vpce-<id>-<id>-<zone>.git-codecommit...) with its zone in the host's region, which
# an ERE cannot compare (ccweb_helper.hosts: HOST_FORMS; an endpoint id holds no "-").
codecommit_host() {
  matches "$CODECOMMIT_HOSTS" "$1" || return 1
  case ${1%%.*} in vpce-*-*-*) ;; *) return 0 ;; esac
  zone=${1%%.*}; zone=${zone#vpce-*-*-}  # us-east-1a
  zone_region=${1#*.git-codecommit*.}; zone_region=${zone_region%%.*}
  [ "${zone%?}" = "$zone_region" ]
}

# Whether host name $1 (no port) is this machine's loopback: localhost, ::1, or 127.x.y.z written as decimal
# numbers from 0 to 255 without a leading zero (hosts.is_loopback); anything else (127.0.0.999, 127.0.0.08,
# 127.1) is a name a resolver may look up in DNS, and curl is never told to reach it directly over http.
is_loopback() {
  case $1 in localhost | ::1 | '[::1]') return 0 ;; 127.*.*.*) ;; *) return 1 ;; esac
  rest=${1#127.}
  case $rest in *.*.*.*) return 1 ;; esac
  byte "${rest%%.*}" && rest=${rest#*.} && byte "${rest%%.*}" && byte "${rest#*.}"
}

byte() { case $1 in [0-9] | [1-9][0-9] | 1[0-9][0-9] | 2[0-4][0-9] | 25[0-5]) return 0 ;; esac; return 1; }

# Whether $1 (stripped, lower case) is host[:port] as hosts.split_host reads it: printable ASCII without a /, @,
# ?, #, \ or space; an IPv6 address up to its ]; a port of at most 5 digits, from 1 to 65535.
host_port() {
  case $1 in
    '' | *[/@?#\\' ']* | *[!' '-~]*) return 1 ;;
    \[*) rest=${1#*]}; [ "$rest" != "$1" ] || return 1 ;;
    *) rest=${1#"${1%%:*}"} ;;
  esac
  case $rest in '') return 0 ;; :*) rest=${rest#:} ;; *) return 1 ;; esac
  case $rest in '' | *[!0-9]* | ??????*) return 1 ;; esac
  [ "$rest" -ge 1 ] && [ "$rest" -le 65535 ]
}

# Split URL $1 into $url_scheme, $url_host (lower case, IPv6 in brackets), $url_port and $url_path; 1 when it
# is not scheme://host[:port][path] without a user name.
split_url() {
  case $1 in *://*) ;; *) return 1 ;; esac
  lower "${1%%://*}"; url_scheme=$lowered
  split_rest=${1#*://}
  split_authority=${split_rest%%[/?#]*}
  url_path=${split_rest#"$split_authority"}
  case $split_authority in *@* | '') return 1 ;; esac
  case $split_authority in
    \[*\]) url_host=$split_authority url_port= ;;
    \[*\]:*) url_host=${split_authority%%]*}] url_port=${split_authority##*]:} ;;
    *:*) url_host=${split_authority%%:*} url_port=${split_authority#*:} ;;
    *) url_host=$split_authority url_port= ;;
  esac
  case $url_port in *[!0-9]*) return 1 ;; esac
  [ -n "$url_host" ] || return 1
  lower "$url_host"; url_host=$lowered
}

# A URL as a service is known by it (helper/ccweb_helper/audience.py: service_key), in $key: lower-case
# scheme and host, the port unless it is the scheme's default, the path without trailing slashes.
url_key() {
  case $1 in *[?#]*) return 1 ;; esac
  split_url "$1" || return 1
  case $url_scheme:$url_port in http:80 | https:443) url_port= ;; http:* | https:*) ;; *) return 1 ;; esac
  while :; do case $url_path in */) url_path=${url_path%/} ;; *) break ;; esac; done
  key=$url_scheme://$url_host${url_port:+:$url_port}$url_path
}

is_url() {  # an address (a scheme, then ://), as audience.is_url
  case $1 in [A-Za-z]*://*) ;; *) return 1 ;; esac
  case ${1%%://*} in *[!A-Za-z0-9+.-]*) return 1 ;; esac
}

# The service's address from $1 (named by $2), checked as the Python helper checks it: in $service.
use_service() {
  if ! printable "$1" || case $1 in *' '*) true ;; *) false ;; esac; then
    fail "$2 holds a space, line break or other control character (not shown here); $ALONE"
  fi
  case $1 in *[?#]*) fail "$2 must be the ccweb service's address without a query (?) or fragment (#); $ALONE" ;; esac
  split_url "$1" || case ${1#*://} in
    *@*) fail "$2 must be an https:// URL of the ccweb service without a user name or password (not shown here); $ALONE" ;;
    *) fail "$2 must be an https:// URL of the ccweb service (not shown here); $ALONE" ;; esac
  case $url_scheme in
    https) ;;
    http) is_loopback "$url_host" || fail "$2 is a plain http:// address: ccweb-helper sends your token only over https (plain http is allowed to loopback addresses only); use the service's https:// URL." ;;
    *) fail "$2 must be an https:// URL of the ccweb service (not shown here); $ALONE" ;;
  esac
  service=$1
  while :; do case $service in */) service=${service%/} ;; *) break ;; esac; done
  service_where=$2
}

