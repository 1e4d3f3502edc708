//! The fuzzing driver shared by the fuzz targets (`crates/cni/tests/fuzz.rs`,
//! `crates/cli/tests/fuzz_topology.rs`), built on proptest: inputs are either
//! seeds of `fuzz/corpus/TARGET/` mutated at the byte level (insertions,
//! deletions, replacements by tokens that break parsers, bit flips,
//! duplications) or produced by a target's own structured strategy. A
//! target runs rounds of cases until its time is up (`FUZZ_SECONDS`); a
//! case that panics, or breaks the target's contract, is shrunk by proptest
//! and the smallest failing input is written to `fuzz/regressions/TARGET/`,
//! which every normal test run replays with the corpus
//! ([`replay`]). `scripts/fuzz.sh` runs the targets.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestError, TestRunner};

/// The repository's `fuzz/` directory.
pub fn fuzz_dir() -> PathBuf {
    // CARGO_MANIFEST_DIR is crates/NAME.
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    crate_dir.ancestors().nth(2).unwrap_or(crate_dir).join("fuzz")
}

/// The seeds of `target`, as files' bytes (sorted by name, so reproducible).
pub fn corpus(target: &str) -> Vec<Vec<u8>> {
    files(&fuzz_dir().join("corpus").join(target))
}

/// The regressions of `target`: inputs that once failed.
pub fn regressions(target: &str) -> Vec<Vec<u8>> {
    files(&fuzz_dir().join("regressions").join(target))
}

fn files(dir: &Path) -> Vec<Vec<u8>> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    paths.iter().filter(|p| p.is_file()).map(|p| std::fs::read(p).unwrap()).collect()
}

/// Runs `check` on every seed and regression of `target` (the normal tests
/// do this: a fixed bug stays fixed).
pub fn replay(target: &str, check: impl Fn(&[u8]) -> Result<(), String>) {
    let inputs: Vec<Vec<u8>> = corpus(target).into_iter().chain(regressions(target)).collect();
    assert!(!inputs.is_empty(), "fuzz/corpus/{target} is empty");
    for input in inputs {
        if let Err(e) = check(&input) {
            panic!("{target}: {e}\ninput: {:?}", String::from_utf8_lossy(&input));
        }
    }
}

/// One byte-level edit of a seed.
#[derive(Debug, Clone)]
enum Edit {
    Insert(Index, Vec<u8>),
    Delete(Index, usize),
    Replace(Index, usize, Vec<u8>),
    FlipBit(Index, u8),
    Duplicate(Index, usize),
}

fn apply(seed: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut out = seed.to_vec();
    for edit in edits {
        let at = |i: &Index, len: usize| if len == 0 { 0 } else { i.index(len + 1) };
        match edit {
            Edit::Insert(i, bytes) => {
                let p = at(i, out.len());
                out.splice(p..p, bytes.iter().copied());
            }
            Edit::Delete(i, n) => {
                let p = at(i, out.len());
                let end = (p + n).min(out.len());
                out.drain(p..end);
            }
            Edit::Replace(i, n, bytes) => {
                let p = at(i, out.len());
                let end = (p + n).min(out.len());
                out.splice(p..end, bytes.iter().copied());
            }
            Edit::FlipBit(i, bit) => {
                if !out.is_empty() {
                    let p = i.index(out.len());
                    out[p] ^= 1 << (bit % 8);
                }
            }
            Edit::Duplicate(i, n) => {
                let p = at(i, out.len());
                let end = (p + n).min(out.len());
                let copy = out[p..end].to_vec();
                out.splice(end..end, copy);
            }
        }
    }
    out
}

/// Tokens that break parsers, beside each target's own.
pub const COMMON_TOKENS: &[&str] = &[
    "null",
    "true",
    "false",
    "0",
    "-1",
    "1e999",
    "-0",
    "18446744073709551616",
    "1.5",
    "\"",
    "\"\"",
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "=",
    ";",
    "\\",
    "\\u0000",
    "\\ud800",
    "\u{0}",
    "\n",
    "é",
    "😀",
    "\u{202e}",
    "%s",
    "..",
    "/",
    "//",
    "-",
    "_",
    "0.0.0.0/0",
    "::/0",
    "255.255.255.255/32",
    "fe80::1%eth0",
    "01:00:5e:00:00:01",
    "ff:ff:ff:ff:ff:ff",
    "lo",
    "eth0",
];

fn edit(tokens: Vec<&'static str>) -> impl Strategy<Value = Edit> {
    let token = prop_oneof![
        3 => proptest::sample::select(tokens).prop_map(|t| t.as_bytes().to_vec()),
        1 => proptest::collection::vec(any::<u8>(), 1..6),
    ];
    prop_oneof![
        3 => (any::<Index>(), token.clone()).prop_map(|(i, t)| Edit::Insert(i, t)),
        2 => (any::<Index>(), 1usize..16).prop_map(|(i, n)| Edit::Delete(i, n)),
        3 => (any::<Index>(), 1usize..8, token).prop_map(|(i, n, t)| Edit::Replace(i, n, t)),
        1 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Edit::FlipBit(i, b)),
        1 => (any::<Index>(), 1usize..64).prop_map(|(i, n)| Edit::Duplicate(i, n)),
    ]
}

