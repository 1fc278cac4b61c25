package discovery

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
)

// LocalAddrs returns the addresses at which a listener bound to listen
// (host:port) can be reached from another machine: when the host is
// unspecified ("", "0.0.0.0", "::"), every address of every interface
// that is up, with the listener's port; otherwise listen itself. Loopback
// addresses come only when there is nothing else (a machine with no
// network), link-local IPv6 addresses never (they need the dialler's zone).
// IPv4 comes before IPv6 and private (LAN) addresses before public ones.
func LocalAddrs(listen string) ([]string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("local addresses of %q: %w", listen, err)
	}
	if ip, err := netip.ParseAddr(host); host != "" && (err != nil || !ip.IsUnspecified()) {
		return []string{listen}, nil
	}
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("local addresses: %w", err)
	}
	var ips []netip.Addr
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 {
			continue
		}
		as, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range as {
			if p, err := netip.ParsePrefix(a.String()); err == nil {
				ips = append(ips, p.Addr())
			}
		}
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("local addresses of %q: port: %w", listen, err)
	}
	return ReachableAddrs(ips, uint16(p), MaxAddrs), nil
}

// ReachableAddrs orders and filters interface addresses as LocalAddrs
// does and joins at most limit of them with port.
func ReachableAddrs(ips []netip.Addr, port uint16, limit int) []string {
	rank := func(ip netip.Addr) int {
		switch {
		case ip.Is4() && ip.IsPrivate():
			return 0
		case ip.Is4():
			return 1
		case ip.IsPrivate(): // ULA
			return 2
		default:
			return 3
		}
	}
	var keep, loop []netip.Addr
	for _, ip := range ips {
		ip = ip.Unmap()
		switch {
		case !ip.IsValid() || ip.IsUnspecified() || ip.IsMulticast():
		case ip.IsLoopback():
			loop = append(loop, ip)
		case ip.Is6() && ip.IsLinkLocalUnicast():
		default:
			keep = append(keep, ip)
		}
	}
	if len(keep) == 0 {
		keep = loop
	}
	slices.SortStableFunc(keep, func(a, b netip.Addr) int { return rank(a) - rank(b) })
	keep = slices.Compact(keep)
	out := make([]string, 0, min(limit, len(keep)))
	for _, ip := range keep {
		if len(out) == limit {
			break
		}
		out = append(out, netip.AddrPortFrom(ip, port).String())
	}
	return out
}
