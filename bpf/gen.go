// Package bpf holds the kernel programs of netflowtcpend and the Go code that
// loads, attaches and reads them.
package bpf

// The generated netflow_bpfel.{go,o} are committed so that building the
// collector needs no clang; `make generate` runs this with the pinned clang.
//go:generate go tool bpf2go -cc ${BPF_CLANG} -cflags "${BPF_CFLAGS}" -target bpfel -type event -type stat netflow netflow.c
