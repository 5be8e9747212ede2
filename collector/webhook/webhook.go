// Package webhook delivers the log of policy changes (collector/dataset,
// ChangeEvent) to the HTTP endpoints operators register: each new event
// that matches a webhook's filters is POSTed as JSON, signed with
// HMAC-SHA256 over a timestamp and the body, retried with capped
// exponential backoff and jitter, and the webhook disabled after too many
// consecutive failures. Every attempt is logged in webhook_deliveries.
// Delivery is at least once and in event order per webhook; receivers
// drop repeats by the X-OP25B-Event-Id header. docs/operator.md,
// Webhooks, tells operators and receivers how.
package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/op25b/observatory/collector/dataset"
	pb "github.com/op25b/observatory/proto/op25b/v1"
)

// The headers of a delivery.
const (
	HeaderEventID   = "X-OP25B-Event-Id"
	HeaderTimestamp = "X-OP25B-Timestamp"
	HeaderSignature = "X-OP25B-Signature"
)

// Filter selects the events a webhook receives; zero fields select any.
type Filter struct {
	ASN     uint32
	Country string // ISO 3166-1 alpha-2, as dataset.ParseCountry returns it
	Family  pb.AddressFamily
}

// Match says whether f selects e.
func (f Filter) Match(e dataset.ChangeEvent) bool {
	return (f.ASN == 0 || f.ASN == e.ASN) && (f.Country == "" || f.Country == e.Country) &&
		(f.Family == pb.AddressFamily_ADDRESS_FAMILY_UNSPECIFIED || f.Family == e.Family)
}

func (f Filter) String() string {
	var parts []string
	if f.ASN != 0 {
		parts = append(parts, fmt.Sprintf("AS%d", f.ASN))
	}
	if f.Country != "" {
		parts = append(parts, f.Country)
	}
	if f.Family != pb.AddressFamily_ADDRESS_FAMILY_UNSPECIFIED {
		parts = append(parts, dataset.FamilyName(f.Family))
	}
	if len(parts) == 0 {
		return "all"
	}
	return strings.Join(parts, " ")
}

// Webhook is a registered endpoint as listed (without its secret).
type Webhook struct {
	ID      int64
	URL     string
	Filter  Filter
	Enabled bool
	Created time.Time
	// LastEventID is the delivery cursor: every event up to it was
	// delivered or did not match.
	LastEventID int64
	// Failures counts the consecutive failed attempts; NextAttempt is when
	// the next may be made (zero: at once).
	Failures    int
	NextAttempt time.Time
	// Disabled and DisabledReason say when and why the deliverer disabled
	// the webhook.
	Disabled       *time.Time
	DisabledReason string
}

// Registry is the operators' side of the webhooks, over the collector's
// database.
type Registry struct {
	Pool *pgxpool.Pool
}

// ParseURL checks that raw is an absolute http or https URL.
func ParseURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("webhook: URL %q: %w", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("webhook: URL %q: want an http:// or https:// URL, not %q", raw, u.Scheme+":")
	}
	if u.Host == "" {
		return "", fmt.Errorf("webhook: URL %q has no host", raw)
	}
	return u.String(), nil
}

// Add registers an endpoint for the events f selects that are logged
// from now on, and returns its id and the secret that signs its
// deliveries: the secret is shown to the operator once.
func (r *Registry) Add(ctx context.Context, rawURL string, f Filter) (id int64, secret string, err error) {
	u, err := ParseURL(rawURL)
	if err != nil {
		return 0, "", err
	}
	b := make([]byte, 32)
	rand.Read(b)
	secret = "whsec_" + hex.EncodeToString(b)
	fam := int16(0)
	switch f.Family {
	case pb.AddressFamily_ADDRESS_FAMILY_IPV4:
		fam = 4
	case pb.AddressFamily_ADDRESS_FAMILY_IPV6:
		fam = 6
	}
	err = r.Pool.QueryRow(ctx, `INSERT INTO webhooks (url, secret, asn, country, family, last_event_id)
		VALUES ($1, $2, $3, $4, $5, (SELECT coalesce(max(id), 0) FROM policy_change_events)) RETURNING id`,
		u, secret, int64(f.ASN), f.Country, fam).Scan(&id)
	if err != nil {
		return 0, "", fmt.Errorf("webhook: add: %w", err)
	}
	return id, secret, nil
}

