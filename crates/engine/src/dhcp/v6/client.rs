//! The DHCPv6 exchange of one endpoint for one IA_NA (RFC 8415): SOLICIT,
//! ADVERTISE, REQUEST, REPLY, RENEW and REBIND at T1 and T2, RELEASE and
//! DECLINE; each retransmitted with doubling intervals until a deadline.
//! No Rapid Commit: with it every server on the link that does it commits
//! an address to the client, and all but the one used stay bound until
//! their leases end; the two messages it saves take a millisecond on a LAN.
//! Every message carries the host's DUID and the endpoint's own IAID, which
//! is what tells children apart: they all present one DUID.
//!
//! It speaks through a [`Dhcp6Socket`] the caller opened in the endpoint's
//! namespace, and only speaks: addresses, routes and records are the caller's.

use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

use dhcproto::v6::{
    DhcpOption, DhcpOptions, IAAddr, IANA, Message, MessageType, ORO, OptionCode, Status,
};
use dhcproto::{Decodable, Decoder, Encodable};
use nicslice_kernel::Dhcp6Socket;

use crate::error::{EngineError, Result};

/// What one exchange is about.
pub struct Exchange6<'a> {
    pub socket: &'a Dhcp6Socket,
    /// The host's DUID (the Client Identifier option).
    pub duid: &'a [u8],
    /// The endpoint's identity association.
    pub iaid: u32,
    /// For messages: the interface and namespace.
    pub label: &'a str,
}

/// An address as the server's REPLY granted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Granted6 {
    pub address: Ipv6Addr,
    /// Where the REPLY came from (the server's link-local address).
    pub server: Ipv6Addr,
    /// The server's DUID, which RENEW and RELEASE name.
    pub server_id: Vec<u8>,
    pub dns: Vec<Ipv6Addr>,
    pub valid_secs: u32,
    pub preferred_secs: u32,
    pub renew_secs: u32,
    pub rebind_secs: u32,
}

/// What a REPLY to a RENEW or REBIND says of the address.
#[derive(Debug)]
pub enum Extended {
    Kept(Granted6),
    /// The server no longer binds it (NoBinding, a zero lifetime, another
    /// address): it must go.
    Gone(String),
}

/// SOL_TIMEOUT / REQ_TIMEOUT of RFC 8415 7.6 is 1 s; the cap is ours (a
/// one-shot CLI waits seconds, not SOL_MAX_RT's hour).
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(16);

fn options_of(m: &Message) -> impl Iterator<Item = &DhcpOption> {
    m.opts().iter()
}

fn status_of(opts: &DhcpOptions) -> Option<(Status, &str)> {
    opts.iter().find_map(|o| match o {
        DhcpOption::StatusCode(s) => Some((s.status, s.msg.as_str())),
        _ => None,
    })
}

fn server_id_of(m: &Message) -> Option<&[u8]> {
    options_of(m).find_map(|o| match o {
        DhcpOption::ServerId(id) => Some(id.as_slice()),
        _ => None,
    })
}

/// The IA_NA `iaid` of a server message.
fn ia_of(m: &Message, iaid: u32) -> Option<&IANA> {
    options_of(m).find_map(|o| match o {
        DhcpOption::IANA(ia) if ia.id == iaid => Some(ia),
        _ => None,
    })
}

/// The first address of an IA with a non-zero valid lifetime.
fn address_of(ia: &IANA) -> Option<&IAAddr> {
    ia.opts.iter().find_map(|o| match o {
        DhcpOption::IAAddr(a) if a.valid_life > 0 => Some(a),
        _ => None,
    })
}

/// An answer to this client: its transaction and its DUID echoed.
fn is_answer_to(m: &Message, xid: [u8; 3], duid: &[u8]) -> bool {
    let ours = options_of(m).any(|o| matches!(o, DhcpOption::ClientId(id) if id == duid));
    matches!(m.msg_type(), MessageType::Advertise | MessageType::Reply) && m.xid() == xid && ours
}

