#!/bin/sh
# ccweb-helper (POSIX sh): git's credential helper for AWS CodeCommit through a ccweb service, for images
# with git, sh and curl but no Python. Served by the service at /helper/ccweb-helper.sh.
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

# --- one HTTP exchange ----------------------------------------------------------------------------------

# The variable curl takes its proxy from for an https URL, or none (curl's own order).
proxy_var() {
  for proxy_var in https_proxy HTTPS_PROXY all_proxy ALL_PROXY; do
    eval "[ -n \"\${$proxy_var-}\" ]" && return 0
  done
  proxy_var=
}

# http METHOD URL WHAT HINT: one request, with $request_auth as the Authorization header and $request_body of
# type $request_type as the body when they are set; $status, the body in $tmp/body (at most ANSWER_BYTES, else
# one sentence), the headers in $tmp/headers. WHAT names the party in sentences ("the ccweb service"), HINT the
# setting to check when it cannot be reached.
http() {
  what=$3 hint=$4
  split_url "$2" || fail "the address of $what is not a URL."
  origin=$url_scheme://$split_authority shown_host=$url_host
  if ! printable "$origin"; then origin=$(safe "$origin"); shown_host=$(safe "$url_host"); fi
  # Authorities: curl reads CURL_CA_BUNDLE itself, but not every curl reads SSL_CERT_FILE or SSL_CERT_DIR
  # (Debian's 7.88 does not): they are passed on, as the Python helper honours them.
  cfg_extra=
  if [ -z "${CURL_CA_BUNDLE-}" ] && [ -n "${SSL_CERT_FILE-}" ]; then
    escape "$SSL_CERT_FILE"; cfg_extra="$NL""cacert = \"$escaped\""
  fi
  if [ -z "${CURL_CA_BUNDLE-}" ] && [ -n "${SSL_CERT_DIR-}" ]; then
    escape "$SSL_CERT_DIR"; cfg_extra="$cfg_extra$NL""capath = \"$escaped\""
  fi
  case $url_scheme in
    https) is_loopback "$url_host" && cfg_extra="$cfg_extra$NL"'noproxy = "*"' ;;  # loopback: never proxied
    http) is_loopback "$url_host" || fail "$what is at a plain http:// address; ccweb-helper speaks to it only over https."
      cfg_extra="$cfg_extra$NL"'noproxy = "*"' ;;
    *) fail "the address of $what is not an https:// URL." ;;
  esac
  make_tmp
  # One URL, no globbing ({a,b} and [1-9] would make several requests of it, each with the header).
  escape "$2"
  cfg="url = \"$escaped\"
request = \"$1\"
proto = \"=$url_scheme\"
globoff
max-time = $seconds
max-filesize = $ANSWER_BYTES
silent
show-error
user-agent = \"ccweb-helper.sh\"
output = \"$tmp_escaped/body\"
dump-header = \"$tmp_escaped/headers\"
write-out = \"%{http_code} %{http_connect} %{size_download}\"$cfg_extra"
  if [ -n "${request_body+set}" ]; then  # no secret: a file of the 0700 directory
    printf '%s' "$request_body" >"$tmp/request" || fail "cannot write to the temporary directory $(safe "$tmp")."
    cfg="$cfg$NL""data-binary = \"@$tmp_escaped/request\"$NL""header = \"Content-Type: $request_type\""
  fi
  if [ -n "${request_auth-}" ]; then escape "$request_auth"; cfg="$cfg$NL""header = \"Authorization: $escaped\""; fi
  # curl runs in the background and is waited for, so that a signal ends this script (and curl: cleanup) at
  # once. Its configuration reaches it through a pipe, never a file. Every file it writes is held to 256 blocks
  # (curl's write then fails): curl before 8.4 does not hold an answer of unknown length (chunked, endless) to
  # max-filesize, and would write until max-time.
  printf '%s\n' "$cfg" |
    (trap '' XFSZ; ulimit -f 256 2>/dev/null; exec curl -q --config - >"$tmp/status" 2>"$tmp/error") &
  child=$!
  wait "$child"; rc=$?
  child= cfg= escaped= request_auth= ; unset request_body
  status= connect_status= size=
  read -r status connect_status size <"$tmp/status"
  case $size in '' | *[!0-9]*) size=0 ;; esac
  [ "$size" -le "$ANSWER_BYTES" ] || fail "the answer of $what at $origin is too large to be one it would send."
  [ "$rc" = 0 ] || curl_failed
}

