//! Detaching every endpoint of a network at once (`network rm --force`): one
//! transaction marks them all "detaching", their links are deleted
//! concurrently (a thread per batch, each with its own netlink socket in the
//! endpoint's namespace, so the kernel's grace periods overlap instead of
//! queueing), and the caller records the removal in one transaction.

use std::thread;

use nicslice_store::{EndpointRecord, EndpointState, NetworkRecord, StoreRead};

use crate::error::{EngineError, Result};
use crate::fault::Faults;
use crate::intent;
use crate::{EndpointView, Engine};

/// At most this many link deletions run at once.
const MAX_THREADS: usize = 64;

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
    thread::scope(|scope| {
        let workers: Vec<_> = endpoints
            .chunks(per_thread)
            .map(|batch| {
                scope.spawn(move || {
                    batch.iter().map(|ep| delete_one(ep, kind, faults)).collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| {
                w.join().unwrap_or_else(|_| {
                    vec![Err(EngineError::Invalid("a link deletion thread panicked".into()))]
                })
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
