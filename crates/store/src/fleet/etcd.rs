//! A small client of etcd v3's JSON gateway (etcd 3.4, as Debian ships it):
//! the calls the fleet pool makes, each one HTTP POST of JSON. Keys and
//! values travel base64-encoded and 64-bit numbers as strings, as the
//! gateway writes them. Endpoints are tried in order until one answers, and
//! the round is tried again until `patience` runs out, so one dead member of
//! a cluster, leader or not, changes nothing but the election's wait. A call
//! retried after a timeout may have been applied already: `create` reads
//! back, in the same transaction, whether the key it found is its own.
//! `https://` endpoints go through TLS with the network's files (`tls.rs`).

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use nicslice_model::EtcdTls;

use crate::StoreError;

/// Between two rounds over the endpoints.
const RETRY: Duration = Duration::from_millis(100);

/// A lease: keys put with it go when it expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseId(pub i64);

/// One key as etcd holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    /// The lease it goes with (0: none).
    pub lease: i64,
}

/// The cluster, by its client URLs (`http://host:2379`, `https://...`).
pub struct Etcd {
    endpoints: Vec<String>,
    agent: ureq::Agent,
    patience: Duration,
}

fn fail(what: impl Into<String>) -> StoreError {
    StoreError::Etcd(what.into())
}

/// etcd's TLS port ends a plain-HTTP request without a word (a close, or a
/// reset when the request was still arriving): said so when an `http://`
/// endpoint does (a member killed mid-reply does it too).
fn tls_hint(endpoint: &str, e: &ureq::Error) -> &'static str {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionReset};
    let source = std::error::Error::source(e).and_then(|s| s.downcast_ref::<std::io::Error>());
    let closed = source.is_some_and(|io| matches!(io.kind(), ConnectionAborted | ConnectionReset));
    if closed && endpoint.starts_with("http://") {
        " (closed without a reply: if etcd serves TLS there, use https:// with --etcd-ca)"
    } else {
        ""
    }
}

