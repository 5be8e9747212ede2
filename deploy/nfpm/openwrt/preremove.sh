#!/bin/sh
# op25b-agent's ipk (OpenWrt, procd), before removal: stop the agent and
# take it out of boot (opkg sets PKG_UPGRADE=1 on an upgrade, which keeps
# it enabled). The user and the state directory stay.
[ -z "${IPKG_INSTROOT}" ] || exit 0
/etc/init.d/op25b-agent stop
[ "${PKG_UPGRADE}" = 1 ] || /etc/init.d/op25b-agent disable
exit 0
