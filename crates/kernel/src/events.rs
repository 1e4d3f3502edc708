//! Link and address events of one namespace as the kernel multicasts them
//! (rtnetlink's link and address groups, `ip monitor link address`): a
//! socket that sleeps in the kernel until an interface appears, changes or
//! goes, or an address is added or removed. No polling. The socket also
//! hears the namespaces this one has an id for (`ip monitor all-nsid`, see
//! [`RouteSocket::nsid_of`]): their links' changes and deletions, their
//! addresses, and their own end (`RTM_DELNSID`), without holding them alive
//! as a socket inside would.

use std::os::fd::AsRawFd;
use std::time::Duration;

use ipnet::IpNet;
use netlink_packet_core::{NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP, NLMSG_OVERRUN, NetlinkBuffer};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::nsid::{NsidAttribute, NsidMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use crate::addr::{address_of, is_permanent};
use crate::error::{KernelError, Result};
use crate::link::Link;
use crate::netlink::RouteSocket;
use crate::netlink::decode;
use crate::netns::Netns;

/// rtnetlink's multicast groups of link changes (`RTMGRP_LINK`) and of
/// IPv4 and IPv6 addresses (`RTMGRP_IPV4_IFADDR`, `RTMGRP_IPV6_IFADDR`).
const RTMGRP_LINK: u32 = 1;
const RTMGRP_IPV4_IFADDR: u32 = 0x10;
const RTMGRP_IPV6_IFADDR: u32 = 0x100;
/// `NETLINK_LISTEN_ALL_NSID`, a `SOL_NETLINK` option, and the control
/// message that carries the id of the namespace a notification comes from.
const NETLINK_LISTEN_ALL_NSID: libc::c_int = 8;

/// One change of one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// Created or changed: the link as it is now.
    New(Link),
    /// Deleted: the link as it was.
    Del(Link),
    /// Created or changed in the namespace this one knows by `nsid`.
    PeerNew { nsid: i32, link: Link },
    /// Deleted in the namespace this one knows by `nsid`.
    PeerDel { nsid: i32, link: Link },
    /// An address added (`added`) to or removed from interface `index` of
    /// this namespace (`nsid` `None`) or of the one known by `nsid`;
    /// `permanent` unless it has a lifetime (SLAAC, privacy addresses, a
    /// DHCP client's): what `ip address add` makes.
    Address { nsid: Option<i32>, index: u32, addr: IpNet, added: bool, permanent: bool },
    /// The namespace this one knew by `nsid` has ended (its links with it).
    NamespaceGone(i32),
}

/// A subscription to a namespace's link events.
pub struct LinkEvents {
    socket: Socket,
    buf: Vec<u8>,
}

impl LinkEvents {
    /// Subscribes in `netns` (enter, open, return).
    pub fn open_in(netns: &Netns) -> Result<LinkEvents> {
        let _guard = netns.enter()?;
        let mut socket =
            Socket::new(NETLINK_ROUTE).map_err(|e| KernelError::io("open netlink socket", e))?;
        socket
            .bind(&SocketAddr::new(0, RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR))
            .map_err(|e| KernelError::io("subscribe to link and address events", e))?;
        socket
            .add_membership(libc::RTNLGRP_NSID)
            .map_err(|e| KernelError::io("subscribe to namespace id events", e))?;
        socket
            .set_listen_all_namespaces(true)
            .map_err(|e| KernelError::io("listen to every namespace with an id", e))?;
        Ok(LinkEvents { socket, buf: vec![0; 64 * 1024] })
    }

