//! Files a user hands a command (`explain`'s topology, `apply`'s desired
//! state): read with a bound, refused unless UTF-8, and a TOML mistake told
//! in one line with where it is, instead of toml's quoted line and caret.

use std::io::Read;
use std::path::Path;

use anyhow::Context;
use serde::de::DeserializeOwned;

/// The largest file read: a real one is a few KiB, and a device like
/// /dev/zero must not be read until memory runs out.
const MAX_BYTES: u64 = 1 << 20;

/// The file's text, refused past 1 MiB without reading further; `what` names
/// the kind of file in the refusal ("a topology").
pub fn read_bounded(path: &Path, what: &str) -> anyhow::Result<String> {
    let reading = || format!("reading {}", path.display());
    let file = std::fs::File::open(path).with_context(reading)?;
    let mut bytes = Vec::new();
    file.take(MAX_BYTES + 1).read_to_end(&mut bytes).with_context(reading)?;
    if bytes.len() as u64 > MAX_BYTES {
        anyhow::bail!(
            "{} is larger than 1 MiB, too large for {what} (a real one is a few KiB)",
            path.display()
        );
    }
    String::from_utf8(bytes).with_context(|| format!("{} is not UTF-8 text", path.display()))
}

/// `text` (read from `path`) as TOML; a mistake is one line naming the file,
/// the line and column, and what is wrong ("not a valid WHAT (TOML)").
pub fn parse<T: DeserializeOwned>(path: &Path, text: &str, what: &str) -> anyhow::Result<T> {
    toml::from_str(text).map_err(|e| {
        let at = e.span().map_or(String::new(), |s| {
            let before = text.get(..s.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!(" at line {line}, column {column}")
        });
        let message = e.message().trim_end().replace('\n', "; ");
        anyhow::anyhow!("{} is not a valid {what} (TOML){at}: {message}", path.display())
    })
}