/// Seeds of `target`, each with up to eight edits.
pub fn mutated(target: &str, own_tokens: &[&'static str]) -> BoxedStrategy<Vec<u8>> {
    let seeds = corpus(target);
    assert!(!seeds.is_empty(), "fuzz/corpus/{target} is empty");
    let tokens: Vec<&'static str> = COMMON_TOKENS.iter().chain(own_tokens).copied().collect();
    (0..seeds.len(), proptest::collection::vec(edit(tokens), 0..8))
        .prop_map(move |(i, edits)| apply(&seeds[i], &edits))
        .boxed()
}

/// What one target's run did.
#[derive(Debug, Default)]
pub struct Figures {
    pub cases: u64,
    pub rounds: u64,
    pub crashes: u64,
}

/// Fuzzes `check` with `inputs` for `FUZZ_SECONDS` (default 10), in rounds
/// of fresh seeds; stops at the first failure, writes its shrunk input to
/// `fuzz/regressions/TARGET/` and panics with it. Prints the figures.
pub fn fuzz(
    target: &str,
    inputs: BoxedStrategy<Vec<u8>>,
    check: impl Fn(&[u8]) -> Result<(), String>,
) -> Figures {
    let seconds: u64 =
        std::env::var("FUZZ_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let base_seed: u64 =
        std::env::var("FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    let mut figures = Figures::default();
    const ROUND: u32 = 2_000;
    while Instant::now() < deadline {
        let seed = base_seed.wrapping_add(figures.rounds);
        let config = Config {
            cases: ROUND,
            failure_persistence: None,
            rng_seed: RngSeed::Fixed(seed),
            max_shrink_iters: 10_000,
            ..Config::default()
        };
        let mut runner = TestRunner::new(config);
        let outcome = runner.run(&inputs, |input| check(&input).map_err(TestCaseError::fail));
        figures.rounds += 1;
        match outcome {
            Ok(()) => figures.cases += u64::from(ROUND),
            Err(TestError::Fail(why, input)) => {
                figures.crashes += 1;
                let file = save_regression(target, &input);
                panic!(
                    "fuzz {target}: failure after {} cases (round seed {seed}): {why}\n\
                     input saved as {}: {:?}",
                    figures.cases,
                    file.display(),
                    String::from_utf8_lossy(&input)
                );
            }
            Err(TestError::Abort(why)) => panic!("fuzz {target}: aborted: {why}"),
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "fuzz {target}: {} cases in {secs:.0} s ({:.0}/s), {} rounds from seed {base_seed}, {} crashes",
        figures.cases,
        figures.cases as f64 / secs.max(0.001),
        figures.rounds,
        figures.crashes
    );
    figures
}

/// Writes a failing input under `fuzz/regressions/TARGET/`, named by its
/// content (FNV-1a), and returns the path.
fn save_regression(target: &str, input: &[u8]) -> PathBuf {
    let dir = fuzz_dir().join("regressions").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    let hash = input
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3));
    let path = dir.join(format!("{hash:016x}"));
    std::fs::write(&path, input).unwrap();
    path
}

/// A JSON value from `strings` and the usual leaves, nested a few levels,
/// objects keyed by `keys`: the shapes a configuration may wrongly take.
pub fn json_value(
    keys: &'static [&'static str],
    strings: &'static [&'static str],
) -> BoxedStrategy<serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        Just(Value::from(f64::MAX)),
        proptest::sample::select(strings).prop_map(Value::from),
        "\\PC{0,24}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 48, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            proptest::collection::vec((proptest::sample::select(keys), inner), 0..6).prop_map(
                |kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            ),
        ]
    })
    .boxed()
}

/// `base` (a JSON object) with up to `n` of the dotted `paths` set to
/// values of `values`: a configuration valid but for a few keys.
pub fn spoiled(
    bases: Vec<serde_json::Value>,
    paths: &'static [&'static str],
    values: BoxedStrategy<serde_json::Value>,
) -> BoxedStrategy<Vec<u8>> {
    let n = bases.len();
    (0..n, proptest::collection::vec((proptest::sample::select(paths), values), 0..5))
        .prop_map(move |(i, sets)| {
            let mut conf = bases[i].clone();
            for (path, value) in sets {
                set_path(&mut conf, path, value);
            }
            serde_json::to_vec(&conf).unwrap()
        })
        .boxed()
}

/// Sets the value at a dotted path of object keys and list indices
/// (`hosts.0.children.1.mode`); a path that leads nowhere sets nothing.
fn set_path(conf: &mut serde_json::Value, path: &str, value: serde_json::Value) {
    let mut at = conf;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        let last = parts.peek().is_none();
        at = match (at, part.parse::<usize>()) {
            (serde_json::Value::Array(items), Ok(i)) => match items.get_mut(i) {
                Some(item) if last => {
                    *item = value;
                    return;
                }
                Some(item) => item,
                None => return,
            },
            (serde_json::Value::Object(fields), _) if last => {
                fields.insert(part.to_string(), value);
                return;
            }
            (serde_json::Value::Object(fields), _) => match fields.get_mut(part) {
                Some(inner) => inner,
                None => return,
            },
            _ => return,
        };
    }
}
