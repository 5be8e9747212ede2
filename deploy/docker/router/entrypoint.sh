#!/bin/sh
# op25b-router: load the access network's nftables rules into this network
# namespace, show them, then wait (as nobody, without capabilities) until
# stopped. With arguments, run them instead of waiting (deploy/deploytest).
#
# ROUTER_RULES names the rules file (default /etc/op25b-router/access.nft).
# The rules add one table, inet op25b_access, and leave every other table
# alone: Docker's own rules for its embedded DNS (127.0.0.11) live in this
# namespace too, so the ruleset must never be flushed.
set -eu
rules=${ROUTER_RULES:-/etc/op25b-router/access.nft}
nft -f "$rules"
echo "op25b-router: loaded $rules"
nft list table inet op25b_access
ip -brief address show
if [ $# -gt 0 ]; then
	exec "$@"
fi
exec setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all --bounding-set=-all \
	sh -c 'trap "exit 0" TERM INT; while :; do sleep 86400 & wait $!; done'