/// A REPLY (or ADVERTISE) that hands `iaid` an address, read into a lease.
fn granted(m: &Message, iaid: u32, from: Ipv6Addr) -> Option<Granted6> {
    if status_of(m.opts()).is_some_and(|(s, _)| s != Status::Success) {
        return None;
    }
    let ia = ia_of(m, iaid)?;
    if status_of(&ia.opts).is_some_and(|(s, _)| s != Status::Success) {
        return None;
    }
    let addr = address_of(ia)?;
    let dns = options_of(m)
        .find_map(|o| match o {
            DhcpOption::DomainNameServers(d) => Some(d.clone()),
            _ => None,
        })
        .unwrap_or_default();
    Some(Granted6 {
        address: addr.addr,
        server: from,
        server_id: server_id_of(m)?.to_vec(),
        dns,
        valid_secs: addr.valid_life,
        preferred_secs: addr.preferred_life.min(addr.valid_life),
        renew_secs: 0,
        rebind_secs: 0,
    })
    .map(|g| with_timers(g, ia.t1, ia.t2))
}

/// T1 and T2 as the server gave them, or (zero: "client's choice", RFC 8415
/// 21.4) half and four fifths of the preferred lifetime; never past the
/// valid lifetime, T1 never past T2.
fn with_timers(mut g: Granted6, t1: u32, t2: u32) -> Granted6 {
    let base = if g.preferred_secs == u32::MAX { g.valid_secs } else { g.preferred_secs };
    let t2 = if t2 == 0 || t2 == u32::MAX { base / 5 * 4 } else { t2 };
    let t1 = if t1 == 0 || t1 == u32::MAX { base / 2 } else { t1 };
    g.rebind_secs = t2.min(g.valid_secs);
    g.renew_secs = t1.min(g.rebind_secs);
    g
}

/// A client message of `kind` for IA `iaid` (with `address` in it, if any).
fn client_message(
    kind: MessageType,
    xid: [u8; 3],
    duid: &[u8],
    iaid: u32,
    address: Option<Ipv6Addr>,
) -> Message {
    let mut msg = Message::new_with_id(kind, xid);
    let opts = msg.opts_mut();
    opts.insert(DhcpOption::ClientId(duid.to_vec()));
    let mut ia_opts = DhcpOptions::new();
    if let Some(addr) = address {
        ia_opts.insert(DhcpOption::IAAddr(IAAddr {
            addr,
            preferred_life: 0,
            valid_life: 0,
            opts: DhcpOptions::new(),
        }));
    }
    opts.insert(DhcpOption::IANA(IANA { id: iaid, t1: 0, t2: 0, opts: ia_opts }));
    if !matches!(kind, MessageType::Release | MessageType::Decline) {
        opts.insert(DhcpOption::ORO(ORO { opts: vec![OptionCode::DomainNameServers] }));
    }
    msg
}

fn new_xid() -> [u8; 3] {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mixed = nanos ^ std::process::id().rotate_left(11);
    let b = mixed.to_be_bytes();
    [b[1], b[2], b[3]]
}

