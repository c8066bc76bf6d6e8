package threadguard

import (
	"strings"
	"testing"
)

func TestLinkedLibraryMatchesTheHeader(t *testing.T) {
	if ABIVersion() != headerABIVersion {
		t.Fatalf("library ABI %d, header ABI %d", ABIVersion(), headerABIVersion)
	}
	if v := Version(); strings.Count(v, ".") != 2 {
		t.Errorf("version %q", v)
	}
}

func TestViolationPolicy(t *testing.T) {
	wantErr(t, "unknown policy", SetViolationPolicy(7), ErrInvalidArgument)
	for _, p := range []Policy{PolicyLog, PolicyReturn} {
		if err := SetViolationPolicy(p); err != nil {
			t.Fatalf("policy %d: %v", p, err)
		}
	}
}
