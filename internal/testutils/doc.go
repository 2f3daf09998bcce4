// Package testutils holds nothing itself: its subpackages are the helpers
// of this module's own tests, and nothing that ships imports them. Each
// does one thing: testnet (a child cgroup to watch, network namespaces
// joined by a veth pair, sockets), testproc (helper processes that own
// sockets), testpacket (crafted TCP/IP packets), testenv (the rules about
// privileges and CI), bpftest (the loaded kernel programs, found by id for
// BPF_PROG_TEST_RUN, and a ring buffer filler), bpfids (which BPF objects
// a process holds), otlpsink (an OTLP/HTTP endpoint) and churn (short-lived
// connections). The tests and tools of the test module (end to end, bench,
// soak, the kernel matrix) live in ../../test.
package testutils