// List lists the webhooks, oldest first.
func (r *Registry) List(ctx context.Context) ([]Webhook, error) {
	rows, err := r.Pool.Query(ctx, `SELECT id, url, asn, country, family, enabled, created_at, last_event_id, failures,
		next_attempt_at, disabled_at, disabled_reason FROM webhooks ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("webhook: list: %w", err)
	}
	hooks, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Webhook, error) {
		var h Webhook
		var asn int64
		var fam int16
		var next *time.Time
		err := row.Scan(&h.ID, &h.URL, &asn, &h.Filter.Country, &fam, &h.Enabled, &h.Created, &h.LastEventID, &h.Failures,
			&next, &h.Disabled, &h.DisabledReason)
		h.Filter.ASN, h.Filter.Family = uint32(asn), familyOf(fam)
		if next != nil {
			h.NextAttempt = *next
		}
		return h, err
	})
	if err != nil {
		return nil, fmt.Errorf("webhook: list: %w", err)
	}
	return hooks, nil
}

// Remove deletes a webhook and its deliveries log.
func (r *Registry) Remove(ctx context.Context, id int64) error {
	tag, err := r.Pool.Exec(ctx, "DELETE FROM webhooks WHERE id = $1", id)
	if err != nil {
		return fmt.Errorf("webhook: remove: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("webhook: no webhook %d", id)
	}
	return nil
}

// Enable lets the deliverer try a webhook again at once, from the event
// it stopped at: its count of failures starts over.
func (r *Registry) Enable(ctx context.Context, id int64) error {
	tag, err := r.Pool.Exec(ctx, `UPDATE webhooks SET enabled = true, failures = 0, next_attempt_at = NULL,
		disabled_at = NULL, disabled_reason = '' WHERE id = $1`, id)
	if err != nil {
		return fmt.Errorf("webhook: enable: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("webhook: no webhook %d", id)
	}
	return nil
}

// ParseID reads a webhook id as the commands print it.
func ParseID(s string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("webhook: id %q: want the number webhook list shows", s)
	}
	return id, nil
}

// Sign returns the X-OP25B-Signature of a delivery of body at timestamp
// (Unix seconds, as sent in X-OP25B-Timestamp): "sha256=" and the hex
// HMAC-SHA256, keyed with the secret, of the timestamp, a dot and the body.
func Sign(secret string, timestamp int64, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(strconv.FormatInt(timestamp, 10)))
	m.Write([]byte("."))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Verify checks a delivery's signature header against the secret, and
// that its timestamp is within tolerance of now (a replay of an old
// delivery fails). It is what a receiver written in Go does.
func Verify(secret, timestamp, signature string, body []byte, now time.Time, tolerance time.Duration) error {
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return fmt.Errorf("webhook: timestamp %q is not Unix seconds", timestamp)
	}
	if d := now.Sub(time.Unix(ts, 0)).Abs(); d > tolerance {
		return fmt.Errorf("webhook: timestamp %d is %s away from now", ts, d.Round(time.Second))
	}
	if !hmac.Equal([]byte(Sign(secret, ts, body)), []byte(signature)) {
		return errors.New("webhook: signature does not match")
	}
	return nil
}

func familyOf(f int16) pb.AddressFamily {
	switch f {
	case 4:
		return pb.AddressFamily_ADDRESS_FAMILY_IPV4
	case 6:
		return pb.AddressFamily_ADDRESS_FAMILY_IPV6
	}
	return pb.AddressFamily_ADDRESS_FAMILY_UNSPECIFIED
}
