//go:build !windows

package main

// systemLanguage is empty where the locale variables (LC_ALL, LC_MESSAGES,
// LANG) are the system's own word: Unix terminals, macOS's included, set
// them.
func systemLanguage() string { return "" }
