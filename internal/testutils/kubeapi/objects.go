//go:build linux

package kubeapi

import (
	"context"
	"fmt"
	"net/netip"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// Objects makes cluster objects as their controllers would, with nothing
// running them: pods get their addresses through the status subresource,
// as a kubelet sets them.
type Objects struct {
	Client kubernetes.Interface
}

// Namespace creates a namespace.
func (o Objects) Namespace(ctx context.Context, name string) error {
	_, err := o.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	return err
}

// Node creates a node with these internal addresses.
func (o Objects) Node(ctx context.Context, name string, ips ...netip.Addr) error {
	n, err := o.Client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	for _, ip := range ips {
		n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: ip.String()})
	}
	n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeHostName, Address: name})
	_, err = o.Client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
	return err
}

// Service creates a ClusterIP Service with this cluster IP (from
// ServiceCIDR); an invalid address lets the API server choose one. It
// returns the cluster IP.
func (o Objects) Service(ctx context.Context, namespace, name string, clusterIP netip.Addr) (netip.Addr, error) {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": name},
			Ports:    []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}},
		},
	}
	if clusterIP.IsValid() {
		s.Spec.ClusterIP = clusterIP.String()
	}
	s, err := o.Client.CoreV1().Services(namespace).Create(ctx, s, metav1.CreateOptions{})
	if err != nil {
		return netip.Addr{}, err
	}
	return netip.ParseAddr(s.Spec.ClusterIP)
}

// Pod is a pod for Objects.Pod to make.
type Pod struct {
	Namespace, Name string
	Node            string
	IPs             []netip.Addr // its addresses, in status.podIPs
	HostIP          netip.Addr   // its node's address, in status.hostIP; optional
	HostNetwork     bool         // then IPs should be the node's
	Owner           *metav1.OwnerReference
	Phase           corev1.PodPhase // default Running
}

// Pod creates a pod bound to its node and sets its status: phase and
// addresses.
func (o Objects) Pod(ctx context.Context, p Pod) (*corev1.Pod, error) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: p.Name, Labels: map[string]string{"app": p.Name}},
		Spec:       podSpec(),
	}
	pod.Spec.NodeName = p.Node
	pod.Spec.HostNetwork = p.HostNetwork
	if p.Owner != nil {
		pod.OwnerReferences = []metav1.OwnerReference{*p.Owner}
	}
	pod, err := o.Client.CoreV1().Pods(p.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return nil, err
	}
	pod.Status.Phase = p.Phase
	if pod.Status.Phase == "" {
		pod.Status.Phase = corev1.PodRunning
	}
	for _, ip := range p.IPs {
		pod.Status.PodIPs = append(pod.Status.PodIPs, corev1.PodIP{IP: ip.String()})
	}
	if len(p.IPs) > 0 {
		pod.Status.PodIP = p.IPs[0].String()
	}
	if p.HostIP.IsValid() {
		pod.Status.HostIP = p.HostIP.String()
		pod.Status.HostIPs = []corev1.HostIP{{IP: p.HostIP.String()}}
	}
	return o.Client.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{})
}

// SetPodPhase moves a pod to phase (e.g. Succeeded: its containers ended).
func (o Objects) SetPodPhase(ctx context.Context, namespace, name string, phase corev1.PodPhase) error {
	pod, err := o.Client.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	pod.Status.Phase = phase
	_, err = o.Client.CoreV1().Pods(namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{})
	return err
}

