// Package refmtaspec resolves the reference MTAs named on an agent's
// command line into probe targets. A spec is one of:
//
//   - the path of an identity document, the protojson of
//     op25bv1.ReferenceMTA that a reference MTA writes to
//     <state-dir>/identity.json;
//   - an http:// or https:// URL serving one;
//   - KEY@ADDR[,ADDR...], with KEY in the text form of proof.EncodeKey
//     and each ADDR an IPv4 or IPv6 literal, brackets optional.
//
// The key is what the agent trusts: whoever hands out the spec vouches for
// it, so fetch documents over https or from a source you trust.
package refmtaspec

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/op25b/observatory/agent/probe"
	"github.com/op25b/observatory/internal/proof"
	op25bv1 "github.com/op25b/observatory/proto/op25b/v1"
)

// Defaults for what an identity leaves out.
const (
	DefaultControlPort = 443
	// MaxDocument bounds an identity document; real ones are a few
	// hundred bytes.
	MaxDocument = 64 << 10
	// FetchTimeout bounds fetching a document by URL.
	FetchTimeout = 10 * time.Second
)

// DefaultPorts are the SMTP ports probed when an identity lists none.
var DefaultPorts = []uint16{25, 587, 465}

// Identity is a reference MTA as an agent needs to know it.
type Identity struct {
	ID          string
	Key         ed25519.PublicKey
	Addrs       []netip.Addr
	Ports       []uint16 // nil: DefaultPorts
	ControlPort uint16   // 0: DefaultControlPort
	Hostname    string   // informational; agents dial addresses
	// ImplicitTLS lists the ports that speak TLS first; nil means the IANA
	// assignment (465 only).
	ImplicitTLS []uint16
}

// Resolve reads, fetches or parses spec, whichever it is.
func Resolve(ctx context.Context, spec string) (Identity, error) {
	if strings.HasPrefix(spec, "http://") || strings.HasPrefix(spec, "https://") {
		return fetch(ctx, spec)
	}
	b, err := os.ReadFile(spec)
	switch {
	case err == nil:
		id, err := Parse(b)
		if err != nil {
			return Identity{}, fmt.Errorf("refmtaspec: %s: %w", spec, err)
		}
		return id, nil
	case errors.Is(err, fs.ErrNotExist) && strings.Contains(spec, "@"):
		// Not a file: KEY@ADDR (a base64 key has no "@").
		return ParseInline(spec)
	}
	return Identity{}, fmt.Errorf("refmtaspec: %w", err)
}