# A directory of our own (mktemp -d: mode 0700) for curl's answers, removed on exit; $tmp_escaped: its name as
# curl's configuration quotes it (TMPDIR may hold a ").
make_tmp() {
  [ -n "${tmp-}" ] && return
  tmp=$(mktemp -d) || fail "cannot create a temporary directory (is TMPDIR writable?)."
  escape "$tmp"; tmp_escaped=$escaped
}

# Whether NO_PROXY (no_proxy first) names $url_host, as curl reads the usual entries: `*`, or a name that is
# the host or a domain it is in (a leading dot ignored). Only for choosing the sentence: curl decides.
bypassed() {
  rest=${no_proxy:-${NO_PROXY-}},
  while [ "$rest" != "${rest#*,}" ]; do
    trim "${rest%%,*}"; rest=${rest#*,}
    lower "${trimmed#.}"; entry=$lowered
    case $url_host in "$entry" | *."$entry") return 0 ;; esac
    [ "$entry" = '*' ] && return 0
  done
  return 1
}

# curl's failure ($rc, its message in $tmp/error) as one sentence. curl's message is shown only when no proxy
# variable is set or the host is loopback (never proxied): about a proxy, curl quotes what it could not use, up
# to the whole URL with its user name and password ("Unsupported proxy syntax in 'http://bob:pw#x@...'"), so
# then ccweb says it in sentences of its own that name the variable, never its value.
curl_failed() {
  check=${hint:+; check $hint, and that it is running}
  proxy_var
  if [ -n "$proxy_var" ] && ! is_loopback "$url_host"; then
    bypassed || proxy_failed
    said="curl exit code $rc"  # NO_PROXY named the host (as far as this script reads it): curl went directly
  else
    trim "$(head -n 1 "$tmp/error" | LC_ALL=C tr -c ' -~' ' ' | cut -c 1-300)"
    said="curl: ${trimmed#curl: (*) }"
  fi
  case $rc in
    6) fail "cannot resolve the host name '$shown_host' of $what ($origin); check ${hint:+$hint, and }your network or VPN." ;;
    28) fail "$what at $origin did not answer within $seconds seconds; try again, or raise CCWEB_TIMEOUT." ;;
    60 | 77 | 83 | 90 | 91) fail "the TLS certificate of $what at $origin could not be verified ($said); if your company uses its own certificate authority, point SSL_CERT_FILE at its bundle." ;;
    63) fail "the answer of $what at $origin is too large to be one it would send." ;;
    *) fail "cannot reach $what at $origin ($said)$check." ;;
  esac
}

# curl's failure ($rc; the CONNECT answer's status in $connect_status) through the proxy $proxy_var names.
proxy_failed() {
  via="the proxy set by $proxy_var"
  fix="check $proxy_var, or add $shown_host to NO_PROXY if it is reachable directly"
  case $rc in
    5) fail "$via cannot be used: curl cannot read its URL or resolve its host name (the value is not shown here: it may hold a password); $fix." ;;
    7) fail "cannot reach $via (curl could not connect to it); $fix." ;;
    28) fail "no answer from $what at $origin through $via within $seconds seconds; $fix, or raise CCWEB_TIMEOUT." ;;
    56) case $connect_status in
        407) fail "$via refused to connect to $shown_host:${url_port:-443} (HTTP 407, proxy authentication required); check the user name and password in $proxy_var." ;;
        [1-9][0-9][0-9]) [ "$connect_status" = 200 ] ||
          fail "$via refused to connect to $shown_host:${url_port:-443} (HTTP $connect_status); $fix." ;;
      esac ;;
    60 | 77 | 83 | 90 | 91) fail "the TLS certificate of $what at $origin could not be verified through $via (curl exit code $rc); if your company's proxy or network uses its own certificate authority, point SSL_CERT_FILE at its bundle." ;;
  esac
  fail "no answer from $what at $origin through $via (curl exit code $rc); $fix (a user name and password in it, too)."
}

