#!/bin/sh
# op25b-agent's apk (Alpine, OpenRC), after install: the system user that
# /etc/init.d/op25b-agent runs the agent as (it makes the state directory,
# /var/lib/op25b-agent, on start). Not started nor added to a runlevel:
# /etc/op25b/agent.env needs the collector and a token first.
addgroup -S op25b-agent 2>/dev/null
adduser -S -D -H -h /var/lib/op25b-agent -s /sbin/nologin -G op25b-agent -g op25b-agent op25b-agent 2>/dev/null
exit 0
