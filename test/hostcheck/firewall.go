//go:build linux

package main

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
)

// firewall returns the nftables tables, chains and rules of the network
// namespace netns (iptables-nft's among them: they are nftables tables), and
// its legacy x_tables tables.
func firewall(netns int) ([]object, error) {
	objs, err := nftObjects(netns)
	legacy, lerr := legacyTables(netns)
	return append(objs, legacy...), errors.Join(err, lerr)
}

func nftObjects(netns int) ([]object, error) {
	conn, err := nftables.New(nftables.WithNetNSFd(netns))
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	tables, err := conn.ListTables()
	if err != nil {
		return nil, fmt.Errorf("nftables: list tables: %w", err)
	}
	var objs []object
	for _, t := range tables {
		objs = append(objs, object{kind: kindNftTable, id: family(t.Family) + " " + t.Name,
			detail: "remove: nft delete table " + family(t.Family) + " " + t.Name})
	}
	chains, err := conn.ListChains()
	if err != nil {
		return objs, fmt.Errorf("nftables: list chains: %w", err)
	}
	for _, c := range chains {
		where := family(c.Table.Family) + " " + c.Table.Name + " " + c.Name
		objs = append(objs, object{kind: kindNftChain, id: where, detail: chainHook(c)})
		rules, err := conn.GetRules(c.Table, c)
		if err != nil {
			return objs, fmt.Errorf("nftables: rules of chain %s: %w", where, err)
		}
		for _, r := range rules {
			var exprs []string
			for _, e := range r.Exprs {
				exprs = append(exprs, strings.TrimPrefix(fmt.Sprintf("%T", e), "*expr."))
			}
			objs = append(objs, object{kind: kindNftRule, id: fmt.Sprintf("%s handle %d", where, r.Handle),
				detail: strings.Join(exprs, " ")})
		}
	}
	return objs, nil
}

// family is the family's name as nft writes it.
func family(f nftables.TableFamily) string {
	switch f {
	case nftables.TableFamilyIPv4:
		return "ip"
	case nftables.TableFamilyIPv6:
		return "ip6"
	case nftables.TableFamilyINet:
		return "inet"
	case nftables.TableFamilyARP:
		return "arp"
	case nftables.TableFamilyBridge:
		return "bridge"
	case nftables.TableFamilyNetdev:
		return "netdev"
	}
	return fmt.Sprintf("family%d", f)
}

// chainHook describes a base chain as nft does ("type nat hook
// postrouting priority 100"); "" for a regular chain.
func chainHook(c *nftables.Chain) string {
	if c.Hooknum == nil {
		return ""
	}
	hooks := []string{"prerouting", "input", "forward", "output", "postrouting"}
	if c.Table.Family == nftables.TableFamilyNetdev {
		hooks = []string{"ingress", "egress"}
	}
	hook := fmt.Sprint(*c.Hooknum)
	if int(*c.Hooknum) < len(hooks) {
		hook = hooks[*c.Hooknum]
	}
	s := fmt.Sprintf("type %s hook %s", c.Type, hook)
	if c.Priority != nil {
		s += fmt.Sprintf(" priority %d", *c.Priority)
	}
	return s
}

// legacyTables returns the x_tables tables (legacy iptables, ip6tables,
// arptables) that exist in the namespace. They are compared by name only:
// their chains can only be read with the iptables-legacy tools; and a test
// that makes one fails here anyway, since a legacy table stays until its
// namespace goes. Reading these files does not make tables (listing them
// with iptables-legacy would).
func legacyTables(netns int) ([]object, error) {
	var objs []object
	err := inNetns(netns, func() error {
		for _, f := range []struct{ file, family string }{
			{"ip_tables_names", "ipv4"}, {"ip6_tables_names", "ipv6"}, {"arp_tables_names", "arp"},
		} {
			// Per network namespace: /proc/thread-self/net is this thread's.
			b, err := os.ReadFile("/proc/thread-self/net/" + f.file)
			if errors.Is(err, os.ErrNotExist) {
				continue // the kernel has no such tables
			}
			if err != nil {
				return fmt.Errorf("x_tables: %w", err)
			}
			for _, name := range strings.Fields(string(b)) {
				objs = append(objs, object{kind: kindLegacyTable, id: f.family + " " + name,
					detail: "it stays until its network namespace goes"})
			}
		}
		return nil
	})
	return objs, err
}

// inNetns runs f on an OS thread in the network namespace netns. The thread
// ends with f instead of going back to Go's pool in another namespace. A
// thread already there stays (entering one's own namespace needs root too).
func inNetns(netns int, f func() error) error {
	done := make(chan error)
	go func() {
		runtime.LockOSThread()
		var want, here unix.Stat_t
		if err := unix.Fstat(netns, &want); err != nil {
			done <- err
			return
		}
		if err := unix.Stat("/proc/thread-self/ns/net", &here); err != nil {
			done <- err
			return
		}
		if want.Ino != here.Ino || want.Dev != here.Dev {
			if err := unix.Setns(netns, unix.CLONE_NEWNET); err != nil {
				done <- fmt.Errorf("enter network namespace: %w", err)
				return
			}
		}
		done <- f()
	}()
	return <-done
}