func fetch(ctx context.Context, url string) (Identity, error) {
	ctx, cancel := context.WithTimeout(ctx, FetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return Identity{}, fmt.Errorf("refmtaspec: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return Identity{}, fmt.Errorf("refmtaspec: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Identity{}, fmt.Errorf("refmtaspec: %s: %s", url, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxDocument+1))
	if err != nil {
		return Identity{}, fmt.Errorf("refmtaspec: %s: %w", url, err)
	}
	if len(b) > MaxDocument {
		return Identity{}, fmt.Errorf("refmtaspec: %s: document larger than %d KiB", url, MaxDocument>>10)
	}
	id, err := Parse(b)
	if err != nil {
		return Identity{}, fmt.Errorf("refmtaspec: %s: %w", url, err)
	}
	return id, nil
}

// Parse parses an identity document.
func Parse(doc []byte) (Identity, error) {
	var m op25bv1.ReferenceMTA
	// Unknown fields are a newer reference MTA's, not an error.
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(doc, &m); err != nil {
		return Identity{}, fmt.Errorf("not an identity document: %w", err)
	}
	return FromProto(&m)
}

// FromProto checks a reference MTA as a schedule or identity document
// carries it.
func FromProto(m *op25bv1.ReferenceMTA) (Identity, error) {
	if len(m.PublicKey) != ed25519.PublicKeySize {
		return Identity{}, fmt.Errorf("publicKey is %d bytes; want an Ed25519 key of %d", len(m.PublicKey), ed25519.PublicKeySize)
	}
	id := Identity{ID: m.Id, Key: ed25519.PublicKey(m.PublicKey), Hostname: m.Hostname}
	for _, a := range m.Addresses {
		addr, err := parseAddr(a)
		if err != nil {
			return Identity{}, err
		}
		id.Addrs = append(id.Addrs, addr)
	}
	if len(id.Addrs) == 0 {
		return Identity{}, errors.New("the document lists no addresses")
	}
	for _, p := range m.Ports {
		if p == 0 || p > 65535 {
			return Identity{}, fmt.Errorf("port %d out of range", p)
		}
		id.Ports = append(id.Ports, uint16(p))
	}
	for _, p := range m.ImplicitTlsPorts {
		if p == 0 || p > 65535 {
			return Identity{}, fmt.Errorf("implicitTlsPorts: port %d out of range", p)
		}
		id.ImplicitTLS = append(id.ImplicitTLS, uint16(p))
	}
	if m.ControlPort > 65535 {
		return Identity{}, fmt.Errorf("controlPort %d out of range", m.ControlPort)
	}
	id.ControlPort = uint16(m.ControlPort)
	id.setDefaultID()
	return id, nil
}

// ParseInline parses KEY@ADDR[,ADDR...].
func ParseInline(spec string) (Identity, error) {
	key, addrs, ok := strings.Cut(spec, "@")
	if !ok {
		return Identity{}, fmt.Errorf("refmtaspec: %q is not KEY@ADDR[,ADDR...]", spec)
	}
	pub, err := proof.DecodeKey(key)
	if err != nil {
		return Identity{}, fmt.Errorf("refmtaspec: %q: %w", spec, err)
	}
	id := Identity{Key: pub}
	for _, a := range strings.Split(addrs, ",") {
		addr, err := parseAddr(a)
		if err != nil {
			return Identity{}, fmt.Errorf("refmtaspec: %q: %w", spec, err)
		}
		id.Addrs = append(id.Addrs, addr)
	}
	id.setDefaultID()
	return id, nil
}

// parseAddr parses an IP literal as a target: brackets optional, IPv4
// mapped in IPv6 taken as IPv4, and never an address that dials this
// machine by accident.
func parseAddr(s string) (netip.Addr, error) {
	s = strings.TrimSpace(s)
	a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%q is not an IPv4 or IPv6 address", s)
	}
	a = a.Unmap()
	if a.IsUnspecified() || a.IsMulticast() {
		return netip.Addr{}, fmt.Errorf("%s cannot be a reference MTA's address", a)
	}
	return a, nil
}

func (id *Identity) setDefaultID() {
	if id.ID == "" {
		// As the reference MTA names itself when it has no configured id.
		id.ID = "refmta-" + proof.KeyID(id.Key)
	}
}

// Options are what a command line may change in the targets of an
// identity.
type Options struct {
	Ports       []uint16     // replace the identity's ports when not nil
	ControlPort uint16       // replace the identity's control port when not 0
	Family      probe.Family // only addresses of this family when not 0
}

// Targets returns one probe target per address of id, in order.
func (id Identity) Targets(o Options) []probe.Target {
	ports := DefaultPorts
	switch {
	case o.Ports != nil:
		ports = o.Ports
	case id.Ports != nil:
		ports = id.Ports
	}
	ctl := uint16(DefaultControlPort)
	switch {
	case o.ControlPort != 0:
		ctl = o.ControlPort
	case id.ControlPort != 0:
		ctl = id.ControlPort
	}
	probePorts := probe.StandardPorts(ports...)
	if id.ImplicitTLS != nil {
		for i := range probePorts {
			probePorts[i].ImplicitTLS = slices.Contains(id.ImplicitTLS, probePorts[i].Number)
		}
	}
	var targets []probe.Target
	for _, a := range id.Addrs {
		if o.Family != 0 && probe.FamilyOf(a) != o.Family {
			continue
		}
		targets = append(targets, probe.Target{RefMTA: id.ID, Key: id.Key, Addr: a,
			Ports: probePorts, ControlPort: ctl})
	}
	return targets
}