/// A gateway number: a string, or absent for zero.
fn number(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

fn bytes(v: &Value) -> Result<Vec<u8>, StoreError> {
    B64.decode(v.as_str().unwrap_or_default()).map_err(|e| fail(format!("bad base64 ({e})")))
}

/// The first key after every key that starts with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

impl Etcd {
    /// A client of the cluster at `endpoints`; each request gives up on an
    /// endpoint after `timeout`, and a call on the cluster after `patience`
    /// (an election takes about a second).
    pub fn new(
        endpoints: &[String],
        timeout: Duration,
        patience: Duration,
    ) -> Result<Etcd, StoreError> {
        Etcd::with_tls(endpoints, &EtcdTls::default(), timeout, patience)
    }

    /// As [`Etcd::new`], with TLS to `https://` endpoints made of the files
    /// of `tls` (read now: a missing or unreadable one fails here).
    pub fn with_tls(
        endpoints: &[String],
        tls: &EtcdTls,
        timeout: Duration,
        patience: Duration,
    ) -> Result<Etcd, StoreError> {
        if endpoints.is_empty() {
            return Err(fail("no endpoint given"));
        }
        let mut agent = ureq::AgentBuilder::new().timeout_connect(timeout).timeout(timeout);
        if let Some(connector) = super::tls::connector(tls)? {
            agent = agent.tls_connector(connector);
        }
        let agent = agent.build();
        let endpoints = endpoints.iter().map(|e| e.trim_end_matches('/').to_string()).collect();
        Ok(Etcd { endpoints, agent, patience })
    }

    /// POSTs `body` to `path` of the first endpoint that answers, round
    /// after round until `patience` runs out. A member without a leader
    /// (HTTP 5xx) counts as not answering.
    fn call(&self, path: &str, body: Value) -> Result<Value, StoreError> {
        let deadline = Instant::now() + self.patience;
        loop {
            let mut unanswered = Vec::new();
            for endpoint in &self.endpoints {
                match self.agent.post(&format!("{endpoint}{path}")).send_json(body.clone()) {
                    // A reply cut short (a member killed or slow mid-way)
                    // counts as no answer: the next member is asked.
                    Ok(reply) => match reply.into_json() {
                        Ok(json) => return Ok(json),
                        Err(e) => unanswered.push(format!("{endpoint}: unreadable reply ({e})")),
                    },
                    Err(ureq::Error::Status(code, reply)) if code < 500 => {
                        let text = reply.into_string().unwrap_or_default();
                        return Err(fail(format!("{endpoint}{path}: HTTP {code}: {text}")));
                    }
                    Err(e) => unanswered.push(format!("{endpoint}: {e}{}", tls_hint(endpoint, &e))),
                }
            }
            if Instant::now() >= deadline {
                return Err(fail(format!("no endpoint answered ({})", unanswered.join("; "))));
            }
            std::thread::sleep(RETRY);
        }
    }

    /// Whether the member that answers is the cluster's leader.
    pub fn answered_by_leader(&self) -> Result<bool, StoreError> {
        let reply = self.call("/v3/maintenance/status", json!({}))?;
        // Member ids are unsigned 64-bit: compared as the gateway wrote them.
        let leader = reply["leader"].as_str().unwrap_or_default();
        Ok(!leader.is_empty() && reply["header"]["member_id"].as_str() == Some(leader))
    }

    /// A new lease of `ttl`.
    pub fn grant(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        let reply = self.call("/v3/lease/grant", json!({ "TTL": ttl.as_secs().max(1) }))?;
        match number(&reply["ID"]) {
            0 => Err(fail(format!("lease not granted: {reply}"))),
            id => Ok(LeaseId(id)),
        }
    }

    /// Renews `lease`; the time it has left, or `None` when it expired.
    pub fn keep_alive(&self, lease: LeaseId) -> Result<Option<Duration>, StoreError> {
        let reply = self.call("/v3/lease/keepalive", json!({ "ID": lease.0.to_string() }))?;
        let ttl = number(&reply["result"]["TTL"]);
        Ok((ttl > 0).then(|| Duration::from_secs(ttl.unsigned_abs())))
    }

    /// Ends `lease` now, and the keys put with it.
    pub fn revoke(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.call("/v3/lease/revoke", json!({ "ID": lease.0.to_string() })).map(drop)
    }

    /// Every key that starts with `prefix`, in key order.
    pub fn get_prefix(&self, prefix: &[u8]) -> Result<Vec<KeyValue>, StoreError> {
        let reply = self.call(
            "/v3/kv/range",
            json!({ "key": B64.encode(prefix), "range_end": B64.encode(prefix_end(prefix)) }),
        )?;
        let mut out = Vec::new();
        for kv in reply["kvs"].as_array().into_iter().flatten() {
            out.push(KeyValue {
                key: bytes(&kv["key"])?,
                value: bytes(&kv["value"])?,
                lease: number(&kv["lease"]),
            });
        }
        Ok(out)
    }

    /// The keys that start with `prefix`, without their values (a fraction
    /// of the reply when only which keys exist matters).
    pub fn get_keys(&self, prefix: &[u8]) -> Result<Vec<Vec<u8>>, StoreError> {
        let reply = self.call(
            "/v3/kv/range",
            json!({
                "key": B64.encode(prefix),
                "range_end": B64.encode(prefix_end(prefix)),
                "keys_only": true,
            }),
        )?;
        reply["kvs"].as_array().into_iter().flatten().map(|kv| bytes(&kv["key"])).collect()
    }

    /// The value of `key`, if it exists.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let reply = self.call("/v3/kv/range", json!({ "key": B64.encode(key) }))?;
        reply["kvs"][0].get("value").map(bytes).transpose()
    }

    /// One transaction: when every comparison of `compare` holds, the
    /// operations of `success` run, else those of `failure` (build them with
    /// [`Op`] and [`Cmp`]). Whether the comparisons held, and the replies
    /// of the branch that ran.
    pub fn txn(
        &self,
        compare: &[Cmp],
        success: &[Op],
        failure: &[Op],
    ) -> Result<(bool, Vec<Value>), StoreError> {
        let compare: Vec<Value> = compare.iter().map(Cmp::json).collect();
        let success: Vec<Value> = success.iter().map(Op::json).collect();
        let failure: Vec<Value> = failure.iter().map(Op::json).collect();
        let reply = self.call(
            "/v3/kv/txn",
            json!({ "compare": compare, "success": success, "failure": failure }),
        )?;
        let responses = reply["responses"].as_array().cloned().unwrap_or_default();
        Ok((reply["succeeded"].as_bool().unwrap_or(false), responses))
    }

    /// Puts `key` only if it does not exist (one transaction: compare its
    /// create revision with 0); whether it is now ours: put by this call, or
    /// by an earlier try of it whose answer was lost (the same value and
    /// lease, read back by the transaction's other branch).
    pub fn create(
        &self,
        key: &[u8],
        value: &[u8],
        lease: Option<LeaseId>,
    ) -> Result<bool, StoreError> {
        let (created, replies) = self.txn(
            &[Cmp::Absent(key.to_vec())],
            &[Op::Put { key: key.to_vec(), value: value.to_vec(), lease }],
            &[Op::Get(key.to_vec())],
        )?;
        if created {
            return Ok(true);
        }
        let found = range_reply(&replies, 0)?;
        Ok(found.is_some_and(|kv| kv.value == value && kv.lease == lease.map_or(0, |l| l.0)))
    }
}

