package main

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/op25b/observatory/agent/probe"
	"github.com/op25b/observatory/agent/report"
	"github.com/op25b/observatory/internal/advice"
	"github.com/op25b/observatory/internal/proof"
	"github.com/op25b/observatory/internal/verdict"
	op25bv1 "github.com/op25b/observatory/proto/op25b/v1"
	"github.com/op25b/observatory/refmta/refmtatest"
	"github.com/op25b/observatory/refmta/smtpd"
)

func runCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// refmtaArgs points check at a real reference MTA on loopback; its SMTPS
// port is left out, since only 465 is spoken with implicit TLS.
func refmtaArgs(t *testing.T) []string {
	s := refmtatest.Start(t, "127.0.0.1", nil)
	return []string{"--refmta", proof.EncodeKey(s.Public()) + "@127.0.0.1",
		"--ports", fmt.Sprintf("%d,%d", s.Ports[smtpd.SMTP], s.Ports[smtpd.Submission]),
		"--control-port", fmt.Sprint(s.Ports[smtpd.Control]), "--timeout", "5s"}
}

func TestCheckTable(t *testing.T) {
	code, out, errOut := runCmd(t, append([]string{"check"}, refmtaArgs(t)...)...)
	if code != exitOK {
		t.Fatalf("check exited %d: %s", code, errOut)
	}
	if !strings.HasPrefix(out, "REFMTA") || strings.Count(out, " OPEN ") != 2 || !strings.Contains(out, "saw you as 127.0.0.1") {
		t.Errorf("check output:\n%s\nwant a table with two OPEN rows and the control line", out)
	}
	if errOut != "" {
		t.Errorf("check wrote to stderr (no terminal: no progress): %q", errOut)
	}
}

func TestCheckJSON(t *testing.T) {
	code, out, errOut := runCmd(t, append([]string{"check", "--format", "json"}, refmtaArgs(t)...)...)
	if code != exitOK {
		t.Fatalf("check exited %d: %s", code, errOut)
	}
	var rep op25bv1.ProbeReport
	if err := protojson.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("output is not a ProbeReport: %v\n%s", err, out)
	}
	if len(rep.Results) != 2 || rep.RoundId == "" || rep.AgentVersion != version {
		t.Errorf("report = %v; want 2 results, a round id, version %q", &rep, version)
	}
	for _, r := range rep.Results {
		if r.Verdict != op25bv1.Verdict_VERDICT_OPEN || r.RoundId != rep.RoundId {
			t.Errorf("result = %v; want OPEN in round %s", r, rep.RoundId)
		}
	}
}

func TestCheckEnvironment(t *testing.T) {
	args := refmtaArgs(t)
	t.Setenv("OP25B_FORMAT", "json")
	t.Setenv("OP25B_REFMTA", args[1])
	code, out, errOut := runCmd(t, append([]string{"check"}, args[2:]...)...)
	if code != exitOK || !strings.HasPrefix(out, "{") {
		t.Errorf("check with OP25B_FORMAT=json and OP25B_REFMTA exited %d: %s\n%s", code, errOut, out)
	}
}

