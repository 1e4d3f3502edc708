//! The neighbour (ARP/NDP) cache of a namespace: reading it, and flushing it
//! so that each reachability probe starts cold and cannot profit from a
//! previous one.

use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::neighbour::{NeighbourMessage, NeighbourState};

use crate::error::{KernelError, Result};
use crate::netlink::RouteSocket;

impl RouteSocket {
    /// Every neighbour entry with a link-layer address: (IP, MAC).
    pub fn neighbours(&mut self) -> Result<Vec<(std::net::IpAddr, nicslice_model::MacAddr)>> {
        use netlink_packet_route::neighbour::{NeighbourAddress, NeighbourAttribute};
        let entries = self.dump(
            "list neighbours",
            RouteNetlinkMessage::GetNeighbour(NeighbourMessage::default()),
        )?;
        let mut out = Vec::new();
        for entry in entries {
            let RouteNetlinkMessage::NewNeighbour(msg) = entry else { continue };
            let mut ip = None;
            let mut mac = None;
            for a in msg.attributes {
                match a {
                    NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => {
                        ip = Some(v4.into())
                    }
                    NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => {
                        ip = Some(v6.into())
                    }
                    NeighbourAttribute::LinkLayerAddress(l) if l.len() == 6 => {
                        mac = Some(nicslice_model::MacAddr([l[0], l[1], l[2], l[3], l[4], l[5]]))
                    }
                    _ => {}
                }
            }
            if let (Some(ip), Some(mac)) = (ip, mac) {
                out.push((ip, mac));
            }
        }
        Ok(out)
    }

    /// Deletes every dynamic neighbour entry (both families) of the
    /// namespace. Permanent and no-ARP entries (set by hand or by the kernel
    /// for loopback and multicast) stay.
    pub fn flush_neighbours(&mut self) -> Result<()> {
        let entries = self.dump(
            "list neighbours",
            RouteNetlinkMessage::GetNeighbour(NeighbourMessage::default()),
        )?;
        for entry in entries {
            let RouteNetlinkMessage::NewNeighbour(msg) = entry else { continue };
            if matches!(msg.header.state, NeighbourState::Permanent | NeighbourState::Noarp) {
                continue;
            }
            let mut del = NeighbourMessage::default();
            del.header = msg.header.clone();
            del.attributes = msg
                .attributes
                .into_iter()
                .filter(|a| {
                    matches!(a, netlink_packet_route::neighbour::NeighbourAttribute::Destination(_))
                })
                .collect();
            match self.execute("delete neighbour", RouteNetlinkMessage::DelNeighbour(del), 0) {
                Ok(()) => {}
                // Gone meanwhile (expired, or its interface went away).
                Err(KernelError::Netlink { errno, .. })
                    if errno == libc::ENOENT || errno == libc::ENODEV => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
