package threadguard

import "testing"

// A test binary links one copy of the library (-tags threadguard_static), so
// CopiesLoaded counts exactly one.
func TestCopiesLoadedCountsTheOneCopyOfATestBinary(t *testing.T) {
	n, err := CopiesLoaded()
	if err != nil || n != 1 {
		t.Fatalf("CopiesLoaded() = %d, %v; want 1, nil", n, err)
	}
}
