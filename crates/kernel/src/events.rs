//! Link events of one namespace as the kernel multicasts them (rtnetlink's
//! link group, `ip monitor link`): a socket that sleeps in the kernel until
//! an interface appears, changes or goes. No polling.

use std::os::fd::AsRawFd;
use std::time::Duration;

use netlink_packet_core::{NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP, NLMSG_OVERRUN, NetlinkBuffer};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use crate::error::{KernelError, Result};
use crate::link::Link;
use crate::netlink::decode;
use crate::netns::Netns;

/// rtnetlink's multicast group of link changes (`RTMGRP_LINK`).
const RTMGRP_LINK: u32 = 1;

/// One change of one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// Created or changed: the link as it is now.
    New(Link),
    /// Deleted: the link as it was.
    Del(Link),
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
            .bind(&SocketAddr::new(0, RTMGRP_LINK))
            .map_err(|e| KernelError::io("subscribe to link events", e))?;
        Ok(LinkEvents { socket, buf: Vec::with_capacity(64 * 1024) })
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
        self.buf.clear();
        let n = self
            .socket
            .recv(&mut self.buf, 0)
            .map_err(|e| KernelError::io("receive link events", e))?
            .min(self.buf.len());
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
                        out.push(LinkEvent::New(Link::from_message(l)))
                    }
                    RouteNetlinkMessage::DelLink(l) => {
                        out.push(LinkEvent::Del(Link::from_message(l)))
                    }
                    _ => {}
                },
            }
        }
        Ok(out)
    }
}