# The last answer's Retry-After (seconds), in $found; empty when it has none.
retry_after() {
  found=$(grep -i '^retry-after:' "$tmp/headers" | tail -n 1 | cut -d : -f 2- | tr -d ' \t\r')
  case $found in *[!0-9]*) found= ;; esac
}

# Field $1 (key=value lines) of the last answer, in $found (the last such line; empty when none).
field() {
  found=
  while IFS= read -r line || [ -n "$line" ]; do
    case $line in "$1="*) found=${line#*=} ;; esac
  done <"$tmp/body"
}

# The strings of top-level key `key` of a JSON object (a string, or each string of an array), one per line;
# nothing when the input is no JSON object. jwt=1: the input is a compact JWT, and the JSON its payload. In time
# linear in the input (at most ANSWER_BYTES, or a 64 KiB token): the input is one record (RS: a byte JSON never
# holds), \\ and \" are replaced by bytes of their own, and split at every other " the text falls into strings
# (even parts) and what is between them (odd parts), which is read 256 characters at a time; no string is built
# one character at a time (awk copies a string to append to it; BusyBox awk measures it for every substr).
JSON_AWK='
function payload(t,   a, n, i, j, m, chunk, v, acc, bits, out, piece, b) {
  if (split(t, a, ".") != 3) return ""
  n = length(a[2]); acc = 0; bits = 0; out = ""
  for (i = 1; i <= n; i += 256) {
    chunk = substr(a[2], i, 256); m = length(chunk); piece = ""
    for (j = 1; j <= m; j++) {
      v = index(B64, substr(chunk, j, 1)) - 1
      if (v < 0) return ""
      acc = acc * 64 + v; bits += 6
      if (bits >= 8) { bits -= 8; b = int(acc / POW[bits]); acc -= b * POW[bits]; piece = piece sprintf("%c", b) }
    }
    out = out piece
  }
  return out
}
function unescape(t) {
  if (index(t, "\\") || index(t, BS) || index(t, QU)) { gsub(/\\\//, "/", t); gsub(BS, "\\", t); gsub(QU, "\"", t) }
  return t
}
function between(t,   n, i, j, m, chunk) {
  n = length(t)
  for (i = 1; i <= n && !done && !bad; i += 256) {
    chunk = substr(t, i, 256); m = length(chunk)
    for (j = 1; j <= m && !done && !bad; j++) mark(substr(chunk, j, 1))
  }
}
function mark(c) {
  if (index(" \t\r\n", c)) return
  if (depth == 0) { if (c == "{") { depth = 1; state = "K" } else bad = 1; return }
  if (depth > 1) {
    if (c == "{" || c == "[") depth++
    else if ((c == "}" || c == "]") && --depth == 1) { state = "A"; list = 0 }
    return
  }
  if (c == ":") { if (state == "C") state = "V"; else bad = 1 }
  else if (c == ",") { if (state == "A" || state == "S") state = "K"; else bad = 1 }
  else if (c == "}") { if (state == "K" || state == "A" || state == "S") done = 1; else bad = 1 }
  else if (c == "{" || c == "[") {
    if (state != "V") { bad = 1; return }
    depth = 2; if (k == key) { nf = 0; list = (c == "[") }
  }
  else if (c == "]") bad = 1
  else if (state == "V") { state = "S"; if (k == key) nf = 0 }
  else if (state != "S") bad = 1
}
function text(t) {
  if (depth == 0) bad = 1
  else if (depth > 1) { if (depth == 2 && list) F[++nf] = unescape(t) }
  else if (state == "K") { k = unescape(t); state = "C" }
  else if (state == "V") { if (k == key) { nf = 1; F[1] = unescape(t) }; state = "A" }
  else bad = 1
}
BEGIN {
  RS = "\001"; BS = "\002"; QU = "\003"
  B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
  for (i = 0; i < 8; i++) POW[i] = i ? POW[i - 1] * 2 : 1  # no ^: BusyBox awk may be built without it
}
{ s = $0 }
END {
  if (NR != 1) exit
  if (jwt) { sub(/\n$/, "", s); s = payload(s) }
  if (index(s, "\001") || index(s, BS) || index(s, QU)) exit
  gsub(/\\\\/, BS, s); gsub(/\\"/, QU, s)
  n = split(s, part, "\"")
  for (i = 1; i <= n && !done && !bad; i++) {
    if (i % 2) between(part[i])
    else if (i == n) bad = 1  # a string without its end
    else text(part[i])
  }
  if (done && !bad) for (i = 1; i <= nf; i++) print F[i]
}'

# --- the service's discovery (GET /.well-known/ccweb.txt), fetched at most once -------------------------

# Its lines of printable ASCII in $tmp/discovery (a line with any other byte is dropped whole), its CI
# audience in $audience. Read in the shell itself: git waits for every program this script starts.
discover() {
  [ -n "${discovered-}" ] && return
  http GET "$service/.well-known/ccweb.txt" "the ccweb service" "$SERVICE_HINT"
  audience= found=
  while IFS= read -r line || [ -n "$line" ]; do  # each line kept straight to the file: time linear in its size
    printable "$line" || continue
    printf '%s\n' "$line"
    case $line in audience=*) audience=${line#*=} found=1 ;; esac
  done <"$tmp/body" >"$tmp/discovery"
  if [ "$status" != 200 ] || [ -z "$found" ]; then
    fail "$service/.well-known/ccweb.txt did not answer like a ccweb service (HTTP $status); check that CCWEB_URL (or git config ccweb.url) names the ccweb service, and that it is recent enough to serve the shell helper."
  fi
  discovered=1
}

# The value of the last discovery line that starts with $1, without it, in $found (empty when none).
announced() {
  found=
  while IFS= read -r line; do case $line in "$1"*) found=${line#"$1"} ;; esac; done <"$tmp/discovery"
}

# Whether host $1 (lower case) is one of the service's git endpoints.
advertised() { discover; has_line "git_endpoint=$1"; }

has_line() {  # whether the discovery holds the line $1
  while IFS= read -r line; do [ "$line" = "$1" ] && return 0; done <"$tmp/discovery"
  return 1
}

# --- tokens (helper/ccweb_helper/sources.py and ci.py) ----------------------------------------------------

# $1 (a token named by $2) kept as $token, or one sentence; a token whose audiences are all other services'
# addresses is refused (audience.refuse_foreign), so it stays with the service it was made for.
take_token() {
  token=$1
  token=${token#"${token%%[![:space:]]*}"}; token=${token%"${token##*[![:space:]]}"}
  [ -n "$token" ] || fail "$2 is empty; it must hold an OIDC token (a JWT)."
  is_jwt "$token" || fail "$2 does not hold a single OIDC token (a JWT of three base64url parts, no spaces or line breaks)."
  url_key "$service"; skey=$key
  auds=$(printf '%s\n' "$token" | LC_ALL=C awk -v key=aud -v jwt=1 "$JSON_AWK")
  [ -n "$auds" ] || return 0
  foreign=1 shown=
  while IFS= read -r aud; do
    if is_url "$aud" && ! { url_key "$aud" && [ "$key" = "$skey" ]; }; then
      shown="$shown${shown:+, }'$aud'"
    else
      foreign=0
    fi
  done <<EOF
$auds
EOF
  [ "$foreign" = 1 ] && fail "$2 holds a token issued for another service's address ($(safe "$shown")), not for the ccweb service at $skey, so it was not sent."
  token_source=$2
}

# Whether AWS STS itself takes tokens of audience $1 (ci.py: STS_AUDIENCE): sts.amazonaws.com and the names
# of STS's endpoints, bare or as https URLs, in any case (grep only for an audience that holds "sts").
sts_audience() {
  case $1 in *[sS][tT][sS]*) ;; *) return 1 ;; esac
  grep -Eiqx '(https://)?sts(-fips)?(\.[a-z0-9-]+)?\.(amazonaws\.com(\.cn)?|amazonaws\.eu|api\.aws)\.?/?' <<EOF
$1
EOF
}

# The audience to ask a CI platform ($1) for, in $audience (ci.py: _audience).
ci_audience() {
  discover
  [ -n "$audience" ] || fail "the ccweb service did not say which audience CI tokens must carry (no \"audience\" in its /.well-known/ccweb), so no $1 token can be requested; upgrade the service, or set CCWEB_TOKEN."
  case $audience in -* | *[![:graph:]]*) fail "the ccweb service named an audience for CI tokens that no CI platform can be asked for." ;; esac
  [ "${#audience}" -le 1024 ] || fail "the ccweb service named an audience for CI tokens that no CI platform can be asked for."
  if sts_audience "$audience"; then
    fail "the ccweb service asks CI tokens to carry the audience '$audience', which AWS STS itself accepts: such a token could be replayed to AWS, so none is requested; its operators must give ccweb an audience of its own."
  fi
  url_key "$service"; skey=$key
  if is_url "$audience" && ! { url_key "$audience" && [ "$key" = "$skey" ]; }; then
    fail "the ccweb service at $skey asks for CI tokens meant for another address ('$audience'), so none is requested: a token whose audience is a service's URL is given to that service only."
  fi
}

urlencode() {  # $1 percent-encoded (every byte but A-Z a-z 0-9 - . _ ~), in $escaped; never a secret
  escaped= ; rest=$1
  while [ -n "$rest" ]; do
    char=${rest%"${rest#?}"}; rest=${rest#?}
    case $char in
      [A-Za-z0-9._~-]) escaped=$escaped$char ;;
      :) escaped=$escaped%3A ;;
      /) escaped=$escaped%2F ;;
      *) escaped=$escaped$(printf '%%%02X' "'$char") ;;
    esac
  done
}

