#!/bin/sh
# op25b-agent's deb and rpm, after removal or upgrade: forget the old unit.
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload
fi
exit 0
