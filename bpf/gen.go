//go:build linux

// Package bpf holds the kernel programs of netflowtcpend and the Go code that
// loads, attaches and reads them.
package bpf

// The generated netflow_bpfel.{go,o} are committed so that building the
// collector needs no clang. `make generate` installs the pinned clang-19 from
// Debian and runs this; CI checks that it leaves no diff.
//go:generate go tool bpf2go -cc clang-19 -cflags "-O2 -g -mcpu=v3 -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target bpfel -tags linux -type event -type dns_event -type family -type direction -type end_by -type end_reason -type event_flags -type stat -type record_type -type cgroup_event -type tls_event netflow netflow.c

// The same programs for kernels without atomic fetch operations (before
// Linux 5.12): -DNETFLOW_NO_ATOMICS guards the socket's flags with a
// bpf_spin_lock (sock_state.h). The record types are netflow's; the loader
// picks one of the two objects by probing the kernel (features.go), and
// leaves the TLS programs out of either if the verifier refuses them
// (loader.go).
//go:generate go tool bpf2go -cc clang-19 -cflags "-O2 -g -mcpu=v3 -Wall -Werror -I/usr/include/x86_64-linux-gnu -DNETFLOW_NO_ATOMICS" -target bpfel -tags linux netflowSpinlock netflow.c

// The socket scan at start (scan.c), an iterator loaded once by scan.go.
//go:generate go tool bpf2go -cc clang-19 -cflags "-O2 -g -mcpu=v3 -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target bpfel -tags linux -type scan_record -type scan_flags scan scan.c