/// A comparison of a transaction.
#[derive(Debug, Clone)]
pub enum Cmp {
    /// The key does not exist (its create revision is 0).
    Absent(Vec<u8>),
    /// The key holds exactly this value.
    Holds(Vec<u8>, Vec<u8>),
}

impl Cmp {
    fn json(&self) -> Value {
        match self {
            Cmp::Absent(key) => {
                json!({ "target": "CREATE", "key": B64.encode(key), "createRevision": "0" })
            }
            Cmp::Holds(key, value) => {
                json!({ "target": "VALUE", "key": B64.encode(key), "value": B64.encode(value) })
            }
        }
    }
}

/// An operation of a transaction.
#[derive(Debug, Clone)]
pub enum Op {
    Put { key: Vec<u8>, value: Vec<u8>, lease: Option<LeaseId> },
    Delete(Vec<u8>),
    Get(Vec<u8>),
}

impl Op {
    fn json(&self) -> Value {
        match self {
            Op::Put { key, value, lease } => {
                let mut put = json!({ "key": B64.encode(key), "value": B64.encode(value) });
                if let Some(lease) = lease {
                    put["lease"] = json!(lease.0.to_string());
                }
                json!({ "requestPut": put })
            }
            Op::Delete(key) => json!({ "requestDeleteRange": { "key": B64.encode(key) } }),
            Op::Get(key) => json!({ "requestRange": { "key": B64.encode(key) } }),
        }
    }
}

/// The key read by the `Get` at position `i` of a transaction's replies.
pub fn range_reply(replies: &[Value], i: usize) -> Result<Option<KeyValue>, StoreError> {
    let kv = &replies.get(i).map_or(&Value::Null, |r| &r["response_range"])["kvs"][0];
    if kv.is_null() {
        return Ok(None);
    }
    Ok(Some(KeyValue {
        key: bytes(&kv["key"])?,
        value: bytes(&kv["value"])?,
        lease: number(&kv["lease"]),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_next_key() {
        assert_eq!(prefix_end(b"/a/"), b"/a0");
        assert_eq!(prefix_end(&[b'a', 0xff]), b"b");
        assert_eq!(prefix_end(&[0xff]), vec![0]);
    }

    #[test]
    fn gateway_numbers() {
        assert_eq!(number(&json!("7668682672241805317")), 7_668_682_672_241_805_317);
        assert_eq!(number(&Value::Null), 0);
        assert_eq!(number(&json!(5)), 5);
    }
}