with_query() {  # $1 with query $2 appended, in $found
  case $1 in *\?) found=$1$2 ;; *\&) found=$1$2 ;; *\?*) found=$1\&$2 ;; *) found=$1?$2 ;; esac
}

# The token a platform's service answered (JSON key $1) into $token, or one sentence; $2 names the service.
platform_answer() {
  case $status in
    200) ;;
    5??) fail "$2 is failing (HTTP $status) and gave no OIDC token; retry the job." ;;
    *) fail "$2 refused to give an OIDC token (HTTP $status); $3" ;;
  esac
  token=$(LC_ALL=C awk -v key="$1" -v jwt=0 "$JSON_AWK" <"$tmp/body")
  trim "$token"; token=$trimmed  # as the Python helper: the value without the white space around it
  [ -n "$token" ] || fail "$2 answered without an OIDC token (no \"$1\" in a JSON object)."
  is_jwt "$token" || fail "what $2 answered is not an OIDC token (a JWT of three base64url parts); it was not used."
}

# The CI platform's own token, in $token and $token_source; 1 when there is none to be had. Every setting is read
# without the white space around it, as ci.py reads it.
ci_token() {
  trim "${ACTIONS_ID_TOKEN_REQUEST_URL-}"; url=$trimmed
  trim "${ACTIONS_ID_TOKEN_REQUEST_TOKEN-}"
  if [ -n "$url" ] && [ -n "$trimmed" ]; then
    ci_audience "GitHub Actions"; urlencode "$audience"  # (discovery: before request_auth is set)
    with_query "$url" "audience=$escaped"
    trim "$ACTIONS_ID_TOKEN_REQUEST_TOKEN"; request_auth="bearer $trimmed"
    case $request_auth in *[![:print:]]*) fail "a credential to send to the GitHub Actions token service holds characters an HTTP header cannot carry (a line break?); check where it comes from." ;; esac
    http GET "$found" "the GitHub Actions token service" ""
    platform_answer value "the GitHub Actions token service" 'check that the job has "permissions: id-token: write".'
    token_source="GitHub Actions"; return 0
  fi
  request_auth=
  trim "${CCWEB_AZURE_SERVICE_CONNECTION_ID-}"; connection=$trimmed
  [ -n "$connection" ] || { trim "${AZURESUBSCRIPTION_SERVICE_CONNECTION_ID-}"; connection=$trimmed; }
  trim "${SYSTEM_OIDCREQUESTURI-}"; url=$trimmed
  trim "${SYSTEM_ACCESSTOKEN-}"
  if [ -n "$url" ] && [ -n "$trimmed" ] && [ -n "$connection" ]; then
    request_auth="Bearer $trimmed" request_body='{}' request_type=application/json
    case $request_auth in *[![:print:]]*) fail "a credential to send to the Azure Pipelines token service holds characters an HTTP header cannot carry (a line break?); check where it comes from." ;; esac
    urlencode "$connection"
    with_query "$url" "api-version=7.1&serviceConnectionId=$escaped"
    http POST "$found" "the Azure Pipelines token service" ""
    platform_answer oidcToken "the Azure Pipelines token service" "check that service connection $escaped exists and this pipeline may use it."
    token_source="Azure Pipelines"; return 0
  fi
  trimmed= ; unset request_body
  if is_true "${BUILDKITE-}" && command -v buildkite-agent >/dev/null 2>&1; then  # by an absolute PATH entry
    ci_audience Buildkite
    agent_token
    token_source=Buildkite; return 0
  fi
  trim "${CIRCLE_OIDC_TOKEN_V2-}"
  if [ -n "$trimmed" ]; then take_token "$trimmed" CIRCLE_OIDC_TOKEN_V2; return 0; fi
  trim "${BITBUCKET_STEP_OIDC_TOKEN-}"
  if [ -n "$trimmed" ]; then take_token "$trimmed" BITBUCKET_STEP_OIDC_TOKEN; return 0; fi
  return 1
}

