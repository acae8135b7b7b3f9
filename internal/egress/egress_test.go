package egress

import (
	"context"
	"errors"
	"net/netip"
	"testing"
)

func TestGuard_Check(t *testing.T) {
	g := Guard{
		Allow: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")},
		Deny:  []netip.Prefix{netip.MustParsePrefix("93.184.216.34/32")},
	}
	for _, tc := range []struct {
		ip string
		ok bool
	}{
		{"1.1.1.1", true},
		{"2606:4700:4700::1111", true},
		{"127.0.0.1", false},
		{"::1", false},
		{"::ffff:127.0.0.1", false},
		{"169.254.169.254", false},
		{"10.0.0.5", false},
		{"10.1.2.3", true}, // allowed although private
		{"192.168.1.1", false},
		{"100.64.0.1", false},
		{"fd00::1", false},
		{"93.184.216.34", false}, // denied although public
	} {
		err := g.Check(netip.MustParseAddr(tc.ip))
		if (err == nil) != tc.ok || err != nil && !errors.Is(err, ErrNotPublic) {
			t.Errorf("%s: got %v, want allowed=%v", tc.ip, err, tc.ok)
		}
	}
}

func TestGuard_CheckHostResolvesNames(t *testing.T) {
	var g Guard
	if err := g.CheckHost(context.Background(), "localhost"); !errors.Is(err, ErrNotPublic) {
		t.Errorf("localhost: got %v, want ErrNotPublic", err)
	}
	if err := g.CheckHost(context.Background(), "169.254.169.254"); !errors.Is(err, ErrNotPublic) {
		t.Errorf("metadata address: got %v, want ErrNotPublic", err)
	}
	if err := g.CheckHost(context.Background(), "8.8.8.8"); err != nil {
		t.Errorf("public address: got %v", err)
	}
}

func TestGuard_DialerRefusesBeforeConnecting(t *testing.T) {
	var g Guard
	_, err := g.Dialer(0).DialContext(context.Background(), "tcp", "127.0.0.1:9")
	if !errors.Is(err, ErrNotPublic) {
		t.Fatalf("dial 127.0.0.1: got %v, want ErrNotPublic", err)
	}
}
