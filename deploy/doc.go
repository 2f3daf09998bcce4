// Package deploy holds the Kubernetes manifests of the netflow_tcp_end
// agent (daemonset.yaml) and the values for the OpenTelemetry Collector Helm
// chart (helm-values.yaml). It has no code: its tests decode both files
// strictly with the Kubernetes API types and check them against the README
// (the capabilities) and against what the collector needs.
package deploy
