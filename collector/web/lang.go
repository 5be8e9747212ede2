package web

import (
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// langCookie remembers a language chosen with ?lang=.
const langCookie = "lang"

const defaultLang = "en"

// chooseLang picks the page's language: ?lang= (remembered in a cookie),
// else the cookie, else the first language of Accept-Language we have,
// else English. sticky reports an explicit choice, which links then carry
// so that it survives without cookies.
func chooseLang(w http.ResponseWriter, r *http.Request) (lang string, sticky bool) {
	if q := r.URL.Query().Get("lang"); q != "" {
		if l, ok := supported(q); ok {
			http.SetCookie(w, &http.Cookie{
				Name: langCookie, Value: l, Path: "/", MaxAge: 365 * 24 * 3600,
				HttpOnly: true, SameSite: http.SameSiteLaxMode,
			})
			return l, true
		}
	}
	if c, err := r.Cookie(langCookie); err == nil {
		if l, ok := supported(c.Value); ok {
			return l, true
		}
	}
	return acceptLanguage(r.Header.Get("Accept-Language")), false
}

// supported maps a language tag to one we have: "ja-JP" is "ja".
func supported(tag string) (string, bool) {
	primary, _, _ := strings.Cut(strings.ToLower(strings.TrimSpace(tag)), "-")
	if _, ok := messages[primary]; ok {
		return primary, true
	}
	return "", false
}

// acceptLanguage returns the language the visitor prefers most among ours,
// by quality value, ties in the order given (RFC 9110, section 12.5.4).
func acceptLanguage(header string) string {
	type choice struct {
		lang string
		q    float64
	}
	var choices []choice
	for part := range strings.SplitSeq(header, ",") {
		tag, params, _ := strings.Cut(part, ";")
		q := 1.0
		if v, ok := strings.CutPrefix(strings.TrimSpace(params), "q="); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				continue
			}
			q = f
		}
		if l, ok := supported(tag); ok && q > 0 {
			choices = append(choices, choice{l, q})
		}
	}
	sort.SliceStable(choices, func(i, j int) bool { return choices[i].q > choices[j].q })
	if len(choices) == 0 {
		return defaultLang
	}
	return choices[0].lang
}

// translator returns the message lookup of lang. A key missing from the
// catalogue shows as [[key]], which the tests look for.
func translator(lang string) func(key string) string {
	m := messages[lang]
	return func(key string) string {
		if s, ok := m[key]; ok {
			return s
		}
		return "[[" + key + "]]"
	}
}

// translatorf formats a message whose catalogue entry holds fmt verbs with
// explicit argument indexes (%[1]s), so that each language can order the
// arguments as its grammar wants.
func translatorf(lang string) func(key string, args ...any) string {
	t := translator(lang)
	return func(key string, args ...any) string { return fmt.Sprintf(t(key), args...) }
}

// buildURL returns path with the query kv (pairs of name and value); empty
// values are left out.
func buildURL(path string, kv ...string) string {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			v.Set(kv[i], kv[i+1])
		}
	}
	if len(v) == 0 {
		return path
	}
	return path + "?" + v.Encode()
}

// withQuery returns u's path and query with name set to value.
func withQuery(u *url.URL, name, value string) string {
	q := u.Query()
	q.Set(name, value)
	return u.EscapedPath() + "?" + q.Encode()
}
