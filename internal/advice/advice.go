// Package advice says in plain words what a round's verdicts mean for a
// volunteer's mail and what to do about it, in English and Japanese. The
// agent's `check` prints it after its table; the texts are the project's,
// shared by every program that explains a result, so they depend on
// nothing but the verdicts.
package advice

import (
	"fmt"
	"io"
	"strings"

	"github.com/op25b/observatory/internal/verdict"
)

// Situation names one thing a round can show. The names are stable keys.
type Situation string

// The situations, in the order they are told.
const (
	// TLSReplaced: a path replaced our certificate or removed STARTTLS.
	TLSReplaced Situation = "tls_replaced"
	// Intercepted25: port 25 reached a server that is not ours.
	Intercepted25 Situation = "intercepted_25"
	// OP25B: port 25 blocked, submission (587 or 465) open.
	OP25B Situation = "op25b"
	// AllBlocked: 25, 587 and 465 all blocked.
	AllBlocked Situation = "all_blocked"
	// Blocked25: port 25 blocked, submission not known.
	Blocked25 Situation = "blocked_25"
	// Open25: port 25 reaches outside servers.
	Open25 Situation = "open_25"
	// Inconclusive: the round could not tell for port 25.
	Inconclusive Situation = "inconclusive"
)

// Result is what advice needs of one probe.
type Result struct {
	Port    uint16
	Verdict verdict.Verdict
}

// port sums up one port's verdicts over reference MTAs and families.
type port struct{ open, blocked, intercepted, tampered bool }

// Situations returns what results show, in the order to tell it; nothing
// when no result is for port 25, 587 or 465.
func Situations(results []Result) []Situation {
	ports := map[uint16]*port{}
	tampered := false
	for _, r := range results {
		p := ports[r.Port]
		if p == nil {
			p = &port{}
			ports[r.Port] = p
		}
		switch {
		case r.Verdict == verdict.Open:
			p.open = true
		case r.Verdict.Blocked():
			p.blocked = true
		case r.Verdict == verdict.Intercepted:
			p.intercepted = true
		case r.Verdict == verdict.Tampered:
			p.tampered, tampered = true, true
		}
	}
	if ports[25] == nil && ports[587] == nil && ports[465] == nil {
		return nil // a test server on other ports: nothing to say about mail
	}
	get := func(n uint16) port {
		if p := ports[n]; p != nil {
			return *p
		}
		return port{}
	}
	smtp, sub, subs := get(25), get(587), get(465)
	blocked := func(p port) bool { return p.blocked && !p.open && !p.intercepted && !p.tampered }
	var out []Situation
	if tampered {
		out = append(out, TLSReplaced)
	}
	switch {
	case smtp.intercepted:
		out = append(out, Intercepted25)
	case blocked(smtp) && (sub.open || subs.open):
		out = append(out, OP25B)
	case blocked(smtp) && blocked(sub) && blocked(subs):
		out = append(out, AllBlocked)
	case blocked(smtp):
		out = append(out, Blocked25)
	case smtp.open:
		out = append(out, Open25)
	case !smtp.tampered:
		out = append(out, Inconclusive)
	}
	return out
}

// Languages are the languages of the texts.
var Languages = []string{"en", "ja"}

// Lang returns the language to use: flag when given ("en" or "ja"), else
// the first of LC_ALL, LC_MESSAGES and LANG that is set (ja_JP.UTF-8 is
// Japanese), else English. getenv is os.Getenv.
func Lang(flag string, getenv func(string) string) (string, error) {
	if flag != "" {
		for _, l := range Languages {
			if flag == l {
				return l, nil
			}
		}
		return "", fmt.Errorf("language %q: want %s", flag, strings.Join(Languages, " or "))
	}
	for _, v := range []string{"LC_ALL", "LC_MESSAGES", "LANG"} {
		if s := getenv(v); s != "" {
			if strings.HasPrefix(s, "ja") {
				return "ja", nil
			}
			return "en", nil
		}
	}
	return "en", nil
}

// text is one situation's advice: a headline and what to do.
type text struct{ head, body string }

