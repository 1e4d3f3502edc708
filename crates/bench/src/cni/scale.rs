//! IPAM at scale: the cost of an ADD on a fresh /16 and after `leases`
//! leases, for nicslice-ipam and host-local. host-local's store (one file
//! per address) is filled directly; nicslice's database through the plugin
//! itself, one ADD per lease, untimed (its format is nicslice's own
//! business). Only the IPAM plugins are executed.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use serde_json::json;

use super::spawn;
use super::stats::Stats;
use anyhow::{Context, Result, bail};

/// Samples per point.
const SAMPLES: usize = 20;

#[derive(Debug, Clone, Serialize)]
pub struct Scale {
    pub leases: usize,
    pub nicslice_first: Stats,
    pub nicslice_nth: Stats,
    pub host_local_first: Option<Stats>,
    pub host_local_nth: Option<Stats>,
}

fn conf(ipam: &str, data_dir: &Path) -> serde_json::Value {
    json!({"cniVersion": "1.0.0", "name": "scale", "type": ipam,
           "ipam": {"type": ipam, "subnet": "10.20.0.0/16", "dataDir": data_dir}})
}

/// `count` IPAM ADDs by `plugin` in `dir`, container IDs `{tag}0`, `{tag}1`...
fn adds(
    dir: &Path,
    plugin: &str,
    conf: &serde_json::Value,
    tag: &str,
    count: usize,
) -> Result<Vec<Duration>> {
    let stdin = conf.to_string();
    let mut samples: Vec<Duration> = Vec::with_capacity(count);
    for i in 0..count {
        let vars = [
            ("CNI_COMMAND", "ADD".to_string()),
            ("CNI_CONTAINERID", format!("{tag}{i}")),
            ("CNI_NETNS", "/proc/self/ns/net".to_string()),
            ("CNI_IFNAME", "eth0".to_string()),
            ("CNI_PATH", dir.display().to_string()),
        ];
        let run = spawn::timed(&dir.join(plugin), &vars, stdin.as_bytes())?;
        if !run.ok {
            bail!("{plugin} ADD failed: {}", run.stdout);
        }
        samples.push(run.elapsed);
    }
    Ok(samples)
}

/// [`SAMPLES`] timed IPAM ADDs.
fn timed_adds(dir: &Path, plugin: &str, conf: &serde_json::Value, tag: &str) -> Result<Stats> {
    Ok(Stats::of(&adds(dir, plugin, conf, tag, SAMPLES)?))
}

/// host-local's store: a file per address holding "ID\r\nIFNAME".
fn fill_host_local(data_dir: &Path, leases: usize) -> Result<()> {
    let dir = data_dir.join("scale");
    std::fs::create_dir_all(&dir).with_context(|| dir.display().to_string())?;
    let mut last = String::new();
    for i in 0..leases {
        let n = i + 2 + SAMPLES; // after the gateway and the samples of the first point
        last = format!("10.20.{}.{}", n / 256, n % 256);
        let file = dir.join(&last);
        std::fs::write(&file, format!("fill{i}\r\neth0"))
            .with_context(|| file.display().to_string())?;
    }
    let file = dir.join("last_reserved_ip.0");
    std::fs::write(&file, last).with_context(|| file.display().to_string())
}

pub fn measure(tmp: &Path, reference: &Path, bin: &Path, leases: usize) -> Result<Scale> {
    let nsl = conf("nicslice-ipam", &tmp.join("scale-nsl"));
    let nicslice_first = timed_adds(bin, "nicslice-ipam", &nsl, "first")?;
    adds(bin, "nicslice-ipam", &nsl, "fill", leases)?;
    let nicslice_nth = timed_adds(bin, "nicslice-ipam", &nsl, "nth")?;
    let (mut host_local_first, mut host_local_nth) = (None, None);
    if reference.join("host-local").exists() {
        let data = tmp.join("scale-ref");
        let hl = conf("host-local", &data);
        host_local_first = Some(timed_adds(reference, "host-local", &hl, "first")?);
        fill_host_local(&data, leases)?;
        host_local_nth = Some(timed_adds(reference, "host-local", &hl, "nth")?);
    }
    Ok(Scale { leases, nicslice_first, nicslice_nth, host_local_first, host_local_nth })
}

impl Scale {
    pub fn table(&self) -> String {
        let mut t = format!(
            "\nIPAM ADD in a /16, fresh and after {} leases: median (min..max) in ms\n",
            self.leases
        );
        let row = |name: &str, a: &Stats, b: &Stats| {
            format!(
                "{name:<14} fresh {:<22} after {:<22} ratio {:.2}x\n",
                a.show(),
                b.show(),
                if a.median_ms > 0.0 { b.median_ms / a.median_ms } else { 0.0 }
            )
        };
        t.push_str(&row("nicslice-ipam", &self.nicslice_first, &self.nicslice_nth));
        if let (Some(a), Some(b)) = (&self.host_local_first, &self.host_local_nth) {
            t.push_str(&row("host-local", a, b));
        }
        t
    }
}
