package proof

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

func testKey(t testing.TB) (ed25519.PublicKey, ed25519.PrivateKey) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

func sample() Statement {
	return Statement{
		Nonce:        []byte("0123456789abcdef"),
		Source:       netip.MustParseAddr("2001:db8::1"),
		Port:         25,
		Time:         time.UnixMilli(1795000000123).UTC(),
		Capabilities: []string{"ENHANCEDSTATUSCODES", "8BITMIME", "STARTTLS"},
	}
}

func TestSignVerify(t *testing.T) {
	pub, priv := testKey(t)
	refused := sample()
	refused.Refused = RefusedRate
	for _, st := range []Statement{sample(), refused, {Nonce: make([]byte, 16), Source: netip.MustParseAddr("192.0.2.7"), Port: 443, Time: time.UnixMilli(0).UTC(), Ports: []uint16{25, 587, 465}}} {
		tok := Sign(priv, st)
		got, err := Verify(pub, tok)
		if err != nil {
			t.Fatalf("Verify(Sign(%+v)): %v", st, err)
		}
		if !reflect.DeepEqual(got, st) {
			t.Errorf("Verify(Sign(st)) = %+v; want %+v", got, st)
		}
		if len(tok) > MaxTokenLen || strings.ContainsAny(tok, " \r\n") {
			t.Errorf("token %q is not one short SMTP-safe word", tok)
		}
	}
}

func TestVerifyRejects(t *testing.T) {
	pub, priv := testKey(t)
	other, _ := testKey(t)
	tok := Sign(priv, sample())
	p64, s64, _ := strings.Cut(tok, ".")
	forged := sample()
	forged.Source = netip.MustParseAddr("198.51.100.1")
	fp64, _, _ := strings.Cut(Sign(priv, forged), ".")
	cases := []struct {
		name string
		key  ed25519.PublicKey
		tok  string
		want error
	}{
		{"other key", other, tok, ErrBadSignature},
		{"payload swapped", pub, fp64 + "." + s64, ErrBadSignature},
		{"no signature", pub, p64, ErrMalformed},
		{"short signature", pub, p64 + "." + s64[:20], ErrMalformed},
		{"empty", pub, "", ErrMalformed},
		{"too long", pub, strings.Repeat("A", MaxTokenLen+1), ErrMalformed},
		{"not base64", pub, "!!!." + s64, ErrMalformed},
	}
	for _, c := range cases {
		if _, err := Verify(c.key, c.tok); !errors.Is(err, c.want) {
			t.Errorf("Verify(%s) = %v; want %v", c.name, err, c.want)
		}
	}
}

func TestUnmarshalRejectsNonCanonical(t *testing.T) {
	good := string(sample().Marshal())
	for _, bad := range []string{
		strings.Replace(good, "port=25", "port=025", 1),
		strings.Replace(good, "src=2001:db8::1", "src=2001:0db8::1", 1),
		strings.Replace(good, Version, "op25b-proof-v2", 1),
		good + " extra=1",
		strings.Replace(good, "n=", "nonce=", 1),
		strings.Replace(good, "n=30313233343536373839616263646566", "n=3031", 1),
		strings.Replace(good, "caps=ENHANCEDSTATUSCODES,", "caps=,", 1),
		good + " refused=",
		good + " refused=Busy",
		good + " refused=rate extra=1",
		good + " refused=" + strings.Repeat("x", 33),
		good + " retry=rate",
	} {
		if _, err := unmarshal([]byte(bad)); !errors.Is(err, ErrMalformed) {
			t.Errorf("unmarshal(%q) = %v; want ErrMalformed", bad, err)
		}
	}
	for _, ok := range []string{good, good + " refused=sessions", good + " refused=some_future_reason2"} {
		if _, err := unmarshal([]byte(ok)); err != nil {
			t.Errorf("unmarshal(%q) = %v", ok, err)
		}
	}
}

// TestStatementWithoutRefusalUnchanged pins the payload of a served
// session: agents and collectors of earlier versions verify it.
func TestStatementWithoutRefusalUnchanged(t *testing.T) {
	const want = "op25b-proof-v1 n=30313233343536373839616263646566 src=2001:db8::1 port=25 t=1795000000123 caps=ENHANCEDSTATUSCODES,8BITMIME,STARTTLS ports="
	if got := string(sample().Marshal()); got != want {
		t.Errorf("Marshal() = %q; want %q", got, want)
	}
	st := sample()
	st.Refused = RefusedSessions
	if got := string(st.Marshal()); got != want+" refused=sessions" {
		t.Errorf("Marshal() with a refusal = %q; want %q", got, want+" refused=sessions")
	}
}

func TestCertificateMatches(t *testing.T) {
	pub, priv := testKey(t)
	other, _ := testKey(t)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "x"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		t.Fatal(err)
	}
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	foreign, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &ec.PublicKey, ec)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		der  []byte
		key  ed25519.PublicKey
		want bool
	}{{"own", der, pub, true}, {"other key", der, other, false}, {"ecdsa cert", foreign, pub, false}, {"garbage", []byte("x"), pub, false}} {
		if got := CertificateMatches(c.der, c.key); got != c.want {
			t.Errorf("CertificateMatches(%s) = %v; want %v", c.name, got, c.want)
		}
	}
}

func TestKeyText(t *testing.T) {
	pub, _ := testKey(t)
	got, err := DecodeKey(EncodeKey(pub))
	if err != nil || !got.Equal(pub) {
		t.Errorf("DecodeKey(EncodeKey(k)) = %v, %v", got, err)
	}
	for _, bad := range []string{"", "abc", EncodeKey(pub)[:20]} {
		if _, err := DecodeKey(bad); err == nil {
			t.Errorf("DecodeKey(%q) succeeded", bad)
		}
	}
	if id := KeyID(pub); len(id) != 16 {
		t.Errorf("KeyID = %q; want 16 hex digits", id)
	}
}

// FuzzParse feeds arbitrary tokens to the parser: it must never panic, and
// whatever it accepts must be canonical (one statement, one signed form).
func FuzzParse(f *testing.F) {
	_, priv := testKey(f)
	f.Add(Sign(priv, sample()))
	f.Add("")
	f.Add(".")
	for _, tok := range []string{"b3AyNWItcHJvb2YtdjEgbj0gc3JjPSBwb3J0PSB0PSBjYXBzPSBwb3J0cz0.AAAA"} {
		f.Add(tok)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		st, payload, sig, err := Parse(tok)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Parse error %v is not ErrMalformed", err)
			}
			return
		}
		if string(st.Marshal()) != string(payload) || len(sig) != ed25519.SignatureSize {
			t.Fatalf("accepted a non-canonical payload %q", payload)
		}
	})
}
