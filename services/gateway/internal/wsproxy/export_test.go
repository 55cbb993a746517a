package wsproxy

// Parked reports how many sides of s are parked, for tests; sessions of the event-loop
// engine have none.
func (s *Session) Parked() int {
	g, ok := s.impl.(*goSession)
	if !ok {
		return 0
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for i := range g.sides {
		if g.sides[i].parked {
			n++
		}
	}
	return n
}

// ParkAfter is parkAfter, for tests.
const ParkAfter = parkAfter

// Parking is parking, for tests.
const Parking = parking
