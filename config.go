package netflowtcpend

import (
	"go.opentelemetry.io/collector/component"

	flowreceiver "github.com/netflowtcpend/netflowtcpend/receiver"
)

// Config is the receiver's configuration. It is defined next to the runtime
// that reads it, in package receiver, so that one type goes from the YAML to
// the kernel programs; see that package for the keys.
type Config = flowreceiver.Config

func createDefaultConfig() component.Config { return flowreceiver.DefaultConfig() }
