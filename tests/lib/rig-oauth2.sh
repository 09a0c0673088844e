# tests/lib/rig-oauth2.sh - an HTTPS OAuth2 token endpoint for the tests
# (tools/tokenserver.py), with a test CA of its own
#
# Sourced after tests/lib/rig.sh (and rig_init) by the tests that need it.
# Everything lives in $RIG/NAME; the server listens on 127.0.0.1 on a free
# port with a certificate for 127.0.0.1 and localhost signed by a CA made
# for it (openssl CLI, EC P-256 keys), and is stopped at exit.
#
#   rig_start_tokenserver NAME [--source SRC] [--ttl SECONDS]
#           [--ms-tenant T --ms-client-id C --ms-client-secret S]
#           [--google-client-email E [--google-allowed-user U ...]]
#           [other tools/tokenserver.py options]
#                            starts the server and waits until it answers
#                            over TLS, verified with its CA.  --source: the
#                            HS256 key of the rig --oauth2 source SRC
#                            ($RIG/SRC/oauth2.key), so that SRC takes the
#                            tokens (a user token as rig_start_source
#                            --oauth2 takes it, the client-credentials
#                            grant's app token with --oauth2-app);
#                            without, a key of its own.
#                            --ms-client-secret: the rig writes it to
#                            $RIG/NAME/ms-client-secret (0600, the file
#                            given to the server: never on a command
#                            line) and registers it (rig_secret).
#                            --google-client-email: the rig makes the
#                            service account's RSA key (2048 bits), gives
#                            the server its public half and writes the
#                            Google-format key file (rig_tokenserver_
#                            google_key); no --google-allowed-user: any
#                            user may be impersonated.
#   rig_stop_tokenserver NAME
#   rig_tokenserver_url NAME     https://127.0.0.1:PORT
#   rig_tokenserver_ms_url NAME [TENANT]
#                            .../TENANT/oauth2/v2.0/token (default the
#                            first --ms-tenant)
#   rig_tokenserver_google_url NAME   .../token (the key file's token_uri)
#   rig_tokenserver_ca NAME      the CA certificate (PEM) to verify it with
#   rig_tokenserver_log NAME     its request log (one line a request, see
#                            tools/tokenserver.py; no secrets, assertions
#                            or tokens)
#   rig_tokenserver_requests NAME GRANT [RESULT]
#                            how many GRANT (client_credentials,
#                            jwt_bearer, other) requests it logged so far,
#                            only those with RESULT (ok, or an error code
#                            such as invalid_client) when given
#   rig_tokenserver_google_key NAME   the service account's JSON key file
#                            ({"type":"service_account","client_email",
#                            "private_key" (PKCS#8 PEM),"private_key_id",
#                            "token_uri":"https://127.0.0.1:PORT/token",
#                            ...}), mode 0600, owned by the mail user
#                            (doveadm migrate reads files as that user)
#   rig_google_assertion NAME SUB [--key PEM] [--iss E] [--aud URL]
#           [--scope S] [--iat T] [--exp T] [--ttl N] [--no-sub]
#                            a service-account assertion (RS256 JWT, signed
#                            with the openssl CLI) asking NAME's token URL
#                            for SUB's mail: iss = the account's
#                            client_email, scope https://mail.google.com/,
#                            iat now, exp now + 3600 (--ttl), kid the
#                            private_key_id; the options change a claim
#                            (--key: sign with another PEM private key);
#                            on stdout: it is a credential (keep it out of
#                            command lines and files)
#
# Layout of a server NAME: $RIG/NAME/{ca.pem,ca.key,server.pem,server.key,
# server.log,server.pid,start.err,ms-client-secret,google-sa.key.pem,
# google-sa.pub.pem,google-sa.json}.  Variables: RIG_PORTS[NAME] (so
# rig_port NAME works too) and RIG_KIND[NAME]=tokenserver.

declare -A RIG_TOKENSERVER_TENANT=()
RIG_TOKENSERVER_HOOKED=0

rig_tokenserver_url() { echo "https://127.0.0.1:$(rig_port "$1")"; }
rig_tokenserver_ca() { echo "$RIG/$1/ca.pem"; }
rig_tokenserver_log() { echo "$RIG/$1/server.log"; }
rig_tokenserver_google_key() { echo "$RIG/$1/google-sa.json"; }
rig_tokenserver_google_url() { echo "$(rig_tokenserver_url "$1")/token"; }
rig_tokenserver_ms_url() {
	local tenant=${2:-${RIG_TOKENSERVER_TENANT[$1]:-}}
	[ -n "$tenant" ] || rig_die "rig_tokenserver_ms_url: $1 has no --ms-tenant"
	echo "$(rig_tokenserver_url "$1")/$tenant/oauth2/v2.0/token"
}

