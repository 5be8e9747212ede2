package stream

// Held is how many subscribers b holds.
func Held(b *Broker) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.subs)
}
