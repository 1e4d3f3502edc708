//! One synchronous rtnetlink socket bound to one network namespace: send a
//! request, check the sequence number of every reply, collect dump parts and
//! turn NACKs into [`KernelError::Netlink`] with the operation's name.
//!
//! The socket is opened while the thread is inside the namespace and the thread
//! returns at once; every later request acts in that namespace.

use netlink_packet_core::{
    ErrorBuffer, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST, NLMSG_DONE,
    NLMSG_ERROR, NLMSG_NOOP, NLMSG_OVERRUN, NetlinkBuffer, NetlinkDeserializable, NetlinkHeader,
    NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use crate::error::{KernelError, Result};
use crate::netns::{Netns, ThreadNsStamp};

/// Flags of a request that creates something and must not replace it.
pub const CREATE_EXCL: u16 = NLM_F_CREATE | NLM_F_EXCL;

/// The largest datagram one receive takes: a dump part is at most a page or
/// two, an ACK a few dozen bytes.
const RECV_BUF: usize = 64 * 1024;

/// What ends the replies to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Until {
    /// The ACK (or error) of a change.
    Ack,
    /// The one message a GET answers with (or its error).
    Reply,
    /// DONE, after every part of a dump.
    Done,
}

pub struct RouteSocket {
    socket: Socket,
    seq: u32,
    recv_buf: Vec<u8>,
    /// Whether strict checking is on, which makes the kernel filter dumps
    /// by the header fields a request sets. Turned on before the first dump
    /// only: a CNI ADD dumps nothing, and the option is a system call.
    strict: bool,
    /// The opening thread and its namespace changes then: while the same
    /// thread has made no change since, it is in this socket's namespace.
    opened: ThreadNsStamp,
}

impl RouteSocket {
    /// Opens a socket in the calling thread's current namespace.
    pub fn open_here() -> Result<RouteSocket> {
        let socket =
            Socket::new(NETLINK_ROUTE).map_err(|e| KernelError::io("open netlink socket", e))?;
        // Connecting to the kernel (port 0) also binds the socket to a port
        // the kernel picks, as bind would, one system call earlier. Connected,
        // the socket takes datagrams from the kernel only.
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(|e| KernelError::io("connect netlink socket", e))?;
        // Capacity, not zeroes: the kernel writes only what it sends, so only
        // those pages are ever touched (zeroing 64 KiB per socket was a fifth
        // of a CNI call's page faults).
        Ok(RouteSocket {
            socket,
            seq: 0,
            recv_buf: Vec::with_capacity(RECV_BUF),
            strict: false,
            opened: ThreadNsStamp::now(),
        })
    }

    /// Opens a socket inside `netns` (enter, open, return).
    pub fn open_in(netns: &Netns) -> Result<RouteSocket> {
        let _guard = netns.enter()?;
        RouteSocket::open_here()
    }

    /// [`open_in`](Self::open_in), with the way back asked of this socket
    /// (`SIOCGSKNS`, a cheaper question than a walk through /proc) when the
    /// calling thread is provably still in this socket's namespace: it is
    /// the thread that opened the socket and has not changed namespace
    /// since (a [`ThreadNsStamp`]). Otherwise the way back is the thread's
    /// own namespace, read from /proc. Either way the guard returns the
    /// thread to the namespace it was in: no caller can leave it elsewhere.
    pub fn open_beside_in(&self, netns: &Netns) -> Result<RouteSocket> {
        let back = if self.opened == ThreadNsStamp::now() {
            Netns::of_socket(self.raw_fd())?
        } else {
            Netns::current()?
        };
        let _guard = netns.enter_from(back)?;
        RouteSocket::open_here()
    }