rig_tokenserver_requests() {
	local name=$1 grant=$2 result=${3:-}
	if [ -n "$result" ]; then
		grep -c -- " grant=$grant .* result=$result " "$(rig_tokenserver_log "$name")"
	else
		grep -c -- " grant=$grant " "$(rig_tokenserver_log "$name")"
	fi
}

# rig__tokenserver_google_sa DIR EMAIL: the service account's RSA key
# pair (the JSON key file is written once the port is known)
rig__tokenserver_google_sa() {
	local dir=$1
	(
		set -e
		umask 077
		openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 \
			-out "$dir/google-sa.key.pem"
		openssl pkey -in "$dir/google-sa.key.pem" -pubout -out "$dir/google-sa.pub.pem"
		chmod 644 "$dir/google-sa.pub.pem"
	) >"$dir/openssl.err" 2>&1 || {
		cat "$dir/openssl.err" >&2
		return 1
	}
	rm -f "$dir/openssl.err"
}

# rig__tokenserver_google_json NAME EMAIL: the Google-format key file
rig__tokenserver_google_json() {
	local name=$1 email=$2 dir=$RIG/$1 f
	f=$(rig_tokenserver_google_key "$name")
	(umask 077 && "$RIG_PY" - "$dir/google-sa.key.pem" "$email" \
		"$(rig_tokenserver_google_url "$name")" >"$f.tmp") <<-'EOF' || return 1
	import json, secrets, sys
	key, email, token_uri = sys.argv[1:4]
	project = email.split("@", 1)[1].split(".", 1)[0] if "@" in email else "rig-test"
	client_id = str(secrets.randbelow(10 ** 21 - 10 ** 20) + 10 ** 20)
	print(json.dumps({
	    "type": "service_account",
	    "project_id": project,
	    "private_key_id": secrets.token_hex(20),
	    "private_key": open(key).read(),
	    "client_email": email,
	    "client_id": client_id,
	    "auth_uri": "https://accounts.google.com/o/oauth2/auth",
	    "token_uri": token_uri,
	    "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
	    "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/"
	                            + email.replace("@", "%40"),
	    "universe_domain": "googleapis.com",
	}, indent=2))
	EOF
	chown "${RIG_MAIL_USER:-nobody}" "$f.tmp" && chmod 600 "$f.tmp" && mv "$f.tmp" "$f"
}

# the server's pid, checked against its command line
rig__tokenserver_pid() {
	local f=$RIG/$1/server.pid pid
	[ -s "$f" ] || return 1
	pid=$(head -n1 "$f")
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF -- "--log $RIG/$1/server.log" || return 1
	echo "$pid"
}

rig_stop_tokenserver() {
	local name=$1 pid i
	[ "${RIG_KIND[$name]:-}" = tokenserver ] || rig_die "no token server $name"
	pid=$(rig__tokenserver_pid "$name") || return 0
	kill -TERM "$pid" 2>/dev/null
	for ((i = 0; i < 50; i++)); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null
	return 0
}

rig__tokenserver_stop_all() {
	local n
	for n in "${!RIG_KIND[@]}"; do
		[ "${RIG_KIND[$n]}" = tokenserver ] && rig_stop_tokenserver "$n"
	done
	return 0
}

# wait until the server at PORT completes a TLS handshake verified with CA
# and answers GET /stats
rig__tokenserver_wait() {
	"$RIG_PY" - "$1" "$2" <<-'EOF'
	import http.client, ssl, sys, time
	port, ca = int(sys.argv[1]), sys.argv[2]
	ctx = ssl.create_default_context(cafile=ca)
	deadline = time.time() + 15
	while time.time() < deadline:
	    try:
	        c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=3)
	        c.request("GET", "/stats")
	        if c.getresponse().status == 200:
	            sys.exit(0)
	    except (OSError, http.client.HTTPException):
	        pass
	    time.sleep(0.05)
	sys.exit(1)
	EOF
}

