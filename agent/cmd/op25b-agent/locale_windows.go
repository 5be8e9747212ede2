package main

import "golang.org/x/sys/windows"

// systemLanguage is the user's first preferred display language, such as
// "ja-JP": Windows sets no LANG, and its console shows what the user
// chose in Settings.
func systemLanguage() string {
	langs, err := windows.GetUserPreferredUILanguages(windows.MUI_LANGUAGE_NAME)
	if err != nil || len(langs) == 0 {
		return ""
	}
	return langs[0]
}
