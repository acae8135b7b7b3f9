// Package egress decides which addresses connections made on a tenant's
// behalf may reach: its hooks' $http.send, the S3 storage and SMTP server
// it configures in its own settings, its OAuth2 providers. Only public
// internet addresses, by default: a tenant must not reach the platform's
// internal APIs, other hosts on its private network or a cloud metadata
// service (SSRF).
//
// The check runs on the address actually dialled (after DNS, on every
// redirect), so a name that resolves to 127.0.0.1 or a rebinding DNS server
// gains nothing. Where a library dials by itself (SMTP), Guard.CheckHost
// resolves the name first.
package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"
)

// ErrNotPublic refuses a connection to an address that is not public.
var ErrNotPublic = errors.New("tenants may only connect to public internet addresses")

// blocked are not public: loopback, private, link-local (cloud metadata at
// 169.254.169.254), CGNAT, multicast, reserved and the like.
var blocked = func() []netip.Prefix {
	var ps []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
		"192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24",
		"203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
		"::/128", "::1/128", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64", "2001::/23", "2001:db8::/32",
		"2002::/16", "fc00::/7", "fe80::/10", "ff00::/8",
	} {
		ps = append(ps, netip.MustParsePrefix(s))
	}
	return ps
}()

// Guard is a policy: public addresses and Allow may be reached, except
// Deny (the platform's own public addresses, say). Allow wins over every
// denied range. The zero Guard allows public addresses only.
type Guard struct {
	Allow []netip.Prefix
	Deny  []netip.Prefix
}

// Check returns an error wrapping ErrNotPublic unless ip may be reached.
func (g Guard) Check(ip netip.Addr) error {
	ip = ip.Unmap()
	for _, p := range g.Allow {
		if p.Contains(ip) {
			return nil
		}
	}
	for _, ps := range [][]netip.Prefix{blocked, g.Deny} {
		for _, p := range ps {
			if p.Contains(ip) {
				return fmt.Errorf("%w: %s is not one", ErrNotPublic, ip)
			}
		}
	}
	return nil
}

// control is a net.Dialer Control function that refuses what Check does.
func (g Guard) control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: %s", ErrNotPublic, address)
	}
	return g.Check(ap.Addr())
}

// Dialer returns a dialer that connects only where g allows.
func (g Guard) Dialer(timeout time.Duration) *net.Dialer {
	return &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second, Control: g.control}
}

// Transport returns an HTTP transport that connects only where g allows
// and ignores proxy settings (a proxy would dial for it). timeout bounds
// connecting, the TLS handshake and waiting for the response headers.
func (g Guard) Transport(timeout time.Duration) *http.Transport {
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           g.Dialer(timeout).DialContext,
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
		MaxIdleConnsPerHost:   2,
		IdleConnTimeout:       30 * time.Second,
		ForceAttemptHTTP2:     true,
	}
}

// CheckHost resolves host (a name or an IP) and returns an error wrapping
// ErrNotPublic if any of its addresses may not be reached, for clients
// that dial by themselves. A name that resolves differently when the
// client dials it escapes this check; prefer Dialer where a dialer can be
// given.
func (g Guard) CheckHost(ctx context.Context, host string) error {
	if ip, err := netip.ParseAddr(host); err == nil {
		return g.Check(ip)
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return fmt.Errorf("resolve %s: %w", host, err)
	}
	for _, ip := range ips {
		if err := g.Check(ip); err != nil {
			return fmt.Errorf("%s: %w", host, err)
		}
	}
	return nil
}