# `buildkite-agent oidc request-token`'s token (on its stdout; the audience is no secret; the tool's own messages
# are not shown), in $token, within CCWEB_TIMEOUT (in whole seconds) as every request: a watchdog in the
# background stops the agent (only sleep and kill: `timeout` is not POSIX, and BusyBox's before 1.30 reads its
# seconds from -t).
agent_token() {
  make_tmp
  whole=${seconds%%.*}
  case $seconds in *.*[1-9]*) whole=$((${whole:-0} + 1)) ;; esac
  token=$({  # (its stderr: none, nor the shell's "Terminated")
    buildkite-agent oidc request-token --audience "$audience" </dev/null &
    child=$!
    (sleep "$whole"; : >"$tmp/late"; kill "$child") </dev/null >/dev/null &
    dog=$!
    wait "$child"; rc=$?
    kill "$dog"
    exit "$rc"
  } 2>/dev/null)
  rc=$?
  if [ -e "$tmp/late" ]; then
    fail "\`buildkite-agent oidc request-token\` did not answer within $seconds seconds; try again."
  fi
  [ "$rc" = 0 ] || fail "\`buildkite-agent oidc request-token\` failed (exit status $rc); run \`buildkite-agent oidc request-token --audience $audience > /dev/null\` in the step to see why (its output is not shown here)."
  trim "$token"; token=$trimmed
  is_jwt "$token" || fail "what \`buildkite-agent oidc request-token\` printed is not an OIDC token (a JWT of three base64url parts); it was not used."
}

