//! The DHCPv4 exchange of one endpoint (RFC 2131): DISCOVER, OFFER, REQUEST,
//! ACK, retransmitted with doubling intervals until a deadline, and RELEASE.
//! Every message carries the endpoint's own client identifier and asks for a
//! broadcast answer, so children that share a MAC (ipvlan, seed 001) are told
//! apart and a child without an address hears the answer.
//!
//! It speaks through a [`DhcpSocket`] the caller opened in the endpoint's
//! namespace, and only speaks: addresses, routes and records are the caller's.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use dhcproto::v4::{DhcpOption, Flags, HType, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable};
use ipnet::Ipv4Net;
use nicslice_kernel::DhcpSocket;
use nicslice_model::MacAddr;

use crate::error::{EngineError, Result};

/// What one exchange is about.
pub struct Exchange<'a> {
    pub socket: &'a DhcpSocket,
    /// The link's MAC (an ipvlan child's is its parent's).
    pub mac: MacAddr,
    pub client_id: &'a [u8],
    /// The address this client held last, asked for again.
    pub previous: Option<Ipv4Addr>,
    /// For messages: the interface and namespace.
    pub label: &'a str,
}

/// A lease as the server's ACK granted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Granted {
    pub address: Ipv4Net,
    pub server: Ipv4Addr,
    pub routers: Vec<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub domain: Option<String>,
    pub lease_secs: u32,
    pub renew_secs: u32,
    pub rebind_secs: u32,
}

/// First retransmission after 1 s, then 2 s, 4 s... (RFC 2131 4.1 says 4 s
/// first; a one-shot CLI waiting on a LAN has no reason to wait that long).
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(16);

/// A client message of `kind` from `mac` under `client_id`, asking for a
/// broadcast answer and for what nicslice uses of the server's options.
fn client_message(kind: MessageType, xid: u32, mac: MacAddr, client_id: &[u8]) -> Message {
    let mut msg = Message::new_with_id(
        xid,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &mac.0,
    );
    msg.set_opcode(Opcode::BootRequest).set_htype(HType::Eth);
    msg.set_flags(Flags::default().set_broadcast());
    let opts = msg.opts_mut();
    opts.insert(DhcpOption::MessageType(kind));
    opts.insert(DhcpOption::ClientIdentifier(client_id.to_vec()));
    opts.insert(DhcpOption::ParameterRequestList(vec![
        OptionCode::SubnetMask,
        OptionCode::Router,
        OptionCode::DomainNameServer,
        OptionCode::DomainName,
        OptionCode::AddressLeaseTime,
        OptionCode::Renewal,
        OptionCode::Rebinding,
    ]));
    msg
}

/// An answer to this client: its transaction, its hardware address and,
/// when the server echoes one, its client identifier (children sharing a
/// MAC, ipvlan's, hear each other's broadcast answers).
fn is_answer_to(reply: &Message, xid: u32, mac: MacAddr, client_id: &[u8]) -> bool {
    let echoed = match reply.opts().get(OptionCode::ClientIdentifier) {
        Some(DhcpOption::ClientIdentifier(id)) => id.as_slice() == client_id,
        _ => true,
    };
    reply.opcode() == Opcode::BootReply
        && reply.xid() == xid
        && reply.chaddr().get(..6) == Some(&mac.0[..])
        && echoed
}

