//! A small mutation fuzzer that runs inside the normal test suites (no nightly toolchain, no
//! cargo-fuzz). Every fuzz target uses it (`crates/bkg-kernel/tests/fuzz.rs` and the
//! `src/fuzz.rs` of bkg-sql, bkg-auth, bkg-http and bkg-pgwire; the list is in
//! `testdata/fuzz/README.txt`).
//!
//! A target runs every seed of `testdata/fuzz/<target>/` (and the seeds its test builds), then
//! mutated inputs: bit flips, interesting bytes and integers, truncation, slice duplication,
//! random insertions, splicing of two inputs, and for text targets grammar tokens (quotes,
//! backslashes, commas, parentheses, dots, newlines, `::`, `%`, unicode). The mutations come
//! from a xorshift64 PRNG seeded with a constant, so a run is deterministic. A panic in the
//! code under test, or a failed check of the target (output out of proportion to its input, an
//! accepted token that is not validly signed, ...), fails the test with the input printed in
//! hex and escaped, the PRNG seed and the iteration; the input is also saved to
//! `$TMPDIR/bkg-fuzz-<target>-crash.<ext>`, and copying that file into `testdata/fuzz/<target>/`
//! replays it on every run. Which inputs are accepted is never asserted.
//!
//! Default budget per target: 20 000 inputs or 2 s, whichever comes first. `BKG_FUZZ_SECS` sets
//! the time per target (and lifts the iteration cap), `BKG_FUZZ_ITERS` the iteration cap,
//! `BKG_FUZZ_SEED` the PRNG seed (decimal or `0x` hex), and `BKG_FUZZ_VERBOSE=1` prints each
//! input before it runs (for aborts, such as a stack overflow, that no test can catch):
//!
//! ```text
//! BKG_FUZZ_SECS=60 cargo nextest run -p bkg-sql fuzz
//! ```

use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const DEFAULT_ITERS: u64 = 20_000;
const DEFAULT_SECS: f64 = 2.0;
const DEFAULT_SEED: u64 = 0x9E37_79B9_7F4A_7C15;
/// Inputs that were accepted are kept (up to this many) as bases for later mutations.
const POOL_EXTRA: usize = 256;

pub struct Budget {
    pub iters: u64,
    pub time: Duration,
    pub seed: u64,
    pub verbose: bool,
}

impl Budget {
    pub fn from_env() -> Budget {
        let var = |k: &str| std::env::var(k).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let secs = var("BKG_FUZZ_SECS").and_then(|s| s.parse::<f64>().ok()).filter(|s| s.is_finite() && *s >= 0.0);
        let iters = var("BKG_FUZZ_ITERS").and_then(|s| s.parse::<u64>().ok());
        let seed = var("BKG_FUZZ_SEED")
            .and_then(|s| match s.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16).ok(),
                None => s.parse().ok(),
            })
            .unwrap_or(DEFAULT_SEED);
        Budget {
            iters: iters.unwrap_or(if secs.is_some() { u64::MAX } else { DEFAULT_ITERS }),
            time: Duration::from_secs_f64(secs.unwrap_or(DEFAULT_SECS).min(1e9)),
            seed,
            verbose: var("BKG_FUZZ_VERBOSE").is_some_and(|v| v != "0"),
        }
    }

    /// One of `n` equal shares, for a test that runs several loops.
    pub fn share(&self, n: u32) -> Budget {
        Budget {
            iters: if self.iters == u64::MAX { u64::MAX } else { self.iters / u64::from(n) },
            time: self.time / n,
            seed: self.seed,
            verbose: self.verbose,
        }
    }
}

/// xorshift64.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(if seed == 0 { DEFAULT_SEED } else { seed })
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform-ish in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next_u64() % n as u64) as usize }
    }
}

const INTERESTING_BYTES: [u8; 6] = [0x00, 0xFF, 0x7F, 0x80, 0x01, 0xFE];
const INTERESTING_INTS: [i64; 17] = [
    0,
    1,
    -1,
    2,
    8,
    16,
    0x7F,
    0x80,
    0xFF,
    0x7FFF,
    0x8000,
    0xFFFF,
    0x7FFF_FFFF,
    0x8000_0000,
    0xFFFF_FFFF,
    i64::MAX,
    i64::MIN,
];

