package e2e_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/op25b/observatory/collector/store/storetest"
	"github.com/op25b/observatory/internal/testenv"
	op25bv1 "github.com/op25b/observatory/proto/op25b/v1"
	"github.com/op25b/observatory/refmta/refmtatest"
	"github.com/op25b/observatory/refmta/smtpd"
)

// buildCommands builds the named commands of the module into a temporary
// directory and returns it.
func buildCommands(t *testing.T, pkgs ...string) string {
	t.Helper()
	testenv.Integration(t, "the programs built with go build and run as processes")
	bin := t.TempDir()
	args := []string{"build", "-o", bin + "/"}
	for _, p := range pkgs {
		args = append(args, "github.com/op25b/observatory/"+p)
	}
	if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

var shareLine = regexp.MustCompile(`Share this result: (http://\S+/result/([0-9a-f-]{36}))`)

// TestCheckSubmit is issue 11's "check --submit round against the
// collector whose result shows in op25b asns and on the web page", with the
// real programs: a reference MTA on loopback, `op25b-collector serve` on a
// real PostgreSQL with an ASN table that puts loopback in AS64500, the
// agent's `check --submit`, then the researcher CLI and the web page. A
// replay of the round is refused and stores nothing.
func TestCheckSubmit(t *testing.T) {
	bin := buildCommands(t, "collector/cmd/op25b-collector", "agent/cmd/op25b-agent", "collector/cmd/op25b")
	dir := t.TempDir()
	mta := refmtatest.Start(t, "127.0.0.1", nil)
	ports := mta.SMTPPorts()
	doc, err := protojson.Marshal(&op25bv1.ReferenceMTA{Id: "refmta-e2e", PublicKey: mta.Public(), Addresses: []string{"127.0.0.1"},
		Ports: []uint32{uint32(ports[0]), uint32(ports[1]), uint32(ports[2])}, ImplicitTlsPorts: []uint32{uint32(ports[2])},
		ControlPort: uint32(mta.Ports[smtpd.Control]), Hostname: "refmta.test"})
	if err != nil {
		t.Fatal(err)
	}
	identity, asnFile := filepath.Join(dir, "refmta.json"), filepath.Join(dir, "loopback.ip2asn")
	if err := os.WriteFile(identity, doc, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(asnFile, []byte("127.0.0.0\t127.255.255.255\t64500\tZZ\tE2E-LOOPBACK\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	web := freeAddr(t)
	base := "http://" + web
	startCollector(t, filepath.Join(bin, "op25b-collector"), freeAddr(t), "--data-dir", filepath.Join(dir, "collector"),
		"--database-url", storetest.URL(t), "--http-listen", web, "--refmta", identity, "--asn", asnFile,
		"--refresh-every", "1s", "--windows-every", "1s", "--class-min-prefixes", "1", "--log-level", "warn")

	check := exec.Command(filepath.Join(bin, "op25b-agent"), "check", "--submit", base, "--lang", "en", "--timeout", "5s")
	var stdout, stderr bytes.Buffer
	check.Stdout, check.Stderr = &stdout, &stderr
	if err := check.Run(); err != nil {
		t.Fatalf("check --submit: %v\n%s\n%s", err, stdout.String(), stderr.String())
	}
	t.Logf("$ op25b-agent check --submit %s\n%s", base, stdout.String())
	m := shareLine.FindStringSubmatch(stdout.String())
	if m == nil || !strings.Contains(stdout.String(), "measured from 127.0.0.0/24 AS64500 E2E-LOOPBACK (ZZ)") {
		t.Fatalf("check --submit printed no share link and network:\n%s", stdout.String())
	}
	share, id := m[1], m[2]
	if strings.Contains(stderr.String(), "plain http") {
		t.Errorf("a loopback collector over http got a warning: %s", stderr.String())
	}

	page := httpGet(t, share)
	// The reference MTA listens on free ports, not 25, 587 and 465: the
	// page has nothing to say about mail (the advice has its own tests).
	for _, want := range []string{"The round probed no mail port", "127.0.0.0/24", `href="/asn/AS64500"`, "refmta-e2e"} {
		if !strings.Contains(page, want) {
			t.Errorf("the result page %s lacks %q", share, want)
		}
	}
	if strings.Contains(page, "127.0.0.1") {
		t.Errorf("the public result page shows the full address")
	}
	var sub op25bv1.Submission
	if err := protojson.Unmarshal([]byte(httpGet(t, base+"/api/v1/submissions/"+id)), &sub); err != nil || len(sub.Results) != 3 || !sub.Results[0].OneOff {
		t.Errorf("GET /api/v1/submissions/%s: %v, %v; want 3 one-off results", id, &sub, err)
	}

	var asns []byte
	testenv.WaitFor(t, "AS64500 in op25b asns", 30*time.Second, func() bool {
		asns, _ = exec.Command(filepath.Join(bin, "op25b"), "asns", "--collector", base).CombinedOutput()
		return strings.Contains(string(asns), "64500")
	})
	t.Logf("$ op25b asns --collector %s\n%s", base, asns)
	if !strings.Contains(string(asns), "OPEN") {
		t.Errorf("op25b asns does not show AS64500 OPEN:\n%s", asns)
	}

	// The same round again, as anyone who saw it could send it.
	check = exec.Command(filepath.Join(bin, "op25b-agent"), "check", "--refmta", identity, "--format", "json", "--timeout", "5s")
	report, err := check.Output()
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"report": ` + string(report) + `}`)
	for i, want := range []int{http.StatusCreated, http.StatusConflict} {
		resp, err := http.Post(base+"/api/v1/submissions", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var e struct{ Error struct{ Message string } }
		json.Unmarshal(b, &e)
		if resp.StatusCode != want || want == http.StatusConflict && !strings.Contains(e.Error.Message, "submitted before") {
			t.Errorf("submission %d of one round: %d %s; want %d", i+1, resp.StatusCode, b, want)
		}
	}
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s\n%s", url, resp.Status, b)
	}
	return string(b)
}