impl Exchange<'_> {
    fn message(&self, kind: MessageType, xid: u32) -> Message {
        client_message(kind, xid, self.mac, self.client_id)
    }

    /// Sends `msg` (to `to`, or broadcast) until an answer of this exchange
    /// arrives that `accept` takes, or `deadline` passes.
    fn transact<T>(
        &self,
        msg: &Message,
        to: Option<Ipv4Addr>,
        deadline: Instant,
        mut accept: impl FnMut(&Message) -> Option<T>,
    ) -> Result<Option<T>> {
        let bytes = msg.to_vec().map_err(|e| {
            EngineError::Invalid(format!("encoding a DHCP message for {}: {e}", self.label))
        })?;
        let mut buf = vec![0u8; 1500];
        let mut interval = FIRST_RETRY;
        while Instant::now() < deadline {
            match to {
                Some(server) => self.socket.send_to(&bytes, server)?,
                None => self.socket.broadcast(&bytes)?,
            }
            let wait_until = (Instant::now() + interval).min(deadline);
            while let Some(n) = self.socket.receive(&mut buf, wait_until)? {
                let Ok(reply) = Message::decode(&mut Decoder::new(&buf[..n])) else { continue };
                if is_answer_to(&reply, msg.xid(), self.mac, self.client_id)
                    && let Some(found) = accept(&reply)
                {
                    return Ok(Some(found));
                }
            }
            interval = (interval * 2).min(MAX_RETRY);
        }
        Ok(None)
    }

    /// DISCOVER to ACK, within `timeout`. A NAK (the server will not give
    /// the address it offered, or the one asked for) starts again without
    /// asking for a particular address, as RFC 2131 3.1 says, for as long as
    /// the deadline allows: clients attaching at once are offered one free
    /// address before any of them has it (a server offers and forgets), so
    /// all but one are refused at REQUEST, and under contention a client can
    /// lose that race more than once. A short pause of its own after each
    /// NAK keeps the losers from meeting again on the next offer.
    pub fn acquire(&self, timeout: Duration) -> Result<Granted> {
        let deadline = Instant::now() + timeout;
        let mut previous = self.previous;
        let mut refused: Option<(Ipv4Addr, Ipv4Addr, u32)> = None;
        loop {
            let xid: u32 = rand_xid();
            let mut discover = self.message(MessageType::Discover, xid);
            if let Some(ip) = previous {
                discover.opts_mut().insert(DhcpOption::RequestedIpAddress(ip));
            }
            let offer = self.transact(&discover, None, deadline, |m| {
                // An offer must name its server (RFC 2131 table 3): the
                // REQUEST selects it by that identifier.
                let server = server_of(m)?;
                (m.opts().msg_type() == Some(MessageType::Offer) && !m.yiaddr().is_unspecified())
                    .then_some((m.yiaddr(), server))
            })?;
            let Some((offered, server)) = offer else {
                return Err(match refused {
                    Some(nak) => self.refused(nak, timeout),
                    None => self.no_answer(timeout, "DISCOVER"),
                });
            };
            let mut request = self.message(MessageType::Request, xid);
            request.opts_mut().insert(DhcpOption::RequestedIpAddress(offered));
            request.opts_mut().insert(DhcpOption::ServerIdentifier(server));
            let answer =
                self.transact(&request, None, deadline, |m| match m.opts().msg_type() {
                    Some(MessageType::Ack) if m.yiaddr() == offered => Some(Ok(m.clone())),
                    Some(MessageType::Nak) if server_of(m).is_none_or(|s| s == server) => {
                        Some(Err(()))
                    }
                    _ => None,
                })?;
            match answer {
                Some(Ok(ack)) => return granted(&ack, server, self.label),
                Some(Err(())) => {
                    let times = refused.map_or(1, |(_, _, n)| n + 1);
                    refused = Some((server, offered, times));
                    tracing::debug!(label = self.label, %offered, times, "DHCPNAK; asking again");
                    previous = None;
                    let pause = Duration::from_millis(50 + u64::from(rand_xid() % 250));
                    if Instant::now() + pause >= deadline {
                        return Err(self.refused((server, offered, times), timeout));
                    }
                    std::thread::sleep(pause);
                }
                None => return Err(self.no_answer(timeout, "REQUEST")),
            }
        }
    }

    /// The error of an exchange whose last answer was a NAK.
    fn refused(
        &self,
        (server, offered, times): (Ipv4Addr, Ipv4Addr, u32),
        timeout: Duration,
    ) -> EngineError {
        EngineError::Refused(format!(
            "DHCP server {server} refused {offered} to {} (DHCPNAK, {times} time(s) within {} s); \
             the server's range may be full, or another client holds that address",
            self.label,
            timeout.as_secs_f32()
        ))
    }

    /// Extends a held lease (RFC 2131 4.4.5): REQUEST from the address,
    /// unicast to `server` while renewing, broadcast once rebinding.
    /// `Ok(None)`: the server said NAK (or gave another address), and the
    /// address must go; an error: nobody answered within `timeout`.
    pub fn extend(
        &self,
        address: Ipv4Net,
        server: Option<Ipv4Addr>,
        timeout: Duration,
    ) -> Result<Option<Granted>> {
        let mut request = self.message(MessageType::Request, rand_xid());
        // We have an address: the answer can come unicast.
        request.set_flags(Flags::default());
        request.set_ciaddr(address.addr());
        let deadline = Instant::now() + timeout;
        let answer = self.transact(&request, server, deadline, |m| match m.opts().msg_type() {
            Some(MessageType::Ack) => Some(Some(m.clone())),
            Some(MessageType::Nak) => Some(None),
            _ => None,
        })?;
        match answer {
            Some(Some(ack)) if ack.yiaddr() == address.addr() || ack.yiaddr().is_unspecified() => {
                let from = server_of(&ack).or(server).unwrap_or(Ipv4Addr::UNSPECIFIED);
                let mut g = granted(&ack, from, self.label)?;
                // An ACK to a RENEW may leave yiaddr empty (some servers).
                g.address = address;
                Ok(Some(g))
            }
            Some(_) => Ok(None),
            None => Err(self.no_answer(timeout, "REQUEST (renewal)")),
        }
    }

    fn no_answer(&self, timeout: Duration, what: &str) -> EngineError {
        EngineError::Refused(format!(
            "no DHCP server answered {what} from {} within {} s; check that a DHCP server \
             serves the parent's link (or raise --dhcp-timeout)",
            self.label,
            timeout.as_secs_f32()
        ))
    }

    /// Gives the lease of `address` back to `server`, and waits (at most
    /// `limit`) until the message has left the host: the caller deletes the
    /// link next, which would drop a message still waiting for the server's
    /// ARP answer. `unicast` when the address is on the link (RFC 2131 sends
    /// RELEASE to the server from it); otherwise, and when a unicast does
    /// not leave in time, broadcast: a unicast from 0.0.0.0 is a martian the
    /// server's kernel drops. False if it could not be sent.
    pub fn release(
        &self,
        address: Ipv4Addr,
        server: Ipv4Addr,
        limit: Duration,
        unicast: bool,
    ) -> bool {
        let mut msg = self.message(MessageType::Release, rand_xid());
        msg.set_flags(Flags::default());
        msg.set_ciaddr(address);
        msg.opts_mut().remove(OptionCode::ParameterRequestList);
        msg.opts_mut().insert(DhcpOption::ServerIdentifier(server));
        let Ok(bytes) = msg.to_vec() else { return false };
        let sent = unicast
            && match self.socket.send_to(&bytes, server) {
                Ok(()) => self.socket.flushed(limit),
                Err(e) => {
                    tracing::debug!("DHCPRELEASE to {server} from {}: {e}", self.label);
                    false
                }
            };
        // Its server identifier tells the server a broadcast is meant for it.
        sent || (self.socket.broadcast(&bytes).is_ok() && self.socket.flushed(limit))
    }
}