# What to configure when the platform gave no token (ci.py: missing_hint), in $found; empty elsewhere.
missing_hint() {
  found=
  if is_true "${GITHUB_ACTIONS-}"; then
    found='GitHub Actions gives this job no OIDC token: add "permissions: id-token: write" to the job (or the workflow); pull requests from forks never get one.'
  elif is_true "${GITLAB_CI-}"; then
    shown="<the audience from $service/.well-known/ccweb>"
    [ -n "${audience-}" ] && shown=$audience
    found="GitLab CI gives jobs an OIDC token only when asked: add \`id_tokens: {CCWEB_TOKEN: {aud: $shown}}\` to the job in .gitlab-ci.yml."
  elif is_true "${CIRCLECI-}"; then
    found='CircleCI gave this job no OIDC token (CIRCLE_OIDC_TOKEN_V2): CircleCI injects it only into jobs that use a context, so add `context: <a context>` to the job in the workflow.'
  elif is_true "${BUILDKITE-}"; then
    found='Buildkite tokens come from `buildkite-agent oidc request-token`, but buildkite-agent is not on PATH in this step; put it on PATH (plugins and containers must mount the agent binary).'
  elif [ -n "${BITBUCKET_BUILD_NUMBER-}" ]; then
    found='Bitbucket Pipelines gives a step an OIDC token only with `oidc: true`: add it to the step.'
  elif is_true "${TF_BUILD-}"; then
    if [ -z "${SYSTEM_OIDCREQUESTURI-}" ]; then
      found='this Azure Pipelines agent offers no OIDC tokens (no SYSTEM_OIDCREQUESTURI); update the agent.'
      return
    fi
    [ -n "${SYSTEM_ACCESSTOKEN-}" ] ||
      found='map the job'"'"'s access token into the step with `env: {SYSTEM_ACCESSTOKEN: $(System.AccessToken)}`'
    [ -n "${CCWEB_AZURE_SERVICE_CONNECTION_ID:-${AZURESUBSCRIPTION_SERVICE_CONNECTION_ID-}}" ] ||
      found="$found${found:+; and }set CCWEB_AZURE_SERVICE_CONNECTION_ID to the id of the service connection whose token ccweb trusts"
    [ -z "$found" ] || found="Azure Pipelines gives a step an OIDC token only for a service connection: $found."
  fi
}

