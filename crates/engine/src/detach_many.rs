//! Detaching every endpoint of a network at once (`network rm --force`): one
//! transaction marks them all "detaching", their links are deleted
//! concurrently (a thread per link, each with its own netlink socket in the
//! endpoint's namespace, so the kernel's waits overlap instead of queueing),
//! and the caller records the removal in one transaction.

use std::sync::OnceLock;
use std::thread;

use nicslice_store::{EndpointRecord, EndpointState, NetworkRecord, StoreRead};

use crate::error::{EngineError, Result};
use crate::fault::Faults;
use crate::intent;
use crate::{EndpointView, Engine};

/// At most this many link deletions run at once: one thread per link up to
/// here. Measured (`nicslice-bench remove`, kernel 6.18): 64 links deleted
/// at once cost 1.7 times one delete, but 80 in 64 threads, where a thread
/// deletes a second link after its first, cost 12 times; 100 and 200 in a
/// thread each, 2.5 and 5 times. The kernel's wait for a deleted link's
/// last references is what overlaps; a second delete queued behind one
/// does not.
const MAX_THREADS: usize = 1024;

/// A deleting thread's stack: it opens a namespace and a netlink socket,
/// and sends two messages (the default 2 MiB is reserved, not used, but
/// a thousand of them is address space for nothing).
const THREAD_STACK: usize = 256 * 1024;

/// Endpoints whose links are gone, to be released by the caller.
pub(crate) struct Detached {
    pub views: Vec<EndpointView>,
    pub records: Vec<EndpointRecord>,
}

impl Engine {
    /// Deletes the links of every endpoint of `network`. The caller holds a
    /// stop-signal shield and finishes the detach (leases, rows) in its own
    /// transaction; until then the endpoints stay "detaching" with this
    /// process as owner, and should it die the next command finishes them.
    /// An endpoint whose link cannot be deleted is marked attached again,
    /// and the first such failure is the error (after the others were
    /// recorded as gone).
    ///
    /// The deleting threads start before the intent is written: each opens
    /// its endpoint's namespace and a socket in it while this thread reads
    /// the views and commits the intent, and none deletes anything until
    /// that commit is done (a gate), so the intent still comes first.
    pub(crate) fn delete_links_of(&mut self, network: &NetworkRecord) -> Result<Detached> {
        let owner = intent::this_process()?;
        let tx = self.store.write()?;
        let endpoints = tx.endpoints(network.id)?;
        for ep in &endpoints {
            crate::detach::refuse_in_flight(ep)?;
        }
        let kind = network.spec.driver.kind();
        let faults = self.faults;
        let host = &self.host;
        let gate = Gate::default();
        let (intent, results) = thread::scope(|scope| {
            let workers = spawn_deleters(scope, &endpoints, kind, faults, &gate);
            let closed_on_unwind = GateGuard(&gate);
            let intent = (|| -> Result<Vec<EndpointView>> {
                let mut views = Vec::with_capacity(endpoints.len());
                let dhcp = network.spec.ipam.is_dhcp();
                for ep in &endpoints {
                    views.push(crate::detach::endpoint_view(&tx, network.spec.name.as_str(), ep)?);
                    if dhcp {
                        // RELEASE while the link still holds its address
                        // (through the parent when the namespace is gone).
                        let target = nicslice_kernel::NetnsTarget::Path(ep.netns.clone().into());
                        let ns = target.open().ok();
                        let parent = (host, network.spec.parent.as_str());
                        let name = network.spec.name.as_str();
                        crate::dhcp::release(&tx, ns.as_ref(), parent, name, ep)?;
                    }
                }
                let ids: Vec<_> = endpoints.iter().map(|ep| ep.id).collect();
                tx.set_endpoints_state(&ids, EndpointState::Detaching, Some(owner))?;
                tx.commit()?;
                Ok(views)
            })();
            gate.open(intent.is_ok());
            drop(closed_on_unwind);
            (intent, join_deleters(workers, kind, faults, &gate))
        });
        let views = intent?;

        let mut first_error = None;
        let mut detached = Detached { views: Vec::new(), records: Vec::new() };
        let mut failed = Vec::new();
        for ((ep, view), result) in endpoints.into_iter().zip(views).zip(results) {
            match result {
                Ok(()) => {
                    detached.views.push(view);
                    detached.records.push(ep);
                }
                Err(e) => {
                    failed.push(ep.id);
                    first_error.get_or_insert(e);
                }
            }
        }
        // All gone (the common case): the caller's transaction records it.
        let Some(error) = first_error else { return Ok(detached) };
        let tx = self.store.write()?;
        tx.set_endpoints_state(&failed, EndpointState::Attached, None)?;
        for ep in &detached.records {
            crate::detach::finish_detach(&tx, ep)?;
        }
        tx.commit()?;
        Err(error)
    }
}

