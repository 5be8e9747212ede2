#!/bin/sh
# op25b-agent's deb and rpm, after install or upgrade. systemd makes the
# agent's user and state directory itself (DynamicUser, StateDirectory), so
# there is only the unit to load, and an agent already running to restart
# on the new binary. A new install is not enabled: /etc/op25b/agent.env
# needs the collector and a token first (docs/volunteer.md).
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload
	systemctl try-restart op25b-agent.service
fi
exit 0