var texts = map[string]map[Situation]text{
	"en": {
		TLSReplaced: {"Encryption on this line is not ours: do not send passwords over it.",
			"A device between you and our server replaced its TLS certificate or removed STARTTLS. Anyone on that path can read what a mail program sends, passwords included. Do not send mail or passwords from this line until your provider explains it; use another network, or a VPN you trust."},
		Intercepted25: {"Your provider answers port 25 itself.",
			"Connections to port 25 on outside servers reach a server of your provider (or a device on the way) instead. Mail you send through port 25 goes through it; it may be relayed on or refused. To send mail through your own mail provider, use port 587 or 465 with SMTP AUTH (your mail program's outgoing server settings)."},
		OP25B: {"Port 25 is blocked and submission is open: Outbound Port 25 Blocking (OP25B).",
			"This is what most providers do against spam, and your mail is not affected if it is set up the usual way. Mail to outside servers goes either through your provider's own mail server, or through your mail provider on port 587 (STARTTLS) or 465 (TLS) with SMTP AUTH: in your mail program, set the outgoing server's port to 587 or 465 and turn on authentication. A mail server on this line cannot deliver directly to others."},
		AllBlocked: {"Ports 25, 587 and 465 are all blocked.",
			"You cannot send mail through outside servers from this line with an ordinary mail program, even with SMTP AUTH. Webmail still works. Ask your provider whether it can open port 587 or 465, or which mail server it wants you to use; a business or fixed-address plan often has them open."},
		Blocked25: {"Port 25 is blocked; whether 587 and 465 are open is not known.",
			"Port 25 to outside servers is blocked, as with Outbound Port 25 Blocking. The round could not tell for the submission ports: run the check again. If 587 or 465 is open, your mail program can send through your mail provider with SMTP AUTH."},
		Open25: {"Port 25 is open.",
			"This line can reach outside mail servers on port 25 directly. Nothing to do: mail programs normally send on 587 or 465 anyway. Some receiving servers do not accept mail sent straight from home connections."},
		Inconclusive: {"This round could not tell: try again.",
			"The answers were lost or slow on the way, or our server was busy, so the result is INCONCLUSIVE rather than a guess. Run the check again later, or from a steadier connection (a cable instead of Wi-Fi)."},
	},
	"ja": {
		TLSReplaced: {"この回線の暗号化は当方のものではありません。パスワードを送らないでください。",
			"途中の機器が当方サーバーの TLS 証明書を差し替えたか、STARTTLS を取り除きました。その経路上の誰でも、メールソフトが送る内容(パスワードを含む)を読めます。プロバイダーから説明があるまで、この回線からメールやパスワードを送らないでください。別のネットワークか、信頼できる VPN を使ってください。"},
		Intercepted25: {"ポート 25 にはプロバイダー自身が応答しています。",
			"外部サーバーのポート 25 への接続は、当方サーバーではなくプロバイダーのサーバー(または途中の機器)につながります。ポート 25 で送ったメールはそこを経由し、中継されるか拒否されます。ご自分のメールサービスから送るには、メールソフトの送信サーバー設定でポート 587 または 465 と SMTP 認証(SMTP AUTH)を使ってください。"},
		OP25B: {"ポート 25 は遮断、サブミッションポートは開いています(OP25B: Outbound Port 25 Blocking)。",
			"多くのプロバイダーが迷惑メール対策として行っているもので、通常の設定ならメールに影響はありません。外部へのメールは、プロバイダーのメールサーバーを経由するか、ご利用のメールサービスにポート 587(STARTTLS)または 465(TLS)と SMTP 認証で送ります。メールソフトの送信サーバーのポートを 587 か 465 にし、認証を有効にしてください。この回線のメールサーバーから他のサーバーへ直接配送することはできません。"},
		AllBlocked: {"ポート 25、587、465 がすべて遮断されています。",
			"この回線からは、SMTP 認証を使っても、通常のメールソフトで外部のサーバー経由のメールを送れません。Web メールは使えます。ポート 587 か 465 を開けられるか、どのメールサーバーを使うべきかをプロバイダーに問い合わせてください。法人向けや固定 IP のプランでは開いていることがよくあります。"},
		Blocked25: {"ポート 25 は遮断されています。587 と 465 は判定できませんでした。",
			"外部サーバーへのポート 25 は、OP25B と同様に遮断されています。サブミッションポートは今回判定できなかったので、もう一度チェックしてください。587 か 465 が開いていれば、メールソフトから SMTP 認証でご利用のメールサービス経由で送れます。"},
		Open25: {"ポート 25 は開いています。",
			"この回線から外部のメールサーバーのポート 25 に直接接続できます。特に対応は不要です。メールソフトは通常 587 か 465 で送信します。受信側によっては、家庭用回線から直接送られたメールを受け付けないことがあります。"},
		Inconclusive: {"今回は判定できませんでした。もう一度お試しください。",
			"途中で応答が失われたか遅れた、または当方サーバーが混雑していたため、推測せず INCONCLUSIVE(判定不能)としました。時間をおいて、または安定した接続(Wi-Fi ではなく有線など)から再度チェックしてください。"},
	},
}

// Text returns a situation's headline and body in lang.
func Text(s Situation, lang string) (head, body string) {
	t := texts[lang][s]
	return t.head, t.body
}

// heading is the line above the advice.
var heading = map[string]string{"en": "What this means for your mail:", "ja": "メールへの影響:"}

// Write writes the advice for results in lang, wrapped for a terminal.
func Write(w io.Writer, results []Result, lang string) error {
	situations := Situations(results)
	if len(situations) == 0 {
		return nil
	}
	var b strings.Builder
	b.WriteString("\n" + heading[lang] + "\n")
	for _, s := range situations {
		head, body := Text(s, lang)
		b.WriteString("\n  " + head + "\n")
		for _, line := range wrap(body, 76, lang) {
			b.WriteString("    " + line + "\n")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// wrap breaks text into lines of at most width columns: at spaces in
// English, and anywhere but before closing punctuation in Japanese, whose
// characters take two columns.
func wrap(text string, width int, lang string) []string {
	var lines []string
	if lang != "ja" {
		line := ""
		for _, w := range strings.Fields(text) {
			if line != "" && len(line)+1+len(w) > width {
				lines = append(lines, line)
				line = ""
			}
			if line != "" {
				line += " "
			}
			line += w
		}
		return append(lines, line)
	}
	var line []rune
	cols := 0
	for _, r := range text {
		c := 1
		if r >= 0x1100 {
			c = 2
		}
		if cols+c > width && !strings.ContainsRune("。、)」", r) {
			lines = append(lines, string(line))
			line, cols = nil, 0
		}
		line = append(line, r)
		cols += c
	}
	return append(lines, string(line))
}
