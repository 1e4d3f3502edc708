//! The CNI conformance suite: one set of cases run against nicslice's
//! plugins and, when installed, Debian's reference plugins (macvlan and
//! host-local), in private namespaces. Each case asserts what the kernel
//! holds afterwards; where the reference plugins are known to differ the
//! case says so by name (`harness::Deviations`) and asserts their behaviour.
//! The cases also run against nicslice-ipam's fleet pool (`"store":
//! {"etcd": ...}`) when Debian's etcd-server is installed, with an etcd of
//! each case's own. Needs root (it creates namespaces); ipvlan cases run in
//! the VM stage.

mod harness;
mod host_access;
mod lifecycle;
mod nicslice_only;
mod requests;
mod spec_edges;
