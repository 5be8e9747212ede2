#!/bin/sh
# op25b-agent's apk (Alpine, OpenRC), after an upgrade: a running agent
# restarts on the new binary.
rc-service --ifstarted op25b-agent restart
exit 0