    /// The events of the next notification; waits at most `timeout` (`None`:
    /// for ever). An empty list when the time ran out.
    pub fn next(&mut self, timeout: Option<Duration>) -> Result<Vec<LinkEvent>> {
        let millis = timeout.map_or(-1, |t| i32::try_from(t.as_millis()).unwrap_or(i32::MAX));
        let mut pfd =
            libc::pollfd { fd: self.socket.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd, alive for the call.
        let ready = unsafe { libc::poll(&mut pfd, 1, millis) };
        if ready < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                return Ok(Vec::new());
            }
            return Err(KernelError::io("wait for link events", e));
        }
        if ready == 0 {
            return Ok(Vec::new());
        }
        let (n, nsid) = self.receive()?;
        let mut out = Vec::new();
        let mut offset = 0;
        while offset < n {
            let msg = NetlinkBuffer::new_checked(&self.buf[offset..n]).map_err(|e| {
                KernelError::Protocol { op: "read link events".into(), detail: e.to_string() }
            })?;
            let len = msg.length() as usize;
            if len == 0 {
                break;
            }
            offset += (len + 3) & !3;
            match msg.message_type() {
                NLMSG_ERROR | NLMSG_DONE | NLMSG_NOOP | NLMSG_OVERRUN => continue,
                t => match decode("read link events", t, msg.payload())? {
                    RouteNetlinkMessage::NewLink(l) => {
                        let link = Link::from_message(l);
                        out.push(match nsid {
                            None => LinkEvent::New(link),
                            Some(nsid) => LinkEvent::PeerNew { nsid, link },
                        })
                    }
                    RouteNetlinkMessage::NewAddress(m) | RouteNetlinkMessage::DelAddress(m) => {
                        let added = t == libc::RTM_NEWADDR;
                        let permanent = is_permanent(&m);
                        out.extend(address_of(&m).map(|(index, addr)| LinkEvent::Address {
                            nsid,
                            index,
                            addr,
                            added,
                            permanent,
                        }))
                    }
                    RouteNetlinkMessage::DelLink(l) => {
                        let link = Link::from_message(l);
                        out.push(match nsid {
                            None => LinkEvent::Del(link),
                            Some(nsid) => LinkEvent::PeerDel { nsid, link },
                        })
                    }
                    RouteNetlinkMessage::DelNsId(m) if nsid.is_none() => {
                        out.extend(m.attributes.iter().find_map(|a| match a {
                            NsidAttribute::Id(id) => Some(LinkEvent::NamespaceGone(*id)),
                            _ => None,
                        }))
                    }
                    _ => {}
                },
            }
        }
        Ok(out)
    }

    /// One datagram into `buf`: its length, and the id of the namespace it
    /// comes from (`None`: this socket's own).
    fn receive(&mut self) -> Result<(usize, Option<i32>)> {
        let mut control = [0u64; 8];
        let mut iov =
            libc::iovec { iov_base: self.buf.as_mut_ptr().cast(), iov_len: self.buf.len() };
        // SAFETY: msghdr is plain old data; zeroed is a valid value.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control);
        // SAFETY: `msg` points at `iov` (over `self.buf`) and `control`, all
        // alive and of the lengths given for the call.
        let n = unsafe { libc::recvmsg(self.socket.as_raw_fd(), &raw mut msg, 0) };
        if n < 0 {
            return Err(KernelError::io("receive link events", std::io::Error::last_os_error()));
        }
        let mut nsid = None;
        // SAFETY: the CMSG macros walk the control buffer the kernel filled,
        // within msg_controllen; the data of this type is one int.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&raw const msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_NETLINK && (*c).cmsg_type == NETLINK_LISTEN_ALL_NSID
                {
                    nsid = Some(std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<i32>()));
                }
                c = libc::CMSG_NXTHDR(&raw const msg, c);
            }
        }
        Ok((n as usize, nsid))
    }
}

impl RouteSocket {
    /// The id this socket's namespace has for `peer`, given one first if it
    /// has none (`ip netns set PEER auto`): what makes the peer's
    /// notifications reach a [`LinkEvents`] here. An id holds no reference:
    /// the peer still ends when its last user goes.
    pub fn nsid_of(&mut self, peer: &Netns) -> Result<i32> {
        let ask = |attrs: Vec<NsidAttribute>| {
            let mut m = NsidMessage::default();
            m.attributes = attrs;
            m
        };
        let fd = NsidAttribute::Fd(peer.as_raw_fd() as u32);
        for _ in 0..2 {
            let reply = self
                .get("get a namespace id", RouteNetlinkMessage::GetNsId(ask(vec![fd.clone()])))?;
            if let RouteNetlinkMessage::NewNsId(m) = reply
                && let Some(id) = m.attributes.iter().find_map(|a| match a {
                    NsidAttribute::Id(id) if *id >= 0 => Some(*id),
                    _ => None,
                })
            {
                return Ok(id);
            }
            let assign = RouteNetlinkMessage::NewNsId(ask(vec![fd.clone(), NsidAttribute::Id(-1)]));
            match self.execute("give a namespace an id", assign, 0) {
                // Another process gave it one meanwhile: read it again.
                Err(e) if e.errno() == Some(libc::EEXIST) => {}
                other => other?,
            }
        }
        Err(KernelError::Protocol {
            op: "give a namespace an id".into(),
            detail: "the kernel kept no id".into(),
        })
    }
}
