//go:build linux

package testnet

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The few rtnetlink requests the tests make (a veth pair, addresses, a
// neighbour, a route, a link up or gone), written with golang.org/x/sys
// alone: a netlink library here would be a requirement of the component's
// go.mod, and so of every collector build that imports the receiver, for
// the sake of its tests. Each request runs in the network namespace of the
// calling thread (inside Netns.Do, the test's).

// vethInfoPeer is VETH_INFO_PEER (linux/veth.h), which x/sys does not name.
const vethInfoPeer = 1

// rtattr appends a route attribute: length, type, data, padding to 4 bytes.
func rtattr(b []byte, typ uint16, data []byte) []byte {
	n := unix.SizeofRtAttr + len(data)
	b = binary.NativeEndian.AppendUint16(b, uint16(n))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, data...)
	return append(b, make([]byte, nlAlign(n)-n)...)
}

// nested appends an attribute that holds the attributes body appends.
func nested(b []byte, typ uint16, body func([]byte) []byte) []byte {
	start := len(b)
	b = rtattr(b, typ, nil)
	b = body(b)
	binary.NativeEndian.PutUint16(b[start:], uint16(len(b)-start))
	return b
}

func nlAlign(n int) int { return (n + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1) }

func u32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }

func cstring(s string) []byte { return append([]byte(s), 0) }

// bytesOf returns the bytes of a fixed-size kernel header struct.
func bytesOf[T any](v *T) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(v)), unsafe.Sizeof(*v))
}

// rtnlDo sends one request and waits for the kernel's acknowledgement.
func rtnlDo(typ uint16, flags uint16, body []byte) error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("netlink bind: %w", err)
	}
	hdr := unix.NlMsghdr{
		Len:   uint32(unix.SizeofNlMsghdr + len(body)),
		Type:  typ,
		Flags: unix.NLM_F_REQUEST | unix.NLM_F_ACK | flags,
		Seq:   1,
	}
	msg := append(append([]byte(nil), bytesOf(&hdr)...), body...)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("netlink send: %w", err)
	}
	buf := make([]byte, 8192)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return fmt.Errorf("netlink receive: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return fmt.Errorf("netlink parse: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Type != unix.NLMSG_ERROR || m.Header.Seq != hdr.Seq {
				continue
			}
			if len(m.Data) < 4 {
				return fmt.Errorf("netlink: short error message")
			}
			if errno := int32(binary.NativeEndian.Uint32(m.Data)); errno != 0 {
				return unix.Errno(-errno)
			}
			return nil
		}
	}
}

func linkIndex(name string) (int32, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return 0, err
	}
	return int32(ifi.Index), nil
}

// addVeth makes a veth pair: name here, peer in the namespace peerNs (a
// file descriptor). mtu > 0 sets both ends' MTU and makes this end hand
// TCP segments of at most one MTU to the hooks (a GSO limit of one).
func addVeth(name, peer string, peerNs int, mtu int) error {
	b := append([]byte(nil), bytesOf(&unix.IfInfomsg{Family: unix.AF_UNSPEC})...)
	b = rtattr(b, unix.IFLA_IFNAME, cstring(name))
	if mtu > 0 {
		b = rtattr(b, unix.IFLA_MTU, u32(uint32(mtu)))
		b = rtattr(b, unix.IFLA_GSO_MAX_SEGS, u32(1))
		b = rtattr(b, unix.IFLA_GSO_MAX_SIZE, u32(uint32(mtu)))
	}
	b = nested(b, unix.IFLA_LINKINFO, func(b []byte) []byte {
		b = rtattr(b, unix.IFLA_INFO_KIND, cstring("veth"))
		return nested(b, unix.IFLA_INFO_DATA, func(b []byte) []byte {
			return nested(b, vethInfoPeer, func(b []byte) []byte {
				b = append(b, bytesOf(&unix.IfInfomsg{Family: unix.AF_UNSPEC})...)
				b = rtattr(b, unix.IFLA_IFNAME, cstring(peer))
				b = rtattr(b, unix.IFLA_NET_NS_FD, u32(uint32(peerNs)))
				if mtu > 0 {
					b = rtattr(b, unix.IFLA_MTU, u32(uint32(mtu)))
				}
				return b
			})
		})
	})
	if err := rtnlDo(unix.RTM_NEWLINK, unix.NLM_F_CREATE|unix.NLM_F_EXCL, b); err != nil {
		return fmt.Errorf("add veth %s: %w", name, err)
	}
	return nil
}

