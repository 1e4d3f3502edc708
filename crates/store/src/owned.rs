//! Links nicslice created to serve as parents (an 802.1Q sub-interface for
//! `--parent eth0.50`, a dummy for an internal network): recorded so that the
//! last network using one deletes it, and nothing else ever is.

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::error::Context;
use crate::store::now;
use crate::{StoreError, WriteTx};

/// A parent link nicslice owns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnedLink {
    pub name: String,
    /// "vlan" or "dummy".
    pub kind: String,
    /// The lower device of a VLAN.
    pub lower: Option<String>,
    pub vlan_id: Option<u16>,
}

impl WriteTx<'_> {
    pub fn owned_link(&self, name: &str) -> Result<Option<OwnedLink>, StoreError> {
        self.tx
            .query_row(
                "SELECT name, kind, lower, vlan_id FROM owned_links WHERE name = ?1",
                params![name],
                |r| {
                    Ok(OwnedLink {
                        name: r.get(0)?,
                        kind: r.get(1)?,
                        lower: r.get(2)?,
                        vlan_id: r.get(3)?,
                    })
                },
            )
            .optional()
            .ctx("reading an owned link")
    }

    pub fn insert_owned_link(&self, link: &OwnedLink) -> Result<(), StoreError> {
        self.tx
            .execute(
                "INSERT INTO owned_links (name, kind, lower, vlan_id, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![link.name, link.kind, link.lower, link.vlan_id, now()],
            )
            .ctx("recording an owned link")?;
        Ok(())
    }

    pub fn delete_owned_link(&self, name: &str) -> Result<bool, StoreError> {
        let n = self
            .tx
            .execute("DELETE FROM owned_links WHERE name = ?1", params![name])
            .ctx("forgetting an owned link")?;
        Ok(n > 0)
    }
}
