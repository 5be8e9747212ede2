#!/bin/sh
# op25b-bootstrap: the one-shot set-up steps of docker-compose.yml, run by
# the bootstrap image (busybox sh) as user 65532. Idempotent: `docker compose
# up` runs it every time.
#
#   op25b-bootstrap init        before the collector: reference MTA keys and
#                               identity documents, enrollment tokens
#   op25b-bootstrap publish-ca  after the collector: copy its CA certificate
#                               where agents, reference MTAs and Grafana read it
#
# Paths (volumes in docker-compose.yml):
#   /etc/op25b                 public: refmta-N.json (the collector's --refmta), ca.pem
#   /run/op25b/agent, /refmta  secrets: OP25B_ENROLL, the programs' --enroll-file
#   /var/lib/op25b-refmta/N    each reference MTA's state directory (its key)
#   /var/lib/op25b-collector   the collector's data directory (publish-ca, read-only)
#
# Environment: DATABASE_URL (init), BOOTSTRAP_REFMTAS ("NAME=ADDRESS ..."),
# BOOTSTRAP_AGENT_USES (how many agents may enroll, default 20), and
# BOOTSTRAP_ROOT, a directory the paths above are taken under (for
# deploy/deploytest, which runs this script outside a container).
set -eu
# Keys and tokens are for user 65532 alone; what others read is made
# readable explicitly (ca.pem for Grafana's user).
umask 077

root=${BOOTSTRAP_ROOT:-}
public=$root/etc/op25b
secrets=$root/run/op25b
refmtas=$root/var/lib/op25b-refmta

# token KIND USES LABEL: make sure $secrets/KIND/OP25B_ENROLL holds a token
# the collector still accepts, creating one when not.
token() {
	dir=$secrets/$1
	mkdir -p "$dir"
	if [ -s "$dir/OP25B_ENROLL" ] && [ -s "$dir/.id" ] &&
		op25b-collector token list | grep -q "^$(cat "$dir/.id") .*active\$"; then
		echo "op25b-bootstrap: $1 token $(cat "$dir/.id") is still active"
		return
	fi
	op25b-collector token create --kind "$1" --uses "$2" --expires 8760h --label "$3" \
		>"$dir/OP25B_ENROLL.tmp" 2>"$dir/.created"
	sed -n 's/^created \([^ ]*\) .*/\1/p' "$dir/.created" >"$dir/.id"
	mv "$dir/OP25B_ENROLL.tmp" "$dir/OP25B_ENROLL"
	echo "op25b-bootstrap: created $1 token $(cat "$dir/.id") for $2 enrollment(s)"
}

case "${1:-init}" in
init)
	: "${DATABASE_URL:?op25b-bootstrap: DATABASE_URL is not set}"
	for spec in ${BOOTSTRAP_REFMTAS:?op25b-bootstrap: BOOTSTRAP_REFMTAS is not set}; do
		name=${spec%%=*}
		addr=${spec#*=}
		mkdir -p "$refmtas/$name"
		# The key is made on first use and kept; the document is the one the
		# reference MTA itself publishes when it serves with the same flags.
		op25b-refmta identity --state-dir "$refmtas/$name" --hostname "$name" --advertise "$addr" \
			>"$public/$name.json.tmp"
		chmod 0644 "$public/$name.json.tmp"
		mv "$public/$name.json.tmp" "$public/$name.json"
		echo "op25b-bootstrap: identity of $name ($addr) in $public/$name.json"
	done
	set -- $BOOTSTRAP_REFMTAS
	token refmta "$#" "docker compose reference MTAs"
	token agent "${BOOTSTRAP_AGENT_USES:-20}" "docker compose agents"
	;;
publish-ca)
	cp "$root/var/lib/op25b-collector/tls/ca.pem" "$public/ca.pem.tmp"
	chmod 0644 "$public/ca.pem.tmp"
	mv "$public/ca.pem.tmp" "$public/ca.pem"
	echo "op25b-bootstrap: the collector's CA certificate is in $public/ca.pem"
	;;
*)
	echo "usage: op25b-bootstrap init|publish-ca" >&2
	exit 2
	;;
esac