func delLink(name string) error {
	idx, err := linkIndex(name)
	if err != nil {
		return err
	}
	return rtnlDo(unix.RTM_DELLINK, 0, bytesOf(&unix.IfInfomsg{Family: unix.AF_UNSPEC, Index: idx}))
}

func linkUp(name string) error {
	idx, err := linkIndex(name)
	if err != nil {
		return err
	}
	ifi := unix.IfInfomsg{Family: unix.AF_UNSPEC, Index: idx, Flags: unix.IFF_UP, Change: unix.IFF_UP}
	if err := rtnlDo(unix.RTM_NEWLINK, 0, bytesOf(&ifi)); err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	return nil
}

func family(a netip.Addr) uint8 {
	if a.Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

// AddrAdd adds an address with its prefix to a link of the calling
// thread's network namespace, without duplicate address detection (usable
// at once).
func AddrAdd(link string, p netip.Prefix) error {
	idx, err := linkIndex(link)
	if err != nil {
		return err
	}
	ifa := unix.IfAddrmsg{Family: family(p.Addr()), Prefixlen: uint8(p.Bits()), Flags: unix.IFA_F_NODAD, Index: uint32(idx)}
	b := append([]byte(nil), bytesOf(&ifa)...)
	b = rtattr(b, unix.IFA_LOCAL, p.Addr().AsSlice())
	b = rtattr(b, unix.IFA_ADDRESS, p.Addr().AsSlice())
	if err := rtnlDo(unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_EXCL, b); err != nil {
		return fmt.Errorf("add %s to %s: %w", p, link, err)
	}
	return nil
}

// RouteAdd adds a route to dst through gw on a link of the calling
// thread's network namespace.
func RouteAdd(link string, dst netip.Prefix, gw netip.Addr) error {
	idx, err := linkIndex(link)
	if err != nil {
		return err
	}
	rt := unix.RtMsg{
		Family: family(dst.Addr()), Dst_len: uint8(dst.Bits()), Table: unix.RT_TABLE_MAIN,
		Protocol: unix.RTPROT_BOOT, Scope: unix.RT_SCOPE_UNIVERSE, Type: unix.RTN_UNICAST,
	}
	b := append([]byte(nil), bytesOf(&rt)...)
	b = rtattr(b, unix.RTA_DST, dst.Addr().AsSlice())
	b = rtattr(b, unix.RTA_GATEWAY, gw.AsSlice())
	b = rtattr(b, unix.RTA_OIF, u32(uint32(idx)))
	if err := rtnlDo(unix.RTM_NEWROUTE, unix.NLM_F_CREATE|unix.NLM_F_EXCL, b); err != nil {
		return fmt.Errorf("add route to %s via %s: %w", dst, gw, err)
	}
	return nil
}

// neighAdd adds a permanent neighbour entry: ip is at mac on link.
func neighAdd(link string, ip netip.Addr, mac net.HardwareAddr) error {
	idx, err := linkIndex(link)
	if err != nil {
		return err
	}
	nd := unix.NdMsg{Family: family(ip), Ifindex: idx, State: unix.NUD_PERMANENT}
	b := append([]byte(nil), bytesOf(&nd)...)
	b = rtattr(b, unix.NDA_DST, ip.AsSlice())
	b = rtattr(b, unix.NDA_LLADDR, mac)
	if err := rtnlDo(unix.RTM_NEWNEIGH, unix.NLM_F_CREATE|unix.NLM_F_EXCL, b); err != nil {
		return fmt.Errorf("add neighbour %s: %w", ip, err)
	}
	return nil
}