/// Tokens of the text grammars, inserted or written over the input by text mutations.
pub const TEXT_TOKENS: &[&str] = &[
    "'",
    "\"",
    "\\",
    ",",
    "(",
    ")",
    ".",
    "\n",
    "\r\n",
    "\t",
    "::",
    ":",
    "%",
    "%2",
    "%25",
    "%22",
    "%2C",
    "%00",
    "{",
    "}",
    "[",
    "]",
    "=",
    "&",
    "!",
    "*",
    "-",
    "->",
    "->>",
    " ",
    "\0",
    "é",
    "\u{FEFF}",
    "\u{10FFFF}",
    "\u{1F600}",
    "\u{0301}",
];

fn insert_at(v: &mut Vec<u8>, at: usize, bytes: &[u8]) {
    let tail = v.split_off(at.min(v.len()));
    v.extend_from_slice(bytes);
    v.extend_from_slice(&tail);
}

fn remove_range(v: &mut Vec<u8>, from: usize, to: usize) {
    let tail = v.split_off(to.min(v.len()));
    v.truncate(from);
    v.extend_from_slice(&tail);
}

/// What one fuzz loop feeds its target.
pub struct Spec<'a> {
    /// The corpus directory's name (`testdata/fuzz/<name>`), also used in messages.
    pub name: &'a str,
    /// Extension of the saved crashing input (how the target's corpus tells kinds of seeds apart).
    pub ext: &'a str,
    /// Longest input after mutation.
    pub max_len: usize,
    /// Grammar tokens for text mutations (none for binary targets).
    pub tokens: &'a [&'a str],
}

/// Applies one to four random mutations to `data`, then cuts it to `max_len`.
pub fn mutate(rng: &mut Rng, data: &mut Vec<u8>, pool: &[Vec<u8>], spec: &Spec<'_>) {
    for _ in 0..1 + rng.below(4) {
        let len = data.len();
        // Text targets get token mutations a third of the time.
        let kinds = if spec.tokens.is_empty() { 9 } else { 13 };
        match rng.below(kinds) {
            // Bit flip.
            0 if len > 0 => {
                let i = rng.below(len);
                data[i] ^= 1 << rng.below(8);
            }
            // An interesting byte.
            1 if len > 0 => {
                let i = rng.below(len);
                data[i] = INTERESTING_BYTES[rng.below(INTERESTING_BYTES.len())];
            }
            // A random byte.
            2 if len > 0 => {
                let i = rng.below(len);
                data[i] = rng.next_u64() as u8;
            }
            // Truncation.
            3 if len > 0 => data.truncate(rng.below(len)),
            // Removal of a short range.
            4 if len > 1 => {
                let from = rng.below(len);
                let to = from + 1 + rng.below((len - from).min(16));
                remove_range(data, from, to);
            }
            // Duplication of a slice somewhere else.
            5 if len > 0 => {
                let from = rng.below(len);
                let n = 1 + rng.below((len - from).min(64));
                let slice = data[from..from + n].to_vec();
                let at = rng.below(len + 1);
                insert_at(data, at, &slice);
            }
            // Splice: a prefix of this input, a suffix of another.
            6 if !pool.is_empty() => {
                let other = &pool[rng.below(pool.len())];
                let cut = rng.below(len + 1);
                let from = rng.below(other.len() + 1);
                data.truncate(cut);
                data.extend_from_slice(&other[from..]);
            }
            // An interesting integer, 1, 2, 4 or 8 bytes wide, little- or big-endian.
            7 => {
                let width = [1usize, 2, 4, 8][rng.below(4)];
                if len >= width {
                    let at = rng.below(len - width + 1);
                    let v = INTERESTING_INTS[rng.below(INTERESTING_INTS.len())];
                    if rng.below(2) == 0 {
                        data[at..at + width].copy_from_slice(&v.to_le_bytes()[..width]);
                    } else {
                        data[at..at + width].copy_from_slice(&v.to_be_bytes()[8 - width..]);
                    }
                }
            }
            // A grammar token inserted.
            9 | 10 => {
                let t = spec.tokens[rng.below(spec.tokens.len())].as_bytes();
                let at = rng.below(len + 1);
                insert_at(data, at, t);
            }
            // A grammar token written over a short range.
            11 if len > 0 => {
                let t = spec.tokens[rng.below(spec.tokens.len())].as_bytes();
                let from = rng.below(len);
                let to = from + 1 + rng.below((len - from).min(4));
                remove_range(data, from, to);
                insert_at(data, from, t);
            }
            // A run of one token repeated (deep nesting, long quotes, many list items).
            12 if len > 0 => {
                let t = spec.tokens[rng.below(spec.tokens.len())].as_bytes();
                let run: Vec<u8> = t.iter().copied().cycle().take(t.len() * (1 + rng.below(32))).collect();
                let at = rng.below(len + 1);
                insert_at(data, at, &run);
            }
            // Random bytes inserted.
            _ => {
                let n = 1 + rng.below(8);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
                let at = rng.below(len + 1);
                insert_at(data, at, &bytes);
            }
        }
    }
    data.truncate(spec.max_len);
}

