package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/op25b/observatory/collector/dataset"
)

// lock is the advisory lock key that lets one collector replica at a time
// deliver ("whk" in ASCII).
const lock int64 = 0x77686b

// The outcomes of an attempt, as Options.Observe is told them.
const (
	Delivered = "delivered" // a 2xx answer
	Failed    = "failed"    // an error or any other status; retried
)

// Outcomes lists the outcomes of an attempt.
var Outcomes = []string{Delivered, Failed}

// Events reads the log of policy changes; *dataset.Dataset is one.
type Events interface {
	ChangeEvents(ctx context.Context, f dataset.EventFilter) ([]dataset.ChangeEvent, error)
}

// Options tune the deliverer. The zero value of a field means its default.
type Options struct {
	// Client sends the deliveries (a 10-second timeout, redirects not
	// followed: a 3xx is a failure).
	Client *http.Client
	// Poll is how often the deliverer looks for due work without being
	// notified of new events (5s); it also bounds how late a retry is.
	Poll time.Duration
	// MinBackoff is the wait after a first failure (30s); each further
	// consecutive failure doubles it, up to MaxBackoff (1h). The wait is
	// drawn between half of that and all of it.
	MinBackoff, MaxBackoff time.Duration
	// MaxFailures is how many consecutive failed attempts disable a
	// webhook (10).
	MaxFailures int
	// PublicURL is the collector's web address; the ASN page URLs of the
	// deliveries start with it (empty: they are paths, /asn/64500).
	PublicURL string
	// Batch is how many events one query reads (100).
	Batch  int
	Logger *slog.Logger
	Now    func() time.Time
	// Observe, if not nil, is told the outcome of each attempt and, for
	// one delivered, the time from the event's seen_at until the answer.
	// It is called from several goroutines at once.
	Observe func(outcome string, delay time.Duration)
}

// Deliverer sends new events to the enabled webhooks.
type Deliverer struct {
	pool   *pgxpool.Pool
	events Events
	opts   Options
}

