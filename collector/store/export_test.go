package store

// Waiting returns how many InsertResults calls wait for a committer.
func (s *Store) Waiting() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queue)
}

// SetCommitters sets how many merged transactions run at once.
func (s *Store) SetCommitters(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.maxCommit = n
}