fn panic_message(e: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = e.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = e.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-text panic payload)".to_string()
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Runs `target` on one input; a panic fails the test with everything needed to reproduce it.
fn exec(spec: &Spec<'_>, budget: &Budget, what: &str, input: &[u8], target: &mut dyn FnMut(&[u8]) -> bool) -> bool {
    if budget.verbose {
        eprintln!("fuzz {} {what}: {}", spec.name, input.escape_ascii());
    }
    match panic::catch_unwind(AssertUnwindSafe(|| target(input))) {
        Ok(accepted) => accepted,
        Err(e) => {
            let saved = std::env::temp_dir().join(format!("bkg-fuzz-{}-crash.{}", spec.name, spec.ext));
            let saved = match std::fs::write(&saved, input) {
                Ok(()) => saved.display().to_string(),
                Err(e) => format!("(not saved: {e})"),
            };
            panic!(
                "fuzz target {} failed on {what} (BKG_FUZZ_SEED={:#x}): {}\n\
                 input, {} bytes:\n  hex: {}\n  escaped: {}\n\
                 saved to {saved}: copy it into testdata/fuzz/{}/ to replay it as a seed",
                spec.name,
                budget.seed,
                panic_message(&*e),
                input.len(),
                hex(input),
                input.escape_ascii(),
                spec.name,
            );
        }
    }
}

/// Runs every seed, then mutated inputs until the budget is spent. `target` returns whether it
/// accepted the input; accepted inputs become bases for later mutations.
pub fn run(spec: &Spec<'_>, budget: &Budget, seeds: &[(String, Vec<u8>)], target: &mut dyn FnMut(&[u8]) -> bool) {
    assert!(!seeds.is_empty(), "fuzz target {} has no seeds", spec.name);
    let start = Instant::now();
    let mut pool: Vec<Vec<u8>> = Vec::with_capacity(seeds.len() + POOL_EXTRA);
    for (label, seed) in seeds {
        exec(spec, budget, &format!("seed {label}"), seed, target);
        pool.push(seed.clone());
    }
    let nseeds = pool.len();
    let mut rng = Rng::new(budget.seed);
    let mut iter = 0u64;
    let mut accepted = 0u64;
    while iter < budget.iters && start.elapsed() < budget.time {
        let mut input = pool[rng.below(pool.len())].clone();
        mutate(&mut rng, &mut input, &pool, spec);
        let what = format!("iteration {iter} (reached with BKG_FUZZ_ITERS={})", iter + 1);
        if exec(spec, budget, &what, &input, target) {
            accepted += 1;
            if pool.len() < nseeds + POOL_EXTRA {
                pool.push(input);
            } else {
                let slot = nseeds + rng.below(POOL_EXTRA);
                pool[slot] = input;
            }
        }
        iter += 1;
    }
    eprintln!(
        "fuzz {} ({}): {} seeds, {iter} mutated inputs ({accepted} accepted) in {:.2?}",
        spec.name,
        spec.ext,
        seeds.len(),
        start.elapsed()
    );
}

/// The files of `testdata/fuzz/<name>/` (but README*), sorted by name.
pub fn corpus(name: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/fuzz").join(name);
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()));
    let mut out: Vec<(String, Vec<u8>)> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter_map(|p| {
            let file = p.file_name()?.to_str()?.to_string();
            if file.starts_with("README") {
                return None;
            }
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("corpus file {}: {e}", p.display()));
            Some((file, bytes))
        })
        .collect();
    out.sort();
    out
}
