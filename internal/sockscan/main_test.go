//go:build linux

package sockscan

import (
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv(scanChildEnv) != "" {
		os.Exit(scanChild(os.Args[len(os.Args)-1]))
	}
	// Every goroutine a test starts ends with it.
	goleak.VerifyTestMain(m)
}

// scanChildEnv makes the test binary a child that scans and prints what it
// found of the sockets whose cookies are its last argument (comma-separated),
// then who it ran as.
const scanChildEnv = "NETFLOWTCPEND_SCAN_CHILD"

func scanChild(cookies string) int {
	table, err := Scan(os.Getpid())
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	for _, f := range strings.Split(cookies, ",") {
		cookie, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			fmt.Println("error", err)
			return 1
		}
		s, ok := table.Take(cookie, netip.AddrPort{}, netip.AddrPort{})
		fmt.Println("socket", cookie, ok, s.Direction, s.Rule, s.PID, s.Executable)
	}
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	fmt.Printf("%s", status)
	// What the /proc scan would have needed.
	_, err = os.ReadDir(fmt.Sprintf("/proc/%d/fd", os.Getppid()))
	fmt.Println("proc-fd", err)
	return 0
}