fn server_of(m: &Message) -> Option<Ipv4Addr> {
    match m.opts().get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(ip)) => Some(*ip),
        _ => None,
    }
}

fn rand_xid() -> u32 {
    // Only needs to differ between clients and tries: the clock's low bits
    // and the process id are enough (no random source needed).
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    nanos ^ std::process::id().rotate_left(16)
}

/// The lease an ACK grants.
fn granted(ack: &Message, server: Ipv4Addr, label: &str) -> Result<Granted> {
    let opts = ack.opts();
    let mut lease_secs = None;
    let mut renew = None;
    let mut rebind = None;
    let mut mask = None;
    let mut routers = Vec::new();
    let mut dns = Vec::new();
    let mut domain = None;
    for (_, opt) in opts.iter() {
        match opt {
            DhcpOption::AddressLeaseTime(s) => lease_secs = Some(*s),
            DhcpOption::Renewal(s) => renew = Some(*s),
            DhcpOption::Rebinding(s) => rebind = Some(*s),
            DhcpOption::SubnetMask(m) => mask = Some(*m),
            DhcpOption::Router(r) => routers.clone_from(r),
            DhcpOption::DomainNameServer(d) => dns.clone_from(d),
            DhcpOption::DomainName(d) => domain = Some(d.clone()),
            _ => {}
        }
    }
    let Some(lease_secs) = lease_secs else {
        return Err(EngineError::Refused(format!(
            "DHCP server {server} sent {label} an ACK without a lease time; not using it"
        )));
    };
    let prefix = match mask {
        Some(m) => u32::from(m).leading_ones() as u8,
        None => {
            tracing::warn!("DHCP server {server} sent no subnet mask; assuming /24");
            24
        }
    };
    let address = Ipv4Net::new(ack.yiaddr(), prefix)
        .map_err(|_| EngineError::Refused(format!("DHCP server {server}: bad subnet mask")))?;
    // RFC 2131 4.4.5: T1 at half the lease, T2 at seven eighths.
    let renew_secs = renew.unwrap_or(lease_secs / 2);
    let rebind_secs = rebind.unwrap_or(lease_secs / 8 * 7);
    Ok(Granted { address, server, routers, dns, domain, lease_secs, renew_secs, rebind_secs })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(opts: Vec<DhcpOption>) -> Message {
        let mut m = Message::new_with_id(
            7,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::new(192, 168, 0, 50),
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            &[2, 0, 0, 0, 0, 1],
        );
        m.set_opcode(Opcode::BootReply);
        m.opts_mut().insert(DhcpOption::MessageType(MessageType::Ack));
        for o in opts {
            m.opts_mut().insert(o);
        }
        // Through the wire format and back, as a real answer arrives.
        let bytes = m.to_vec().unwrap();
        Message::decode(&mut Decoder::new(&bytes)).unwrap()
    }

    #[test]
    fn an_ack_gives_address_prefix_routes_dns_and_default_timers() {
        let server = Ipv4Addr::new(192, 168, 0, 1);
        let m = ack(vec![
            DhcpOption::AddressLeaseTime(3600),
            DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)),
            DhcpOption::Router(vec![server]),
            DhcpOption::DomainNameServer(vec![Ipv4Addr::new(192, 168, 0, 53)]),
        ]);
        let g = granted(&m, server, "eth0").unwrap();
        assert_eq!(g.address.to_string(), "192.168.0.50/24");
        assert_eq!(g.routers, vec![server]);
        assert_eq!(g.dns, vec![Ipv4Addr::new(192, 168, 0, 53)]);
        assert_eq!((g.lease_secs, g.renew_secs, g.rebind_secs), (3600, 1800, 3150));
    }

    #[test]
    fn an_ack_without_lease_time_is_refused() {
        let server = Ipv4Addr::new(192, 168, 0, 1);
        let err = granted(&ack(vec![]), server, "eth0").unwrap_err().to_string();
        assert!(err.contains("without a lease time"), "{err}");
    }

    const MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);

    fn wire(m: &Message) -> Message {
        Message::decode(&mut Decoder::new(&m.to_vec().unwrap())).unwrap()
    }

    #[test]
    fn a_discover_carries_its_client_id_and_asks_for_broadcast() {
        let id = [255, 1, 2, 3, 4, 0, 4];
        let m = wire(&client_message(MessageType::Discover, 9, MAC, &id));
        assert!(m.flags().broadcast(), "a child without an address cannot take unicast");
        assert_eq!(m.opcode(), Opcode::BootRequest);
        assert_eq!(&m.chaddr()[..6], &MAC.0);
        assert_eq!(m.opts().msg_type(), Some(MessageType::Discover));
        assert_eq!(
            m.opts().get(OptionCode::ClientIdentifier),
            Some(&DhcpOption::ClientIdentifier(id.to_vec()))
        );
        assert!(m.opts().contains(OptionCode::ParameterRequestList));
    }

    #[test]
    fn a_sibling_answer_with_the_same_mac_is_not_ours() {
        // Seed 001: ipvlan children share a MAC and hear each other's
        // broadcast answers; only the client identifier tells them apart.
        let answer = |xid, id: &[u8]| {
            let mut m = client_message(MessageType::Offer, xid, MAC, id);
            m.set_opcode(Opcode::BootReply);
            wire(&m)
        };
        assert!(is_answer_to(&answer(9, b"\0me"), 9, MAC, b"\0me"));
        assert!(!is_answer_to(&answer(9, b"\0sibling"), 9, MAC, b"\0me"));
        assert!(!is_answer_to(&answer(8, b"\0me"), 9, MAC, b"\0me"), "another transaction");
        let other_mac = MacAddr([2, 0, 0, 0, 0, 2]);
        assert!(!is_answer_to(&answer(9, b"\0me"), 9, other_mac, b"\0me"));
        let request = wire(&client_message(MessageType::Discover, 9, MAC, b"\0me"));
        assert!(!is_answer_to(&request, 9, MAC, b"\0me"), "our own broadcast comes back");
    }
}
