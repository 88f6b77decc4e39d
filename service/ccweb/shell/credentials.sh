# ccweb-helper.sh, part 3 of 4: the token (CCWEB_TOKEN, CCWEB_TOKEN_FILE, a CI platform's) and `get`.
# Not a script of its own: the service serves the parts joined in order, one file (ccweb.shell_dist.PARTS).

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