// Workload makes a workload of kind (Deployment, ReplicaSet, StatefulSet,
// DaemonSet, Job, CronJob) as its controllers would, and returns the owner
// reference its pods carry: a Deployment's pods are owned by its
// ReplicaSet (name-<hash>), a CronJob's by its Job (name-<minutes>).
func (o Objects) Workload(ctx context.Context, namespace, kind, name string) (*metav1.OwnerReference, error) {
	meta := metav1.ObjectMeta{Namespace: namespace, Name: name}
	sel := &metav1.LabelSelector{MatchLabels: map[string]string{"workload": name}}
	tmpl := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: sel.MatchLabels}, Spec: podSpec()}
	apps, batch := o.Client.AppsV1(), o.Client.BatchV1()
	create := metav1.CreateOptions{}
	switch kind {
	case "Deployment":
		d, err := apps.Deployments(namespace).Create(ctx, &appsv1.Deployment{ObjectMeta: meta,
			Spec: appsv1.DeploymentSpec{Selector: sel, Template: tmpl}}, create)
		if err != nil {
			return nil, err
		}
		rs, err := o.replicaSet(ctx, metav1.ObjectMeta{Namespace: namespace, Name: name + "-5d8f7c9b4",
			OwnerReferences: []metav1.OwnerReference{controllerRef(appsv1.SchemeGroupVersion.WithKind("Deployment"), d.Name, d.UID)}}, sel, tmpl)
		if err != nil {
			return nil, err
		}
		return ptr.To(controllerRef(appsv1.SchemeGroupVersion.WithKind("ReplicaSet"), rs.Name, rs.UID)), nil
	case "ReplicaSet":
		rs, err := o.replicaSet(ctx, meta, sel, tmpl)
		if err != nil {
			return nil, err
		}
		return ptr.To(controllerRef(appsv1.SchemeGroupVersion.WithKind("ReplicaSet"), rs.Name, rs.UID)), nil
	case "StatefulSet":
		s, err := apps.StatefulSets(namespace).Create(ctx, &appsv1.StatefulSet{ObjectMeta: meta,
			Spec: appsv1.StatefulSetSpec{Selector: sel, Template: tmpl}}, create)
		if err != nil {
			return nil, err
		}
		return ptr.To(controllerRef(appsv1.SchemeGroupVersion.WithKind("StatefulSet"), s.Name, s.UID)), nil
	case "DaemonSet":
		d, err := apps.DaemonSets(namespace).Create(ctx, &appsv1.DaemonSet{ObjectMeta: meta,
			Spec: appsv1.DaemonSetSpec{Selector: sel, Template: tmpl}}, create)
		if err != nil {
			return nil, err
		}
		return ptr.To(controllerRef(appsv1.SchemeGroupVersion.WithKind("DaemonSet"), d.Name, d.UID)), nil
	case "Job":
		j, err := o.job(ctx, meta, tmpl)
		if err != nil {
			return nil, err
		}
		return ptr.To(controllerRef(batchv1.SchemeGroupVersion.WithKind("Job"), j.Name, j.UID)), nil
	case "CronJob":
		cj, err := batch.CronJobs(namespace).Create(ctx, &batchv1.CronJob{ObjectMeta: meta,
			Spec: batchv1.CronJobSpec{Schedule: "*/5 * * * *", JobTemplate: batchv1.JobTemplateSpec{Spec: jobSpec(tmpl)}}}, create)
		if err != nil {
			return nil, err
		}
		j, err := o.job(ctx, metav1.ObjectMeta{Namespace: namespace, Name: name + "-29412345",
			OwnerReferences: []metav1.OwnerReference{controllerRef(batchv1.SchemeGroupVersion.WithKind("CronJob"), cj.Name, cj.UID)}}, tmpl)
		if err != nil {
			return nil, err
		}
		return ptr.To(controllerRef(batchv1.SchemeGroupVersion.WithKind("Job"), j.Name, j.UID)), nil
	}
	return nil, fmt.Errorf("unknown workload kind %q", kind)
}

func (o Objects) replicaSet(ctx context.Context, meta metav1.ObjectMeta, sel *metav1.LabelSelector, tmpl corev1.PodTemplateSpec) (*appsv1.ReplicaSet, error) {
	return o.Client.AppsV1().ReplicaSets(meta.Namespace).Create(ctx, &appsv1.ReplicaSet{ObjectMeta: meta,
		Spec: appsv1.ReplicaSetSpec{Selector: sel, Template: tmpl}}, metav1.CreateOptions{})
}

func (o Objects) job(ctx context.Context, meta metav1.ObjectMeta, tmpl corev1.PodTemplateSpec) (*batchv1.Job, error) {
	return o.Client.BatchV1().Jobs(meta.Namespace).Create(ctx, &batchv1.Job{ObjectMeta: meta, Spec: jobSpec(tmpl)}, metav1.CreateOptions{})
}

func jobSpec(tmpl corev1.PodTemplateSpec) batchv1.JobSpec {
	tmpl = *tmpl.DeepCopy()
	tmpl.Spec.RestartPolicy = corev1.RestartPolicyNever
	tmpl.Labels = nil // the API server sets the job's own selector labels
	return batchv1.JobSpec{Template: tmpl}
}

func controllerRef(gvk schema.GroupVersionKind, name string, uid types.UID) metav1.OwnerReference {
	return metav1.OwnerReference{APIVersion: gvk.GroupVersion().String(), Kind: gvk.Kind, Name: name, UID: uid, Controller: ptr.To(true)}
}

func podSpec() corev1.PodSpec {
	return corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example.com/app:1"}}}
}