    /// The socket's file descriptor, for the ioctls that act in its namespace.
    pub(crate) fn raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.socket.as_raw_fd()
    }

    fn send(&mut self, msg: RouteNetlinkMessage, flags: u16) -> Result<u32> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        packet.finalize();
        let mut buf = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.socket.send(&buf, 0).map_err(|e| KernelError::io("send netlink request", e))?;
        Ok(self.seq)
    }

    /// Reads replies to `seq` and hands each inner message, undecoded (its
    /// type and payload), to `each` until the end `until` names arrives (or
    /// an error). Only the netlink headers are read here: a caller decodes
    /// as much of a message as it needs.
    fn receive_raw(
        &mut self,
        op: &str,
        seq: u32,
        until: Until,
        mut each: impl FnMut(u16, &[u8]) -> Result<()>,
    ) -> Result<()> {
        let dump = until == Until::Done;
        let protocol = |detail: String| KernelError::Protocol { op: op.to_string(), detail };
        loop {
            self.recv_buf.clear();
            // recv writes into the spare capacity and sets the length.
            let n = self
                .socket
                .recv(&mut self.recv_buf, 0)
                .map_err(|e| KernelError::io("receive netlink reply", e))?
                .min(self.recv_buf.len());
            let mut offset = 0;
            while offset < n {
                let msg = NetlinkBuffer::new_checked(&self.recv_buf[offset..n])
                    .map_err(|e| protocol(e.to_string()))?;
                let len = msg.length() as usize;
                if len == 0 {
                    return Err(protocol("zero-length message".into()));
                }
                offset += (len + 3) & !3;
                if msg.sequence_number() != seq {
                    // A late reply to an earlier request; not ours.
                    continue;
                }
                match msg.message_type() {
                    NLMSG_ERROR => {
                        let err = ErrorBuffer::new_checked(msg.payload())
                            .map_err(|e| protocol(e.to_string()))?;
                        return match err.code() {
                            None => Ok(()),
                            Some(code) => {
                                Err(KernelError::Netlink { op: op.to_string(), errno: -code.get() })
                            }
                        };
                    }
                    NLMSG_DONE => return Ok(()),
                    NLMSG_NOOP | NLMSG_OVERRUN => {}
                    message_type => {
                        each(message_type, msg.payload())?;
                        if until == Until::Reply {
                            return Ok(());
                        }
                    }
                }
            }
            if !dump && n == 0 {
                return Err(protocol("socket closed".into()));
            }
        }
    }

    /// [`receive_raw`](Self::receive_raw), each message decoded whole.
    fn receive(
        &mut self,
        op: &str,
        seq: u32,
        until: Until,
        mut each: impl FnMut(RouteNetlinkMessage),
    ) -> Result<()> {
        self.receive_raw(op, seq, until, |message_type, payload| {
            each(decode(op, message_type, payload)?);
            Ok(())
        })
    }

    /// Sends a request and waits for its ACK.
    pub fn execute(&mut self, op: &str, msg: RouteNetlinkMessage, flags: u16) -> Result<()> {
        let seq = self.send(msg, flags | NLM_F_ACK)?;
        self.receive(op, seq, Until::Ack, |_| {})
    }

    /// Sends a request that answers with one message (a GET by index or name).
    /// No ACK is asked for: the reply itself ends the exchange (a refusal
    /// still arrives as an error), one receive instead of two.
    pub fn get(&mut self, op: &str, msg: RouteNetlinkMessage) -> Result<RouteNetlinkMessage> {
        self.get_raw(op, msg, |message_type, payload| decode(op, message_type, payload))
    }

    /// [`get`](Self::get), the reply handed to `read` undecoded (its type
    /// and payload): for callers that need a few attributes of a message whose
    /// whole decoding (a link's every nested attribute) would cost more than
    /// the request.
    pub fn get_raw<T>(
        &mut self,
        op: &str,
        msg: RouteNetlinkMessage,
        mut read: impl FnMut(u16, &[u8]) -> Result<T>,
    ) -> Result<T> {
        let seq = self.send(msg, 0)?;
        let mut out = None;
        self.receive_raw(op, seq, Until::Reply, |message_type, payload| {
            out = Some(read(message_type, payload)?);
            Ok(())
        })?;
        out.ok_or_else(|| KernelError::Protocol {
            op: op.into(),
            detail: "no reply message".into(),
        })
    }

    /// Sends a dump request and collects every part.
    pub fn dump(&mut self, op: &str, msg: RouteNetlinkMessage) -> Result<Vec<RouteNetlinkMessage>> {
        if !self.strict {
            // Without it (kernels before 4.20) dumps arrive unfiltered and
            // callers filter them again, as they all do.
            let _ = self.socket.set_netlink_get_strict_chk(true);
            self.strict = true;
        }
        let seq = self.send(msg, NLM_F_DUMP)?;
        let mut out = Vec::new();
        self.receive(op, seq, Until::Done, |m| out.push(m))?;
        Ok(out)
    }
}

/// Decodes a whole inner message of type `message_type`.
pub(crate) fn decode(op: &str, message_type: u16, payload: &[u8]) -> Result<RouteNetlinkMessage> {
    let mut header = NetlinkHeader::default();
    header.message_type = message_type;
    RouteNetlinkMessage::deserialize(&header, payload)
        .map_err(|e| KernelError::Protocol { op: op.to_string(), detail: e.to_string() })
}