find_token() {  # $token and $token_source, in the contract's order; one sentence when there is none
  trim "${CCWEB_TOKEN-}"
  if [ -n "$trimmed" ]; then
    take_token "$CCWEB_TOKEN" CCWEB_TOKEN; return
  fi
  if [ -n "${CCWEB_TOKEN_FILE-}" ]; then
    file=$CCWEB_TOKEN_FILE named="the token file $(safe "$file") named by CCWEB_TOKEN_FILE"
    [ -f "$file" ] || fail "cannot read $named (no such file)."
    [ -r "$file" ] || fail "cannot read $named (permission denied)."
    size=$(wc -c <"$file") || fail "cannot read $named."
    [ "$size" -le 65536 ] || fail "$named is too large to hold a token."
    take_token "$(cat <"$file")" "$named"; return
  fi
  ci_token && return
  missing_hint
  [ -n "$found" ] && fail "no OIDC token found: $found"
  base='no OIDC token found: set CCWEB_TOKEN to a token of your identity provider, or CCWEB_TOKEN_FILE to a file that holds one'
  lower "${CI-}"
  case $lowered in
    1 | true | yes) fail "$base; CI=true, so no interactive login is started (on GitHub Actions grant \`permissions: id-token: write\`; on GitLab CI add \`id_tokens: CCWEB_TOKEN: aud: <audience>\`)." ;;
  esac
  fail "$base (this shell helper has no interactive login: on a workstation use the Python ccweb-helper)."
}

# --- get ------------------------------------------------------------------------------------------------

git_config() { git config "$@" </dev/null 2>/dev/null; }

# The service named for the remote URL $1, in $service (unset when none): CCWEB_URL, else git config
# credential.<url>.ccwebUrl, else ccweb.url (sources.service_url).
find_service() {
  previous=${service-}
  unset service
  trim "${CCWEB_URL-}"
  if [ -n "$trimmed" ]; then
    use_service "$trimmed" CCWEB_URL
  elif found=$(git_config --get-urlmatch credential.ccweburl "$1") && [ -n "$found" ]; then
    use_service "$found" "git config credential.<url>.ccwebUrl"
  elif found=$(git_config --get ccweb.url) && [ -n "$found" ]; then
    use_service "$found" "git config ccweb.url"
  fi
  [ "${service-}" = "$previous" ] || discovered=
}

