//! The CNI benchmark (`nicslice bench-cni`): ADD and DEL of the reference
//! plugins, nicslice's and the lower bound, side by side in one run on the
//! same private namespace set-up.

use std::path::PathBuf;

use serde::Serialize;

use crate::error::{CniError, Code, Result};

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub runs: usize,
    pub reference_dir: PathBuf,
    /// The nicslice binary to install as the plugins.
    pub nicslice: PathBuf,
}

/// The measurements.
#[derive(Debug, Clone, Serialize)]
pub struct Report {}

impl Report {
    pub fn table(&self) -> String {
        String::new()
    }
}

pub fn run(_opts: &Options) -> Result<Report> {
    Err(CniError::new(Code::Other(999), "not yet"))
}