// NewDeliverer returns a deliverer of events to the webhooks registered
// in pool. events should read the primary database, where the events
// are logged first.
func NewDeliverer(pool *pgxpool.Pool, events Events, opts Options) *Deliverer {
	if opts.Client == nil {
		opts.Client = &http.Client{Timeout: 10 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if opts.Poll <= 0 {
		opts.Poll = 5 * time.Second
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 30 * time.Second
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = time.Hour
	}
	if opts.MaxFailures <= 0 {
		opts.MaxFailures = 10
	}
	if opts.Batch <= 0 {
		opts.Batch = 100
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	opts.PublicURL = strings.TrimSuffix(opts.PublicURL, "/")
	return &Deliverer{pool: pool, events: events, opts: opts}
}

// Run delivers until ctx ends. Of the collectors sharing a database, one
// at a time delivers: the one holding the deliverer's advisory lock on a
// connection of its own, on which it also listens for the refresh's
// notification of new events. The others try to take the lock at every
// poll. Delivery runs apart from ingest and the refresh, which never wait
// for it.
func (d *Deliverer) Run(ctx context.Context) {
	log := d.opts.Logger
	for ctx.Err() == nil {
		held, err := d.hold(ctx)
		if err != nil && ctx.Err() == nil {
			log.Warn("webhook deliverer: lost its database connection; will try again", "err", err)
		}
		if !held || err != nil {
			sleep(ctx, d.opts.Poll)
		}
	}
}

// hold takes the lock and delivers while it holds it; it says whether it
// took it.
func (d *Deliverer) hold(ctx context.Context) (bool, error) {
	conn, err := d.pool.Acquire(ctx)
	if err != nil {
		return false, err
	}
	var locked bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", lock).Scan(&locked); err != nil || !locked {
		conn.Release()
		return false, err
	}
	defer func() {
		// The session lock goes with the session: close it rather than
		// hand a connection that holds it back to the pool.
		conn.Conn().Close(context.Background())
		conn.Release()
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+dataset.EventsChannel); err != nil {
		return true, err
	}
	d.opts.Logger.Info("webhook deliverer: this collector delivers the webhooks")
	for {
		if err := d.Round(ctx); err != nil && ctx.Err() == nil {
			d.opts.Logger.Warn("webhook deliverer: a round failed; will retry", "err", err)
		}
		wait, cancel := context.WithTimeout(ctx, d.opts.Poll)
		_, err := conn.Conn().WaitForNotification(wait)
		cancel()
		switch {
		case ctx.Err() != nil:
			return true, nil
		case err != nil && !errors.Is(err, context.DeadlineExceeded):
			return true, err
		}
	}
}

// hook is a webhook's delivery state.
type hook struct {
	id                int64
	url, secret       string
	filter            Filter
	cursor            int64
	attempt, failures int
}

// Round sends each enabled webhook that is due the events after its
// cursor, the webhooks in parallel, and returns when each is done or
// waiting for a retry. Run calls it; tests call it directly.
func (d *Deliverer) Round(ctx context.Context) error {
	rows, err := d.pool.Query(ctx, `SELECT id, url, secret, asn, country, family, last_event_id, attempt, failures FROM webhooks
		WHERE enabled AND (next_attempt_at IS NULL OR next_attempt_at <= $1) ORDER BY id`, d.opts.Now())
	if err != nil {
		return fmt.Errorf("webhook: due webhooks: %w", err)
	}
	var hooks []hook
	for rows.Next() {
		var h hook
		var asn int64
		var fam int16
		if err := rows.Scan(&h.id, &h.url, &h.secret, &asn, &h.filter.Country, &fam, &h.cursor, &h.attempt, &h.failures); err != nil {
			rows.Close()
			return fmt.Errorf("webhook: due webhooks: %w", err)
		}
		h.filter.ASN, h.filter.Family = uint32(asn), familyOf(fam)
		hooks = append(hooks, h)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("webhook: due webhooks: %w", err)
	}
	errs := make([]error, len(hooks))
	var wg sync.WaitGroup
	for i := range hooks {
		wg.Go(func() { errs[i] = d.deliver(ctx, &hooks[i]) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// deliver sends h the events after its cursor, in order, until one fails
// or none is left.
func (d *Deliverer) deliver(ctx context.Context, h *hook) error {
	for {
		events, err := d.events.ChangeEvents(ctx, dataset.EventFilter{After: h.cursor, Limit: d.opts.Batch})
		if err != nil {
			return err
		}
		skipped := h.cursor
		for _, e := range events {
			if !h.filter.Match(e) {
				skipped = e.ID
				continue
			}
			if skipped != h.cursor {
				if err := d.advance(ctx, h, skipped); err != nil {
					return err
				}
			}
			ok, err := d.attempt(ctx, h, e)
			if err != nil || !ok {
				return err
			}
			skipped = h.cursor
		}
		if skipped != h.cursor {
			if err := d.advance(ctx, h, skipped); err != nil {
				return err
			}
		}
		if len(events) < d.opts.Batch {
			return nil
		}
	}
}

// advance moves h's cursor past events that do not match it.
func (d *Deliverer) advance(ctx context.Context, h *hook, to int64) error {
	if _, err := d.pool.Exec(ctx, "UPDATE webhooks SET last_event_id = $2, attempt = 0 WHERE id = $1 AND last_event_id < $2", h.id, to); err != nil {
		return fmt.Errorf("webhook %d: move the cursor: %w", h.id, err)
	}
	h.cursor, h.attempt = to, 0
	return nil
}

// Payload is the JSON body of a delivery. docs/operator.md documents it.
type Payload struct {
	EventID int64 `json:"event_id"`
	// Type is "policy_change", or "policy_change_retracted" for a change
	// delivered before that the recomputed results no longer show.
	Type      string    `json:"type"`
	ASN       uint32    `json:"asn"`
	ASName    string    `json:"as_name"`
	Country   string    `json:"country"`
	Family    string    `json:"family"`
	Day       string    `json:"day"`
	FromClass string    `json:"from_class"`
	ToClass   string    `json:"to_class"`
	SeenAt    time.Time `json:"seen_at"`
	URL       string    `json:"url"`
}

// PayloadOf is the body that delivers e; publicURL is the collector's web
// address ("" for a path).
func PayloadOf(e dataset.ChangeEvent, publicURL string) Payload {
	typ := "policy_change"
	if e.Retracted {
		typ = "policy_change_retracted"
	}
	return Payload{EventID: e.ID, Type: typ, ASN: e.ASN, ASName: e.Name, Country: e.Country, Family: dataset.FamilyName(e.Family),
		Day: e.Day.Format(time.DateOnly), FromClass: dataset.ClassName(e.From), ToClass: dataset.ClassName(e.To),
		SeenAt: e.SeenAt.UTC(), URL: fmt.Sprintf("%s/asn/%d", publicURL, e.ASN)}
}

// attempt POSTs e to h once and records the outcome: it says whether e
// was delivered. An error is the database's.
func (d *Deliverer) attempt(ctx context.Context, h *hook, e dataset.ChangeEvent) (bool, error) {
	n := h.attempt + 1 // this attempt's number for e
	log := d.opts.Logger.With("webhook", h.id, "event", e.ID, "attempt", n)
	body, err := json.Marshal(PayloadOf(e, d.opts.PublicURL))
	if err != nil {
		return false, err
	}
	began := d.opts.Now()
	status, sendErr := d.send(ctx, h, e.ID, body, began)
	if ctx.Err() != nil {
		// Shutting down: the attempt did not count.
		return false, nil
	}
	took := d.opts.Now().Sub(began)
	ok := sendErr == nil && status/100 == 2
	var failure string
	switch {
	case sendErr != nil:
		failure = sendErr.Error()
	case !ok:
		failure = fmt.Sprintf("HTTP status %d", status)
	}
	var next *time.Time
	disable := false
	if ok {
		h.cursor, h.attempt, h.failures = e.ID, 0, 0
	} else {
		h.attempt = n
		h.failures++
		disable = h.failures >= d.opts.MaxFailures
		t := d.opts.Now().Add(d.backoff(h.failures))
		next = &t
	}
	reason := ""
	if disable {
		reason = fmt.Sprintf("%d consecutive failed deliveries, the last: %s", h.failures, failure)
	}
	var statusCol *int
	if sendErr == nil {
		statusCol = &status
	}
	// The attempt's row and the webhook's new state commit together; a
	// webhook removed meanwhile takes neither.
	if _, err := d.pool.Exec(ctx, `WITH h AS (
		UPDATE webhooks SET last_event_id = $2, attempt = $3, failures = $4, next_attempt_at = $5,
			enabled = enabled AND NOT $6, disabled_at = CASE WHEN $6 THEN $7 ELSE disabled_at END,
			disabled_reason = CASE WHEN $6 THEN $8 ELSE disabled_reason END
		WHERE id = $1 RETURNING id)
	INSERT INTO webhook_deliveries (webhook_id, event_id, attempt, at, status, error, duration_ms)
		SELECT id, $9, $10, $7, $11, $12, $13 FROM h`,
		h.id, h.cursor, h.attempt, h.failures, next, disable, began, reason,
		e.ID, n, statusCol, failure, float64(took)/float64(time.Millisecond)); err != nil {
		return false, fmt.Errorf("webhook %d: record the delivery of event %d: %w", h.id, e.ID, err)
	}
	if ok {
		delay := d.opts.Now().Sub(e.SeenAt)
		log.Info("webhook delivered", "status", status, "took", took.Round(time.Millisecond), "delay", delay.Round(time.Millisecond))
		d.observe(Delivered, delay)
		return true, nil
	}
	log.Warn("webhook delivery failed; will retry", "url", h.url, "err", failure, "failures", h.failures, "retry_at", next.UTC().Format(time.RFC3339))
	d.observe(Failed, 0)
	if disable {
		log.Warn("webhook disabled: too many consecutive failed deliveries; `op25b-collector webhook enable` resumes it from this event",
			"url", h.url, "failures", h.failures, "last", failure)
	}
	return false, nil
}

func (d *Deliverer) observe(outcome string, delay time.Duration) {
	if d.opts.Observe != nil {
		d.opts.Observe(outcome, delay)
	}
}

// send POSTs one signed delivery and returns the answer's status.
func (d *Deliverer) send(ctx context.Context, h *hook, id int64, body []byte, at time.Time) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	ts := at.Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "op25b-collector webhook")
	req.Header.Set(HeaderEventID, strconv.FormatInt(id, 10))
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderSignature, Sign(h.secret, ts, body))
	resp, err := d.opts.Client.Do(req)
	if err != nil {
		return 0, err
	}
	// Read a little so that the connection can be reused; the answer's
	// body means nothing.
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode, nil
}

// backoff is the wait after the n-th consecutive failure: MinBackoff
// doubled n-1 times, at most MaxBackoff, drawn between half of it and it
// so that webhooks failing together do not retry in step.
func (d *Deliverer) backoff(n int) time.Duration {
	b := d.opts.MinBackoff
	for i := 1; i < n && b < d.opts.MaxBackoff; i++ {
		b *= 2
	}
	b = min(b, d.opts.MaxBackoff)
	return b/2 + rand.N(b/2+1)
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
