#!/bin/sh
# op25b-agent's deb and rpm, before removal: stop the agent and take it out
# of boot. dpkg says "remove" and rpm 0 (no version left) then; on an
# upgrade the agent keeps running and postinstall restarts it. The state
# directory (key, credential, spool) stays: see docs/volunteer.md, "Stop".
case $1 in
remove | 0)
	if [ -d /run/systemd/system ]; then
		systemctl disable --now op25b-agent.service
	fi
	;;
esac
exit 0
