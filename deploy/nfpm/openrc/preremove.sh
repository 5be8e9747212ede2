#!/bin/sh
# op25b-agent's apk (Alpine, OpenRC), before removal: stop the agent and
# take it out of the default runlevel. The user and the state directory
# (key, credential, spool) stay.
rc-service --ifstarted op25b-agent stop
rc-update del op25b-agent default 2>/dev/null
exit 0
