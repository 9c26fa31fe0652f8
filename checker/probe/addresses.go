package probe

import (
	"context"
	"fmt"
	"net/netip"
	"syscall"
)

// AddressPolicy says which addresses checks may connect to. It is enforced
// when a connection is made, on the address it is made to, so that a name
// that resolves somewhere else on the next lookup (DNS rebinding) and a
// redirect get the same verdict as the URL itself.
//
// The zero value denies only where cloud metadata services answer: a
// Website's URL must not be a way to read a node's cloud credentials.
type AddressPolicy struct {
	// DenyPrivate also denies private, loopback, shared (CGNAT) and
	// unique-local addresses: a checker that must not reach into the
	// networks it runs in.
	DenyPrivate bool
	// Allow are ranges connected to even when denied above, such as a
	// link-local service the checks must reach.
	Allow []netip.Prefix
}

// BlockedError is a connection the AddressPolicy refused, before any packet
// was sent.
type BlockedError struct {
	Addr netip.AddrPort
	// Range is the denied range the address is in, Why what it is, and
	// Private whether only DenyPrivate denies it.
	Range   netip.Prefix
	Why     string
	Private bool
}

func (e *BlockedError) Error() string {
	where := ""
	if !e.Range.IsSingleIP() {
		where = " (" + e.Range.String() + ")"
	}
	rule := "checks never connect there"
	if e.Private {
		rule = "this checker denies private networks"
	}
	return fmt.Sprintf("connection to %s blocked: %s is %s%s; %s", e.Addr, e.Addr.Addr(), e.Why, where, rule)
}

type deniedRange struct {
	prefix netip.Prefix
	why    string
}

func ranges(rs ...string) []deniedRange {
	out := make([]deniedRange, 0, len(rs)/2)
	for i := 0; i < len(rs); i += 2 {
		out = append(out, deniedRange{netip.MustParsePrefix(rs[i]), rs[i+1]})
	}
	return out
}

// metadataRanges are denied always. The single addresses come first, so
// that the message names the service rather than the range around it.
var metadataRanges = ranges(
	"169.254.169.254/32", "a cloud metadata address",
	"fd00:ec2::254/128", "a cloud metadata address (AWS, IPv6)",
	"100.100.100.200/32", "a cloud metadata address (Alibaba Cloud)",
	"169.254.0.0/16", "link-local, where cloud metadata services answer",
	"fe80::/10", "link-local",
)

// privateRanges are denied with DenyPrivate.
var privateRanges = ranges(
	"0.0.0.0/8", "this host's network",
	"10.0.0.0/8", "private (RFC 1918)",
	"100.64.0.0/10", "shared address space (CGNAT)",
	"127.0.0.0/8", "loopback",
	"172.16.0.0/12", "private (RFC 1918)",
	"192.168.0.0/16", "private (RFC 1918)",
	"::/128", "the unspecified address (this host)",
	"::1/128", "loopback",
	"fc00::/7", "unique-local",
)

// nat64 is the well-known NAT64 prefix: an IPv4 address behind it is
// reached through the network's translator.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// Check returns a *BlockedError when the policy denies addr.
func (p *AddressPolicy) Check(addr netip.AddrPort) error {
	ip := addr.Addr().WithZone("") // a zoned address is in no prefix
	if ip.Is4In6() {
		ip = ip.Unmap()
	} else if nat64.Contains(ip) {
		b := ip.As16()
		ip = netip.AddrFrom4([4]byte(b[12:]))
	}
	for _, a := range p.Allow {
		if a.Contains(ip) {
			return nil
		}
	}
	if err := deny(addr, ip, metadataRanges, false); err != nil || !p.DenyPrivate {
		return err
	}
	return deny(addr, ip, privateRanges, true)
}

func deny(addr netip.AddrPort, ip netip.Addr, denied []deniedRange, private bool) error {
	for _, r := range denied {
		if r.prefix.Contains(ip) {
			return &BlockedError{Addr: addr, Range: r.prefix, Why: r.why, Private: private}
		}
	}
	return nil
}

// control is a net.Dialer's ControlContext: it runs on each address dialed,
// resolved, after the socket is made and before it connects.
func (p *AddressPolicy) control(_ context.Context, _, address string, _ syscall.RawConn) error {
	addr, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("address %q: %w", address, err)
	}
	return p.Check(addr)
}