impl Exchange6<'_> {
    /// Sends `msg` until an answer of this exchange arrives that `accept`
    /// takes, or `deadline` passes; the Elapsed Time option counts along.
    fn transact<T>(
        &self,
        msg: &mut Message,
        deadline: Instant,
        mut accept: impl FnMut(&Message, Ipv6Addr) -> Option<T>,
    ) -> Result<Option<T>> {
        let started = Instant::now();
        let mut buf = vec![0u8; 1500];
        let mut interval = FIRST_RETRY;
        while Instant::now() < deadline {
            // Hundredths of a second since the first try (RFC 8415 21.9).
            let elapsed = u16::try_from(started.elapsed().as_millis() / 10).unwrap_or(u16::MAX);
            msg.opts_mut().remove(OptionCode::ElapsedTime);
            msg.opts_mut().insert(DhcpOption::ElapsedTime(elapsed));
            let bytes = msg.to_vec().map_err(|e| {
                EngineError::Invalid(format!("encoding a DHCPv6 message for {}: {e}", self.label))
            })?;
            self.socket.send_to_servers(&bytes)?;
            let wait_until = (Instant::now() + interval).min(deadline);
            while let Some((n, from)) = self.socket.receive(&mut buf, wait_until)? {
                let Ok(reply) = Message::decode(&mut Decoder::new(&buf[..n])) else { continue };
                if is_answer_to(&reply, msg.xid(), self.duid)
                    && let Some(found) = accept(&reply, from)
                {
                    return Ok(Some(found));
                }
            }
            interval = (interval * 2).min(MAX_RETRY);
        }
        Ok(None)
    }

    /// SOLICIT to REPLY within `timeout`, asking for `previous` again when
    /// there is one (a hint: the server decides).
    pub fn acquire(&self, previous: Option<Ipv6Addr>, timeout: Duration) -> Result<Granted6> {
        let deadline = Instant::now() + timeout;
        let iaid = self.iaid;
        let mut solicit =
            client_message(MessageType::Solicit, new_xid(), self.duid, iaid, previous);
        // The first usable ADVERTISE is taken (RFC 8415 18.2.1 lets a client
        // wait for a better one; on a LAN there is one server).
        let advertised = self.transact(&mut solicit, deadline, |m, from| {
            (m.msg_type() == MessageType::Advertise).then(|| granted(m, iaid, from)).flatten()
        })?;
        let Some(offered) = advertised else {
            return Err(self.no_answer(timeout, "SOLICIT"));
        };
        tracing::debug!(address = %offered.address, server = %offered.server, "DHCPv6 ADVERTISE");
        let mut request =
            client_message(MessageType::Request, new_xid(), self.duid, iaid, Some(offered.address));
        request.opts_mut().insert(DhcpOption::ServerId(offered.server_id.clone()));
        let reply = self.transact(&mut request, deadline, |m, from| {
            (m.msg_type() == MessageType::Reply && server_id_of(m) == Some(&offered.server_id))
                .then(|| granted(m, iaid, from).ok_or_else(|| refusal(m, iaid)))
        })?;
        match reply {
            Some(Ok(g)) => Ok(g),
            Some(Err(why)) => Err(EngineError::Refused(format!(
                "DHCPv6 server {} refused {} to {} ({why})",
                offered.server, offered.address, self.label
            ))),
            None => Err(self.no_answer(timeout, "REQUEST")),
        }
    }

    /// RENEW with the server that gave `address` (`server_id`), or REBIND
    /// with any server (`None`), within `timeout`. An error: nobody answered.
    pub fn extend(
        &self,
        address: Ipv6Addr,
        server_id: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<Extended> {
        let kind = if server_id.is_some() { MessageType::Renew } else { MessageType::Rebind };
        let iaid = self.iaid;
        let mut msg = client_message(kind, new_xid(), self.duid, iaid, Some(address));
        if let Some(id) = server_id {
            msg.opts_mut().insert(DhcpOption::ServerId(id.to_vec()));
        }
        let deadline = Instant::now() + timeout;
        let reply = self.transact(&mut msg, deadline, |m, from| {
            (m.msg_type() == MessageType::Reply).then(|| match granted(m, iaid, from) {
                Some(g) if g.address == address => Extended::Kept(g),
                Some(g) => Extended::Gone(format!("the server moved it to {}", g.address)),
                None => Extended::Gone(refusal(m, iaid)),
            })
        })?;
        reply.ok_or_else(|| {
            self.no_answer(timeout, if server_id.is_some() { "RENEW" } else { "REBIND" })
        })
    }

    /// Gives `address` back to the server `server_id` names, waiting at most
    /// `limit` for its REPLY (RFC 8415 18.2.7; the server acts on the
    /// RELEASE either way). False if it could not be sent.
    pub fn release(&self, address: Ipv6Addr, server_id: &[u8], limit: Duration) -> bool {
        self.give_back(MessageType::Release, address, server_id, limit)
    }

    /// Tells the server that `address` is in use by another host on the link
    /// (RFC 8415 18.2.8), so it hands it to nobody for a while; waits at
    /// most `limit` for its REPLY, as [`release`](Self::release).
    pub fn decline(&self, address: Ipv6Addr, server_id: &[u8], limit: Duration) -> bool {
        self.give_back(MessageType::Decline, address, server_id, limit)
    }

    fn give_back(
        &self,
        kind: MessageType,
        address: Ipv6Addr,
        server_id: &[u8],
        limit: Duration,
    ) -> bool {
        let mut msg = client_message(kind, new_xid(), self.duid, self.iaid, Some(address));
        msg.opts_mut().insert(DhcpOption::ServerId(server_id.to_vec()));
        let deadline = Instant::now() + limit;
        let replied = |m: &Message, _| (m.msg_type() == MessageType::Reply).then_some(());
        match self.transact(&mut msg, deadline, replied) {
            Ok(Some(())) => true,
            // Sent, unanswered: it has left the host at least.
            Ok(None) => self.socket.flushed(Duration::from_millis(100)),
            Err(e) => {
                tracing::debug!("DHCPv6 {kind:?} of {address} from {}: {e}", self.label);
                false
            }
        }
    }

    fn no_answer(&self, timeout: Duration, what: &str) -> EngineError {
        EngineError::Refused(format!(
            "no DHCPv6 server answered {what} from {} within {} s; check that a DHCPv6 server \
             serves the parent's link (or raise --dhcp-timeout)",
            self.label,
            timeout.as_secs_f32()
        ))
    }
}

