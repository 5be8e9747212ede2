//go:build !windows

package main

// runAsService: only Windows has a service control manager to answer;
// elsewhere systemd, launchd or rc.d run the program as it is.
func runAsService([]string) (int, bool) { return 0, false }
