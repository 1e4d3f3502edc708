//! The agent's pass over one DHCPv6 lease (`dhcp::renew` calls it for rows
//! of family 6): RENEW with the server that gave it at T1, REBIND with any
//! server at T2, the address off its link when the lease ran out or the
//! server no longer binds it. Every outcome is written to the store as it
//! happens, as for DHCPv4.

use std::net::IpAddr;
use std::time::Duration;

use nicslice_kernel::{Dhcp6Socket, Netns, RouteSocket};
use nicslice_store::DhcpLeaseRecord;

use super::client::{Exchange6, Extended};
use super::{Identity6, Lease6Details, from_hex, lease_record, link_local};
use crate::Engine;
use crate::dhcp::renew::{Due, Holder, Outcome};
use crate::dhcp::unix_now;
use crate::error::Result;

impl Engine {
    pub(in crate::dhcp) fn renew_one_v6(
        &mut self,
        lease: &DhcpLeaseRecord,
        holder: &Holder,
        ns: &Netns,
        due: Due,
        timeout: Duration,
    ) -> Result<Outcome> {
        if due == Due::Expired {
            self.drop_address(lease, holder, ns)?;
            // Asked for again at once (RFC 8415 18.2.5: SOLICIT again).
            return Ok(Outcome::Lost("lease expired".into(), Some(unix_now())));
        }
        let (Some(identity), IpAddr::V6(address)) =
            (Identity6::from_key(&lease.client_id), lease.address.addr())
        else {
            return Ok(Outcome::Lost("not a DHCPv6 lease nicslice made".into(), None));
        };
        let details: Lease6Details =
            serde_json::from_value(lease.details.clone()).unwrap_or_default();
        let ifname = holder.ifname.as_str();
        let socket = Dhcp6Socket::open_in(ns, ifname, link_local(&lease.client_id))?;
        let exchange = Exchange6 {
            socket: &socket,
            duid: &identity.duid,
            iaid: identity.iaid,
            label: &holder.label,
        };
        let server_id = (due == Due::Renew).then(|| from_hex(&details.server_id));
        match exchange.extend(address, server_id.as_deref(), timeout) {
            Ok(Extended::Kept(granted)) => {
                // The resolv.conf written at attach stays the endpoint's.
                let written = details.resolv_conf.as_ref();
                let renewed =
                    lease_record(&identity, lease.endpoint_id, &granted, written, unix_now());
                let tx = self.store.write()?;
                tx.record_dhcp_lease(&renewed)?;
                tx.commit()?;
                let mut sock = RouteSocket::open_in(ns)?;
                if let Some(link) = sock.link_by_name(ifname)? {
                    sock.set_address_lifetime(link.index, lease.address, granted.valid_secs)?;
                }
                Ok(Outcome::Renewed(granted.valid_secs))
            }
            Ok(Extended::Gone(why)) => {
                self.drop_address(lease, holder, ns)?;
                let why = format!("the DHCPv6 server no longer binds it ({why})");
                Ok(Outcome::Lost(why, Some(unix_now())))
            }
            Err(e) => {
                self.postpone(lease, due)?;
                Err(e)
            }
        }
    }
}