/// Why a server message gives IA `iaid` no address, as its status says.
fn refusal(m: &Message, iaid: u32) -> String {
    let status = status_of(m.opts()).or_else(|| ia_of(m, iaid).and_then(|ia| status_of(&ia.opts)));
    match status {
        Some((status, "")) => format!("{status:?}"),
        Some((status, text)) => format!("{status:?}: {text}"),
        None => "no address in its answer".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dhcproto::v6::StatusCode;

    const DUID: &[u8] = &[0, 4, 1, 2, 3, 4];

    fn wire(m: &Message) -> Message {
        Message::decode(&mut Decoder::new(&m.to_vec().unwrap())).unwrap()
    }

    fn reply(kind: MessageType, xid: [u8; 3], iaid: u32, ia_opts: Vec<DhcpOption>) -> Message {
        let mut m = Message::new_with_id(kind, xid);
        m.opts_mut().insert(DhcpOption::ClientId(DUID.to_vec()));
        m.opts_mut().insert(DhcpOption::ServerId(vec![0, 3, 9, 9]));
        let mut opts = DhcpOptions::new();
        for o in ia_opts {
            opts.insert(o);
        }
        m.opts_mut().insert(DhcpOption::IANA(IANA { id: iaid, t1: 0, t2: 0, opts }));
        wire(&m)
    }

    fn iaaddr(addr: &str, preferred: u32, valid: u32) -> DhcpOption {
        DhcpOption::IAAddr(IAAddr {
            addr: addr.parse().unwrap(),
            preferred_life: preferred,
            valid_life: valid,
            opts: DhcpOptions::new(),
        })
    }

    #[test]
    fn a_solicit_names_the_host_and_the_endpoints_ia() {
        let m = wire(&client_message(MessageType::Solicit, [1, 2, 3], DUID, 77, None));
        assert_eq!(m.msg_type(), MessageType::Solicit);
        assert!(options_of(&m).any(|o| matches!(o, DhcpOption::ClientId(id) if id == DUID)));
        assert!(ia_of(&m, 77).is_some(), "the IAID tells children sharing a DUID apart");
        assert!(options_of(&m).all(|o| !matches!(o, DhcpOption::ServerId(_))));
    }

    #[test]
    fn a_reply_grants_its_address_with_default_timers() {
        let from: Ipv6Addr = "fe80::1".parse().unwrap();
        let m = reply(MessageType::Reply, [1, 2, 3], 77, vec![iaaddr("fd00::10", 100, 120)]);
        assert!(is_answer_to(&m, [1, 2, 3], DUID));
        assert!(!is_answer_to(&m, [1, 2, 4], DUID), "another transaction");
        let g = granted(&m, 77, from).unwrap();
        assert_eq!(g.address, "fd00::10".parse::<Ipv6Addr>().unwrap());
        assert_eq!(
            (g.valid_secs, g.preferred_secs, g.renew_secs, g.rebind_secs),
            (120, 100, 50, 80)
        );
        assert_eq!(g.server_id, vec![0, 3, 9, 9]);
        assert!(granted(&m, 78, from).is_none(), "a sibling's IA is not ours");
    }

    #[test]
    fn no_address_or_a_failed_status_grants_nothing() {
        let from: Ipv6Addr = "fe80::1".parse().unwrap();
        let status = DhcpOption::StatusCode(StatusCode {
            status: Status::NoAddrsAvail,
            msg: "none left".into(),
        });
        let m = reply(MessageType::Advertise, [1, 2, 3], 77, vec![status]);
        assert!(granted(&m, 77, from).is_none());
        assert_eq!(refusal(&m, 77), "NoAddrsAvail: none left");
        let zero = reply(MessageType::Reply, [1, 2, 3], 77, vec![iaaddr("fd00::10", 0, 0)]);
        assert!(granted(&zero, 77, from).is_none(), "a zero lifetime takes it back");
    }
}
