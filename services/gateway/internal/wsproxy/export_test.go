package wsproxy

// Parked reports how many sides of s are parked, for tests.
func (s *Session) Parked() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for i := range s.sides {
		if s.sides[i].parked {
			n++
		}
	}
	return n
}

// ParkAfter is parkAfter, for tests.
const ParkAfter = parkAfter

// Parking is parking, for tests.
const Parking = parking