func TestExitStatus(t *testing.T) {
	key := "MCowBQYDK2VwAyEA" // not a key: too short
	for _, tc := range []struct {
		args    []string
		code    int
		wantErr string
	}{
		{nil, exitUsage, "usage:"},
		{[]string{"frobnicate"}, exitUsage, `unknown command "frobnicate"`},
		{[]string{"check"}, exitUsage, "--refmta or --submit is required"},
		{[]string{"check", "--submit", "observatory.example"}, exitUsage, "want the collector's web address, such as https://observatory.example"},
		{[]string{"check", "--submit", "ftp://observatory.example"}, exitUsage, "want the collector's web address"},
		{[]string{"check", "--submit", "http://127.0.0.1:1"}, exitFailed, "fetching the reference MTAs from http://127.0.0.1:1"},
		{[]string{"check", "--refmta", "x@192.0.2.1", "--family", "5"}, exitUsage, `--family "5"`},
		{[]string{"check", "--refmta", "x@192.0.2.1", "--format", "xml"}, exitUsage, `--format "xml"`},
		{[]string{"check", "--refmta", "x@192.0.2.1", "--lang", "fr"}, exitUsage, `--lang: language "fr": want en or ja`},
		{[]string{"check", "--refmta", "x@192.0.2.1", "--ports", "25,smtp"}, exitUsage, `--ports: "smtp" is not a port`},
		{[]string{"check", "--refmta", "x@192.0.2.1", "--timeout", "soon"}, exitUsage, "invalid value"},
		{[]string{"check", "--refmta", "x@192.0.2.1", "--control-port", "70000"}, exitUsage, "out of range"},
		{[]string{"check", "--refmta", "x@192.0.2.1", "--timeout", "20s", "--max-timeout", "10s"}, exitUsage, "--max-timeout 10s is less than --timeout 20s"},
		{[]string{"check", "--refmta", "x@192.0.2.1", "--attempts", "0"}, exitUsage, "--attempts 0: want 1 to 10"},
		{[]string{"check", "--refmta", "x@192.0.2.1", "extra"}, exitUsage, `unexpected argument "extra"`},
		{[]string{"run", "--collector", "192.0.2.1:8443", "--spool-max-bytes", "0"}, exitUsage, "--spool-max-bytes 0: want a positive number"},
		{[]string{"run", "--collector", ","}, exitUsage, "--collector is required"},
		{[]string{"run", "--collector", "192.0.2.1:8443,https://192.0.2.2"}, exitFailed, `https://192.0.2.2\": want host:port`}, // in a log line's quotes
		{[]string{"check", "--refmta", key + "@192.0.2.1"}, exitFailed, "not a base64 Ed25519 public key"},
		{[]string{"check", "--refmta", "/nonexistent/identity.json"}, exitFailed, "no such file"},
		{[]string{"check", "--refmta", "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=@192.0.2.1", "--family", "6"}, exitFailed, "no reference MTA has an address of family IPv6"},
	} {
		code, _, errOut := runCmd(t, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.wantErr) {
			t.Errorf("op25b-agent %q = %d, stderr %q; want %d and %q", tc.args, code, errOut, tc.code, tc.wantErr)
		}
		if tc.code == exitFailed && strings.Count(strings.TrimSpace(errOut), "\n") > 0 {
			t.Errorf("op25b-agent %q stderr = %q; want one line", tc.args, errOut)
		}
	}
}

func TestVersion(t *testing.T) {
	if code, out, _ := runCmd(t, "version"); code != exitOK || out != "op25b-agent dev\n" {
		t.Errorf("op25b-agent version = %d, %q; want 0, %q", code, out, "op25b-agent dev\n")
	}
}

func TestInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out, errOut bytes.Buffer
	code := run(ctx, append([]string{"check"}, refmtaArgs(t)...), &out, &errOut)
	if code != exitFailed || !strings.Contains(errOut.String(), "interrupted") || out.Len() != 0 {
		t.Errorf("check after SIGINT = %d, stdout %q, stderr %q; want %d, no report", code, out.String(), errOut.String(), exitFailed)
	}
}

// TestAdviceAfterTheTable: the table is followed by the advice in the
// language asked for; JSON stays protojson alone.
func TestAdviceAfterTheTable(t *testing.T) {
	round := report.Round{ID: "0190e0a4-7c2e-7000-8000-000000000001", AgentVersion: "test", Started: time.Now(), Finished: time.Now(),
		Results: []probe.Result{{Port: 25, Verdict: verdict.BlockedTimeout, Failure: probe.FailureTimeout}, {Port: 587, Verdict: verdict.Open}}}
	for _, lang := range advice.Languages {
		var b bytes.Buffer
		if err := writeRound(&b, round, "table", lang); err != nil {
			t.Fatal(err)
		}
		head, _ := advice.Text(advice.OP25B, lang)
		if out := b.String(); !strings.HasPrefix(out, "REFMTA") || !strings.Contains(out, head) {
			t.Errorf("table in %s:\n%s\nwant the table, then %q", lang, out, head)
		}
	}
	var b bytes.Buffer
	if err := writeRound(&b, round, "json", "en"); err != nil {
		t.Fatal(err)
	}
	var rep op25bv1.ProbeReport
	if err := protojson.Unmarshal(b.Bytes(), &rep); err != nil || len(rep.GetResults()) != 2 {
		t.Errorf("json: %v, %d results; want protojson alone with 2 results", err, len(rep.GetResults()))
	}
}

// TestLocaleEnv: on a system that names its language (Windows), the
// advice follows it when no locale variable is set, and a variable still
// wins.
func TestLocaleEnv(t *testing.T) {
	japanese := func() string { return "ja-JP" }
	for _, c := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{}, "ja"},
		{map[string]string{"LANG": "en_US.UTF-8"}, "en"},
		{map[string]string{"LC_ALL": "C"}, "en"},
	} {
		got, err := advice.Lang("", localeEnv(func(k string) string { return c.env[k] }, japanese))
		if err != nil || got != c.want {
			t.Errorf("environment %v, display language ja-JP: %q, %v; want %q", c.env, got, err, c.want)
		}
	}
	if got, _ := advice.Lang("", localeEnv(func(string) string { return "" }, systemLanguage)); runtime.GOOS != "windows" && got != "en" {
		t.Errorf("no locale variable off Windows: %q; want en", got)
	}
}
