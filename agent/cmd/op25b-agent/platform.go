package main

import (
	"os"
	"path/filepath"
	"runtime"
)

// defaultStateDir is where `run` keeps its key, credential and spool
// unless --state-dir says otherwise: the place each system has for a
// service's data.
func defaultStateDir() string {
	switch runtime.GOOS {
	case "windows":
		base := os.Getenv("ProgramData")
		if base == "" {
			base = `C:\ProgramData`
		}
		return filepath.Join(base, "op25b-agent")
	case "darwin":
		return "/Library/Application Support/op25b-agent"
	case "freebsd":
		return "/var/db/op25b-agent"
	}
	return "/var/lib/op25b-agent"
}

// localeEnv is getenv, but for an unset LANG the system's language
// (systemLanguage), so that the advice follows a Windows user's display
// language as it follows LANG elsewhere.
func localeEnv(getenv func(string) string, system func() string) func(string) string {
	return func(k string) string {
		if v := getenv(k); v != "" || k != "LANG" {
			return v
		}
		return system()
	}
}