rig_start_tokenserver() {
	local name=$1
	shift
	[ -n "$RIG" ] || rig_die "call rig_init first"
	[[ $name =~ ^[A-Za-z0-9_-]+$ ]] || rig_die "bad instance name $name"
	[ -z "${RIG_KIND[$name]:-}" ] || rig_die "instance $name exists"
	local dir=$RIG/$name key='' secret='' gmail='' tenant='' port rc
	local -a args=()
	mkdir -p "$dir"
	chmod 755 "$dir"
	while [ $# -gt 0 ]; do
		case $1 in
		--source)
			key=$RIG/$2/oauth2.key
			[ -s "$key" ] || rig_die "rig_start_tokenserver: $2 is no --oauth2 source"
			shift 2 ;;
		--ms-client-secret) secret=$2; shift 2 ;;
		--ms-tenant)
			[ -n "$tenant" ] || tenant=$2
			args+=("$1" "$2")
			shift 2 ;;
		--google-client-email) gmail=$2; args+=("$1" "$2"); shift 2 ;;
		*) args+=("$1"); shift ;;
		esac
	done
	if [ -z "$key" ]; then
		key=$dir/hs256.key
		(umask 077 && head -c 32 /dev/urandom >"$key")
	fi
	if [ -n "$secret" ]; then
		rig_secret "$secret" "rig_start_tokenserver $name client secret"
		rig_secret_input "$dir/ms-client-secret"
		(umask 077 && printf '%s' "$secret" >"$dir/ms-client-secret")
		args+=(--ms-client-secret-file "$dir/ms-client-secret")
	fi
	[ -n "$tenant" ] && RIG_TOKENSERVER_TENANT[$name]=$tenant
	rig_test_certs "$dir" || rig_die "rig_start_tokenserver: openssl failed"
	if [ -n "$gmail" ]; then
		rig__tokenserver_google_sa "$dir" || rig_die "rig_start_tokenserver: openssl failed"
		rig_secret_input "$dir/google-sa.key.pem" "$dir/google-sa.json"
		args+=(--google-public-key "$dir/google-sa.pub.pem")
	fi
	RIG_KIND[$name]=tokenserver
	if [ "$RIG_TOKENSERVER_HOOKED" = 0 ]; then
		RIG_TOKENSERVER_HOOKED=1
		rig_on_exit rig__tokenserver_stop_all
	fi
	: >"$dir/server.log"
	for _ in 1 2 3; do
		port=$(rig_free_port) || rig_die "no free port"
		rm -f "$dir/server.pid"
		rc=0
		# not through a pipe: the daemon keeps stderr
		"$RIG_PY" "$RIG_TOOLS/tokenserver.py" --port "$port" --cert "$dir/server.pem" \
			--key "$dir/server.key" --hs256-key-file "$key" --log "$dir/server.log" \
			--pidfile "$dir/server.pid" --daemon --exit-when-gone "$dir" "${args[@]}" \
			>"$dir/start.err" 2>&1 </dev/null || rc=$?
		if [ $rc = 0 ]; then
			RIG_PORTS[$name]=$port
			if ! rig__tokenserver_wait "$port" "$dir/ca.pem"; then
				echo "# rig: token server $name does not answer on port $port" >&2
				cat "$dir/start.err" "$dir/server.log" >&2
				rig_stop_tokenserver "$name"
				return 1
			fi
			[ -n "$gmail" ] && { rig__tokenserver_google_json "$name" "$gmail" ||
				rig_die "rig_start_tokenserver: no key file"; }
			return 0
		fi
		grep -q "Address already in use" "$dir/start.err" || break
		echo "# rig: port $port of $name was taken, retrying" >&2
	done
	echo "# rig: could not start token server $name:" >&2
	cat "$dir/start.err" >&2
	return 1
}

# base64url of stdin, no padding
rig__b64url() {
	openssl base64 -A | tr '+/' '-_' | tr -d '='
}

rig_google_assertion() {
	local name=$1 sub=$2
	shift 2
	local dir=$RIG/$name key iss aud scope iat exp ttl=3600 kid nosub=0 header claims input
	key=$dir/google-sa.key.pem
	[ -s "$(rig_tokenserver_google_key "$name")" ] || rig_die "$name has no service account"
	iss=$("$RIG_PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["client_email"])' \
		"$(rig_tokenserver_google_key "$name")")
	kid=$("$RIG_PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["private_key_id"])' \
		"$(rig_tokenserver_google_key "$name")")
	aud=$(rig_tokenserver_google_url "$name")
	scope=https://mail.google.com/
	iat=$(date +%s)
	exp=
	while [ $# -gt 0 ]; do
		case $1 in
		--key) key=$2; shift 2 ;;
		--iss) iss=$2; shift 2 ;;
		--aud) aud=$2; shift 2 ;;
		--scope) scope=$2; shift 2 ;;
		--iat) iat=$2; shift 2 ;;
		--exp) exp=$2; shift 2 ;;
		--ttl) ttl=$2; shift 2 ;;
		--no-sub) nosub=1; shift ;;
		*) rig_die "rig_google_assertion: unknown option $1" ;;
		esac
	done
	[ -n "$exp" ] || exp=$((iat + ttl))
	header=$(printf '{"alg":"RS256","typ":"JWT","kid":"%s"}' "$kid" | rig__b64url)
	if [ "$nosub" = 1 ]; then
		claims=$(printf '{"iss":"%s","scope":"%s","aud":"%s","iat":%d,"exp":%d}' \
			"$iss" "$scope" "$aud" "$iat" "$exp" | rig__b64url)
	else
		claims=$(printf '{"iss":"%s","sub":"%s","scope":"%s","aud":"%s","iat":%d,"exp":%d}' \
			"$iss" "$sub" "$scope" "$aud" "$iat" "$exp" | rig__b64url)
	fi
	input=$header.$claims
	printf '%s.%s\n' "$input" \
		"$(printf '%s' "$input" | openssl dgst -sha256 -sign "$key" -binary | rig__b64url)"
}