get() {
  protocol= host= path=
  while IFS= read -r line || [ -n "$line" ]; do
    line=${line%"$CR"}
    [ -z "$line" ] && break
    case $line in
      protocol=*) lower "${line#*=}"; protocol=$lowered ;;
      host=*) host=${line#*=} ;;
      path=*) path=${line#*=} ;;
    esac
  done
  case $protocol in http | https) ;; *) exit 0 ;; esac
  [ "${#host}" -le 1024 ] || exit 0  # no host name is that long (the service takes 300 characters)
  trim "$host"; lower "$trimmed"; lhost=$lowered  # as hosts.split_host reads it: stripped, lower case
  host_port "$lhost" || exit 0  # no host[:port] (github.com:abc, a:b:c): not ours
  # The service cannot sign for a path over 1024 characters (then at least 1025 bytes, at most 4096 when every
  # one is ASCII): such a path is looked at no further (a hostile .gitmodules can make it long).
  long=
  if [ "${#path}" -gt 4096 ] || { [ "${#path}" -gt 1024 ] && printable "$path"; }; then long=1; fi
  remote=$protocol://$host/
  if [ -z "$long" ]; then  # without the slashes before the path (get.py: _remote_url)
    rest=${path%%[!/]*}; remote=$remote${path#"$rest"}
  fi
  find_service "$remote"
  case $CODECOMMIT_HOSTS in @*@) fail "this copy of the shell helper was not served by a ccweb service (its CodeCommit host list is empty); download it from https://<your ccweb service>/helper/ccweb-helper.sh." ;; esac
  if ! codecommit_host "$lhost"; then
    [ -n "${service-}" ] || exit 0  # not ours: git asks the next helper
    lower "$host"; advertised "$lowered" || exit 0  # as git sent it (get.py: _advertised)
  fi
  [ -n "${service-}" ] || fail "no ccweb service is configured for $(safe "$host"): set CCWEB_URL, or run \`git config --global ccweb.url https://<your ccweb service>\`."
  case $path in *[!/]*) ;; *) fail "git did not send the repository path, and a CodeCommit password is signed for one repository; run \`git config --global credential.useHttpPath true\`." ;; esac
  [ -z "$long" ] || fail "The request body must be git's credential format, key=value lines with protocol, host and path (path: String should have at most 1024 characters)."
  case $path in *[[:cntrl:]]*) fail "git sent a repository path with a control character (is there a %0A or %0D in the remote's URL?); check the remote's URL." ;; esac
  # The token reaches curl through the built-in printf only: were printf a program, ps would show its arguments.
  case $(command -V printf 2>/dev/null) in
    *built*) ;;
    *) fail "this shell has no built-in printf, which ccweb-helper needs to hand the token to curl without a command line; run it with dash, bash or BusyBox sh." ;;
  esac
  find_token
  request_auth="Bearer $token"
  request_body="protocol=$protocol$NL""host=$host$NL""path=$path$NL" request_type="text/plain; charset=utf-8"
  http POST "$service/v1/git-credential" "the ccweb service" "$SERVICE_HINT"
  if [ "$status" != 200 ]; then
    field detail; detail=$found
    field error
    if [ -z "$detail$found" ]; then
      [ "$status" = 404 ] && fail "the ccweb service at $service has no /v1/git-credential (HTTP 404): upgrade it, or check that CCWEB_URL (or git config ccweb.url) names the ccweb service."
      fail "$service answered HTTP $status with something that is not ccweb's answer; check that CCWEB_URL (or git config ccweb.url) names the ccweb service."
    fi
    detail=$(safe "${detail:-the service refused the request (HTTP $status, $found)}" 600)
    retry_after
    case $status in 429 | 503) [ -n "$found" ] && detail="${detail%.} (retry after $found s)." ;; esac
    fail "$detail"
  fi
  field username; username=$found
  field password; password=$found
  field password_expiry_utc; expiry=$found
  # Every character of a credential is printable ASCII; anything else is not passed on to git.
  if ! printable "$username$password$expiry"; then
    fail "$service sent a credential git cannot use (it is not printable ASCII); is it the ccweb service?"
  fi
  [ -n "$username" ] && [ -n "$password" ] || fail "$service answered without a username and password; is it the ccweb service?"
  case $expiry in '' | *[!0-9]*) fail "$service answered without password_expiry_utc; is it the ccweb service?" ;; esac
  cleanup
  printf 'username=%s\npassword=%s\npassword_expiry_utc=%s\n' "$username" "$password" "$expiry"
}

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
  if (mode=probe; discover) 2>"$tmp/warning"; then
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