/// Holds the deleting threads until the intent is committed: `true` lets
/// them delete, `false` (the intent failed) sends them home untouched.
#[derive(Default)]
struct Gate(OnceLock<bool>);

impl Gate {
    fn open(&self, go: bool) {
        let _ = self.0.set(go);
    }

    fn wait(&self) -> bool {
        *self.0.wait()
    }
}

/// Closes the gate should the thread that holds it unwind before opening
/// it, so that the scope's threads end instead of waiting for ever.
struct GateGuard<'a>(&'a Gate);

impl Drop for GateGuard<'_> {
    fn drop(&mut self) {
        self.0.open(false);
    }
}

type Deleters<'scope, 'env> = Vec<(
    &'env [EndpointRecord],
    std::io::Result<thread::ScopedJoinHandle<'scope, Vec<Result<()>>>>,
)>;

/// Starts up to `MAX_THREADS` threads over `endpoints`, each deleting its
/// share of links once `gate` opens.
fn spawn_deleters<'scope, 'env>(
    scope: &'scope thread::Scope<'scope, 'env>,
    endpoints: &'env [EndpointRecord],
    kind: &'env str,
    faults: Faults,
    gate: &'env Gate,
) -> Deleters<'scope, 'env> {
    if endpoints.is_empty() {
        return Vec::new();
    }
    let per_thread = endpoints.len().div_ceil(MAX_THREADS);
    endpoints
        .chunks(per_thread)
        .map(|batch| {
            let spawned = thread::Builder::new()
                .stack_size(THREAD_STACK)
                .spawn_scoped(scope, move || delete_all(batch, kind, faults, gate));
            (batch, spawned)
        })
        .collect()
}

/// One result per endpoint, in order. A batch whose thread could not be
/// had (a limit on tasks) is deleted here, the gate being open by now.
fn join_deleters(
    workers: Deleters<'_, '_>,
    kind: &str,
    faults: Faults,
    gate: &Gate,
) -> Vec<Result<()>> {
    workers
        .into_iter()
        .flat_map(|(batch, spawned)| match spawned {
            Ok(worker) => worker.join().unwrap_or_else(|_| {
                let panicked = || EngineError::Invalid("a link deletion thread panicked".into());
                batch.iter().map(|_| Err(panicked())).collect()
            }),
            Err(_) => delete_all(batch, kind, faults, gate),
        })
        .collect()
}

/// Opens each endpoint's recorded namespace, then, once the gate opens,
/// deletes its link there.
fn delete_all(
    batch: &[EndpointRecord],
    kind: &str,
    faults: Faults,
    gate: &Gate,
) -> Vec<Result<()>> {
    let opened: Vec<_> = batch.iter().map(intent::open_recorded).collect();
    if !gate.wait() {
        let not_started = || EngineError::Invalid("the removal was not recorded".into());
        return batch.iter().map(|_| Err(not_started())).collect();
    }
    batch.iter().zip(opened).map(|(ep, opened)| delete_one(ep, opened?, kind, faults)).collect()
}

fn delete_one(
    ep: &EndpointRecord,
    opened: Option<(nicslice_kernel::Netns, nicslice_kernel::RouteSocket)>,
    kind: &str,
    faults: Faults,
) -> Result<()> {
    // A namespace that is gone took the link with it.
    let Some((_, mut sock)) = opened else { return Ok(()) };
    crate::detach::remove_ours(&mut sock, ep.ifname.as_str(), kind, ep.mac, faults)?;
    Ok(())
}
