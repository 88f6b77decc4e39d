# ccweb-helper.sh, part 2 of 4: one HTTP exchange (curl), the JSON reader, the service's discovery.
# Not a script of its own: the service serves the parts joined in order, one file (ccweb.shell_dist.PARTS).

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
  wait "$child" 2>/dev/null; rc=$?  # (no "Hangup" from dash or BusyBox when a signal to the group ended curl)
  child= cfg= escaped= request_auth= ; unset request_body
  status= connect_status= size=
  read -r status connect_status size <"$tmp/status"
  # curl could not write (23): the file size limit stopped it, and its own count may lag behind the file's
  if [ "$rc" = 23 ]; then size=$(wc -c <"$tmp/body" 2>/dev/null); size=${size##*[!0-9]}; fi
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

