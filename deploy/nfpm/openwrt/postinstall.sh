#!/bin/sh
# op25b-agent's ipk (OpenWrt, procd), after install or upgrade: a user of
# its own, made with OpenWrt's helpers as its packages make theirs, that
# /etc/init.d/op25b-agent runs the agent as. An agent that is enabled (an
# upgrade) restarts on the new binary; a new install is not started:
# /etc/op25b/agent.env needs the collector and a token first.
. "${IPKG_INSTROOT}/lib/functions.sh"
gid=$(group_add_next op25b-agent)
user_exists op25b-agent || user_add op25b-agent "" "$gid" op25b-agent /etc/op25b-agent /bin/false
if [ -z "${IPKG_INSTROOT}" ] && /etc/init.d/op25b-agent enabled; then
	/etc/init.d/op25b-agent restart
fi
exit 0
