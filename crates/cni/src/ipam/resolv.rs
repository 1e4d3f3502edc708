//! `resolvConf`: the DNS settings of a resolv.conf-style file for the IPAM
//! result (`nameserver`, `domain`, `search`, `options`), as host-local reads it.

use std::path::Path;

use crate::error::{CniError, Code, Result};
use crate::result::Dns;

pub fn read(path: &Path) -> Result<Dns> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        CniError::new(Code::Io, format!("cannot read resolvConf {}: {e}", path.display()))
    })?;
    Ok(parse(&text))
}

pub fn parse(text: &str) -> Dns {
    let mut dns = Dns::default();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("");
        let mut words = line.split_whitespace();
        let Some(key) = words.next() else { continue };
        let rest: Vec<String> = words.map(str::to_string).collect();
        match key {
            "nameserver" => dns.nameservers.extend(rest.into_iter().take(1)),
            "domain" => dns.domain = rest.into_iter().next().unwrap_or_default(),
            "search" => dns.search = rest,
            "options" => dns.options.extend(rest),
            _ => {}
        }
    }
    dns
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_four_keys() {
        let d = parse(
            "# comment\nnameserver 10.0.0.53\nnameserver fd00::53 # v6\ndomain example.com\n\
             search a.example b.example\noptions ndots:2 edns0\nsortlist 1.2.3.4\n",
        );
        assert_eq!(d.nameservers, ["10.0.0.53", "fd00::53"]);
        assert_eq!(d.domain, "example.com");
        assert_eq!(d.search, ["a.example", "b.example"]);
        assert_eq!(d.options, ["ndots:2", "edns0"]);
    }
}
