//! Detaching every endpoint of a network at once (`network rm --force`): one
//! transaction marks them all "detaching", their links are deleted
//! concurrently (a thread per link, each with its own netlink socket in the
//! endpoint's namespace, so the kernel's waits overlap instead of queueing),
//! and the caller records the removal in one transaction.

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
    pub(crate) fn delete_links_of(&mut self, network: &NetworkRecord) -> Result<Detached> {
        let owner = intent::this_process()?;
        let tx = self.store.write()?;
        let endpoints = tx.endpoints(network.id)?;
        let mut views = Vec::with_capacity(endpoints.len());
        let dhcp = network.spec.ipam.is_dhcp();
        for ep in &endpoints {
            crate::detach::refuse_in_flight(ep)?;
            views.push(crate::detach::endpoint_view(&tx, network.spec.name.as_str(), ep)?);
            if dhcp {
                // RELEASE while the link still holds its address (through the
                // parent when the namespace is gone).
                let ns = nicslice_kernel::NetnsTarget::Path(ep.netns.clone().into()).open().ok();
                let parent = (&self.host, network.spec.parent.as_str());
                crate::dhcp::release(&tx, ns.as_ref(), parent, network.spec.name.as_str(), ep)?;
            }
            tx.set_endpoint_state(ep.id, EndpointState::Detaching, Some(owner))?;
        }
        tx.commit()?;

        let kind = network.spec.driver.kind();
        let results = delete_concurrently(&endpoints, kind, self.faults);
        let mut first_error = None;
        let mut detached = Detached { views: Vec::new(), records: Vec::new() };
        let tx = self.store.write()?;
        for ((ep, view), result) in endpoints.into_iter().zip(views).zip(results) {
            match result {
                Ok(()) => {
                    detached.views.push(view);
                    detached.records.push(ep);
                }
                Err(e) => {
                    tx.set_endpoint_state(ep.id, EndpointState::Attached, None)?;
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            None => {
                tx.commit()?;
                Ok(detached)
            }
            Some(error) => {
                for ep in &detached.records {
                    crate::detach::finish_detach(&tx, ep)?;
                }
                tx.commit()?;
                Err(error)
            }
        }
    }
}

/// Deletes the link of each endpoint (where its namespace still is the
/// recorded one), in up to `MAX_THREADS` threads; one result per endpoint,
/// in order.
fn delete_concurrently(
    endpoints: &[EndpointRecord],
    kind: &str,
    faults: Faults,
) -> Vec<Result<()>> {
    if endpoints.is_empty() {
        return Vec::new();
    }
    let per_thread = endpoints.len().div_ceil(MAX_THREADS);
    let delete_all = move |batch: &[EndpointRecord]| -> Vec<Result<()>> {
        batch.iter().map(|ep| delete_one(ep, kind, faults)).collect()
    };
    thread::scope(|scope| {
        let workers: Vec<_> = endpoints
            .chunks(per_thread)
            .map(|batch| {
                let spawned = thread::Builder::new()
                    .stack_size(THREAD_STACK)
                    .spawn_scoped(scope, move || delete_all(batch));
                (batch, spawned)
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|(batch, spawned)| match spawned {
                Ok(worker) => worker.join().unwrap_or_else(|_| {
                    let panicked =
                        || EngineError::Invalid("a link deletion thread panicked".into());
                    batch.iter().map(|_| Err(panicked())).collect()
                }),
                // No thread to be had (a limit on tasks): this one does it.
                Err(_) => delete_all(batch),
            })
            .collect()
    })
}

fn delete_one(ep: &EndpointRecord, kind: &str, faults: Faults) -> Result<()> {
    // A namespace that is gone took the link with it.
    let Some((_, mut sock)) = intent::open_recorded(ep)? else { return Ok(()) };
    crate::detach::remove_ours(&mut sock, ep.ifname.as_str(), kind, ep.mac, faults)?;
    Ok(())
}
