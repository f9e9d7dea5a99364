//! The fuzz harness: random command lines and random input files (traces, GPU profiles,
//! cost presets, data folders), with extreme numbers, wrong encodings and large sizes, run
//! through the real `llmsim` binary under a memory limit and a time limit. Every run must
//! end by itself, with exit code 0 or 2 (a panic is 101, an allocation failure a signal),
//! print only finite numbers (JSON that parses, latency quantiles in order and within the
//! maximum, utilisations within [0, 1]), and on exit 2 print nothing on standard output and
//! a message that starts with `error:` and holds no Rust debug dump.
//!
//! `cargo test --release --test fuzz` tries 32 cases per suite (4 for `validate`) from a fixed seed (seconds).
//! A campaign: `LLMSIM_FUZZ_CASES=5000 LLMSIM_FUZZ_SEED=$RANDOM LLMSIM_FUZZ_LOG=FILE cargo
//! test --release --test fuzz` logs every failure and goes on; without `LLMSIM_FUZZ_LOG`
//! the first failure stops the suite and proptest shrinks it (its input files are shown
//! shortened; the same seed with `LLMSIM_FUZZ_LOG` set keeps each failure's folder).

mod common;

use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config, RngSeed, TestCaseError};
use std::fmt;
use std::path::Path;
use std::time::Duration;

/// Address space each run may use: far above what a small run needs (~100 MB), far below
/// what an allocation bomb asks for.
const MEMORY_LIMIT_BYTES: u64 = 2 << 30;

/// Sizes at which a run may legitimately take longer than the time limit (a thousand
/// million requests is a valid request): a timeout then is not a failure, a panic or an
/// allocation failure still is.
const HUGE_SIZE: f64 = 1e6;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The suites' settings, with `1 / share` of the cases (at least one): `validate` runs
/// dozens of checks of tens of thousands of requests whatever its flags, so it gets fewer.
fn config(share: u32) -> Config {
    Config {
        cases: (env_number("LLMSIM_FUZZ_CASES", 32) as u32 / share).max(1),
        // A fixed default seed: `cargo test` is repeatable; campaigns pass their own.
        rng_seed: RngSeed::Fixed(env_number("LLMSIM_FUZZ_SEED", 10)),
        // Each shrinking step may wait for a timeout; a rough minimum is enough to report.
        max_shrink_iters: 48,
        max_shrink_time: 120_000,
        failure_persistence: None,
        ..Config::default()
    }
}

fn time_limit() -> Duration {
    Duration::from_secs(env_number("LLMSIM_FUZZ_TIMEOUT_S", 8))
}

/// File contents, shown shortened and lossily in a failure report.
#[derive(Clone)]
struct Bytes(Vec<u8>);

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = String::from_utf8_lossy(&self.0[..self.0.len().min(300)]);
        write!(f, "{} bytes: {text:?}", self.0.len())
    }
}

/// One case: the arguments after `llmsim` and the files (relative paths) they may name.
#[derive(Clone, Debug)]
struct Case {
    args: Vec<String>,
    files: Vec<(&'static str, Bytes)>,
}

// ---- values ----

/// Numbers (and non-numbers) that broke, or could break, arithmetic and allocation.
fn extreme() -> BoxedStrategy<String> {
    let mut v: Vec<String> = [
        "0",
        "-1",
        "-0",
        "1e-320",
        "1e-15",
        "1e308",
        "1e200",
        "1e20",
        "1e10",
        "1e7",
        "10000000",
        "100000000",
        "NaN",
        "inf",
        "-inf",
        "4294967295",
        "4294967296",
        "18446744073709551615",
        "18446744073709551616",
        "0.5",
        "1",
        "2",
        "",
        "abc",
        "0x10",
        " 1",
        "1,5",
        "é",
    ]
    .map(String::from)
    .to_vec();
    v.push("9".repeat(5_000));
    // Four of these in one argument stay under Linux's 128 KiB limit on one argument.
    v.push("x".repeat(30_000));
    select(v).boxed()
}

/// A plausible value three times in four, an extreme one otherwise.
fn num(plausible: BoxedStrategy<String>) -> BoxedStrategy<String> {
    prop_oneof![3 => plausible, 1 => extreme()].boxed()
}

fn int(lo: u64, hi: u64) -> BoxedStrategy<String> {
    num((lo..=hi).prop_map(|x| x.to_string()).boxed())
}

fn float(lo: f64, hi: f64) -> BoxedStrategy<String> {
    num((lo..hi).prop_map(|x| format!("{x}")).boxed())
}

fn words(choices: &[&str]) -> BoxedStrategy<String> {
    let v: Vec<String> = choices.iter().map(|s| s.to_string()).collect();
    num(select(v).boxed())
}

/// A length law in `--prompt`/`--decode` syntax, numbers plausible or extreme.
fn length_spec() -> BoxedStrategy<String> {
    let n = || int(1, 2_000);
    prop_oneof![
        n(),
        (n(), n()).prop_map(|(a, b)| format!("uniform:{a}:{b}")),
        (n(), n()).prop_map(|(a, b)| format!("geometric:{a}:{b}")),
        (n(), float(0.0, 1.0), n(), float(0.0, 1.0))
            .prop_map(|(a, p, b, q)| format!("mix:{a}@{p},{b}@{q}")),
        (n(), float(0.1, 2.0), n()).prop_map(|(m, s, x)| format!("lognormal:{m}:{s}:{x}")),
        extreme().prop_map(|x| format!("junk:{x}")),
    ]
    .boxed()
}

fn cv_law(base: &'static [&'static str]) -> BoxedStrategy<String> {
    prop_oneof![
        words(base),
        float(0.05, 4.0).prop_map(|cv| format!("gamma:{cv}")),
    ]
    .boxed()
}

fn flag(name: &'static str, value: BoxedStrategy<String>) -> BoxedStrategy<Vec<String>> {
    value.prop_map(move |v| vec![name.to_string(), v]).boxed()
}

/// The flags `run` and `bench` share, each with its values.
fn engine_flags() -> Vec<BoxedStrategy<Vec<String>>> {
    vec![
        flag(
            "--scheduler",
            words(&[
                "a",
                "b",
                "static",
                "orca",
                "vllm",
                "sarathi",
                "decode-first",
                "disagg",
            ]),
        ),
        flag(
            "--workload",
            words(&[
                "synthetic",
                "azure:trace.csv",
                "azure:missing.csv",
                "azure:.",
            ]),
        ),
        flag("--rate", float(0.05, 20.0)),
        flag("--requests", int(2, 200)),
        flag("--warmup", int(0, 50)),
        flag("--arrivals", cv_law(&["poisson", "det"])),
        flag("--prompt", length_spec()),
        flag("--decode", length_spec()),
        flag(
            "--lengths-from",
            words(&["trace.csv", "lengths.csv", "missing.csv"]),
        ),
        flag(
            "--cost",
            words(&[
                "linear",
                "h200-llama3.1-8b",
                "h100-llama3.1-8b",
                "roofline:h100",
                "roofline:h200",
                "preset.toml",
                "missing.toml",
                "profile.csv",
            ]),
        ),
        flag("--c", float(1e-4, 0.05)),
        flag("--a", float(1e-6, 2e-3)),
        flag("--b0", int(0, 256)),
        flag("--cost-dist", cv_law(&["det", "exp"])),
        flag("--noise-cv", float(0.0, 1.0)),
        flag("--k", int(1, 64)),
        flag("--max-decode-batch", int(1, 512)),
        flag("--max-seqs", int(1, 512)),
        flag("--max-batched-tokens", int(16, 32_768)),
        flag("--watermark", float(0.0, 0.2)),
        flag("--preemption", words(&["recompute", "swap"])),
        flag("--swap-gbps", float(1.0, 100.0)),
        flag("--kv-capacity", int(16, 1_000_000)),
        flag("--gpu-mem-gb", float(20.0, 200.0)),
        flag("--gpu-mem-util", float(0.3, 1.0)),
        flag("--model", words(&["llama-3.1-8b"])),
        flag("--block-size", int(1, 64)),
        flag("--prefill-gpus", int(1, 4)),
        flag("--decode-gpus", int(1, 4)),
        flag("--kv-link-gbps", float(1.0, 400.0)),
        flag("--kv-link-latency", float(0.0, 0.01)),
        flag("--gpus", int(1, 8)),
        flag("--prefix-cache", words(&["on", "off"])),
        flag("--cpu-kv-blocks", int(0, 5000)),
        flag(
            "--router",
            prop_oneof![
                words(&["random", "round-robin", "jsq", "least-work", "central"]),
                int(1, 8).prop_map(|d| format!("power-of-d:{d}")),
            ]
            .boxed(),
        ),
        flag(
            "--seed",
            num(any::<u64>().prop_map(|s| s.to_string()).boxed()),
        ),
        flag("--reps", int(1, 3)),
    ]
}

/// `base` then up to `most` of `flags`, each named once; `defaults` are added where absent
/// (small runs unless the case says otherwise), and each of `switches` three times in four.
fn command(
    base: Vec<String>,
    flags: Vec<BoxedStrategy<Vec<String>>>,
    most: usize,
    defaults: &'static [(&'static str, &'static str)],
    switches: &'static [&'static str],
) -> BoxedStrategy<Vec<String>> {
    let one = proptest::strategy::Union::new(flags);
    let on = proptest::collection::vec(proptest::bool::weighted(0.75), switches.len());
    (proptest::collection::vec(one, 0..=most), on)
        .prop_map(move |(chosen, on)| {
            let mut args = base.clone();
            for (switch, on) in switches.iter().zip(on) {
                if on {
                    args.push(switch.to_string());
                }
            }
            for pair in chosen {
                if !args.contains(&pair[0]) {
                    args.extend(pair);
                }
            }
            for (name, value) in defaults {
                // A replay serves its trace; a default count would mostly exceed a small one.
                let replay = *name == "--requests" && args.iter().any(|a| a.starts_with("azure:"));
                if !replay && !args.iter().any(|a| a == name) {
                    args.extend([name.to_string(), value.to_string()]);
                }
            }
            args
        })
        .boxed()
}

// ---- files ----

/// How a file's text becomes its bytes.
#[derive(Clone, Debug)]
enum Encoding {
    Utf8,
    Crlf,
    Utf16WithBom,
    /// A Latin-1 byte (invalid UTF-8) inserted at this fraction of the length.
    StrayByte(f64),
    Utf8WithBom,
    /// Cut short at this fraction of the length.
    Cut(f64),
    /// Random bytes instead.
    Random(Vec<u8>),
}

fn encoding() -> BoxedStrategy<Encoding> {
    prop_oneof![
        6 => Just(Encoding::Utf8),
        1 => Just(Encoding::Crlf),
        1 => Just(Encoding::Utf16WithBom),
        1 => (0.0..1.0).prop_map(Encoding::StrayByte),
        1 => Just(Encoding::Utf8WithBom),
        1 => (0.0..1.0).prop_map(Encoding::Cut),
        1 => proptest::collection::vec(any::<u8>(), 0..300).prop_map(Encoding::Random),
    ]
    .boxed()
}

fn encode(text: String, how: Encoding) -> Bytes {
    let at = |f: f64| (text.len() as f64 * f) as usize;
    Bytes(match how {
        Encoding::Utf8 => text.into_bytes(),
        Encoding::Crlf => text.replace('\n', "\r\n").into_bytes(),
        Encoding::Utf16WithBom => [0xff, 0xfe]
            .into_iter()
            .chain(text.encode_utf16().flat_map(u16::to_le_bytes))
            .collect(),
        Encoding::StrayByte(f) => {
            let i = at(f);
            let mut b = text.into_bytes();
            b.insert(i, 0xe9);
            b
        }
        Encoding::Utf8WithBom => [b"\xef\xbb\xbf".as_slice(), text.as_bytes()].concat(),
        Encoding::Cut(f) => text.as_bytes()[..at(f)].to_vec(),
        Encoding::Random(bytes) => bytes,
    })
}

/// A whole file from its header and rows, the rows repeated `large` times now and then.
fn file(
    header: BoxedStrategy<String>,
    rows: BoxedStrategy<Vec<String>>,
    large: usize,
) -> BoxedStrategy<Bytes> {
    (
        header,
        rows,
        prop_oneof![9 => Just(1usize), 1 => Just(large)],
        encoding(),
    )
        .prop_map(|(header, rows, times, how)| {
            let mut text = header;
            for _ in 0..times {
                for row in &rows {
                    text.push('\n');
                    text.push_str(row);
                }
            }
            text.push('\n');
            encode(text, how)
        })
        .boxed()
}

fn tokens() -> BoxedStrategy<String> {
    int(1, 4_000)
}

/// An Azure trace: `TIMESTAMP,ContextTokens,GeneratedTokens`, times in order, equal,
/// backwards, centuries apart or not times at all.
fn trace() -> BoxedStrategy<Bytes> {
    let header = select(vec![
        "TIMESTAMP,ContextTokens,GeneratedTokens".to_string(),
        "ContextTokens,GeneratedTokens,TIMESTAMP".to_string(),
        "TIMESTAMP,ContextTokens".to_string(),
        "timestamp,context,generated".to_string(),
        String::new(),
    ]);
    let gap_ms = prop_oneof![
        6 => 0i64..5_000,
        1 => Just(0i64),
        1 => -5_000i64..0,
        1 => Just(3_000_000_000_000i64),
    ];
    let stamp = prop_oneof![
        8 => gap_ms.prop_map(Some),
        1 => Just(None),
    ];
    let row = (stamp, tokens(), tokens(), 0..4usize);
    let rows = proptest::collection::vec(row, 0..30).prop_map(|rows| {
        let base = time::macros::datetime!(2023-11-16 18:15:46);
        let mut at_ms = 0i64;
        rows.into_iter()
            .map(|(gap, ctx, generated, junk)| {
                let ts = match gap {
                    Some(g) => {
                        at_ms = at_ms.saturating_add(g);
                        match base.checked_add(time::Duration::milliseconds(at_ms)) {
                            Some(t) => format!(
                                "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:07}",
                                t.year(),
                                t.month() as u8,
                                t.day(),
                                t.hour(),
                                t.minute(),
                                t.second(),
                                t.nanosecond() / 100
                            ),
                            None => "99999-01-01 00:00:00".into(),
                        }
                    }
                    None => [
                        "",
                        "yesterday",
                        "2023-13-45 99:99:99",
                        "0000-01-01 00:00:00",
                    ][junk]
                        .to_string(),
                };
                format!("{ts},{ctx},{generated}")
            })
            .collect::<Vec<_>>()
    });
    file(header.boxed(), rows.boxed(), 1_000)
}

/// A GPU profile in `llmsim calibrate`'s format, rows consistent or not.
fn profile() -> BoxedStrategy<Bytes> {
    const HEADER: &str = "model,kind,prefill_seqs,prefill_len,prefill_tokens,decode_batch,decode_context,batch_tokens,median_ms,p10_ms,p90_ms,reps";
    let header = select(vec![
        HEADER.to_string(),
        HEADER.replace(",median_ms", ""),
        "model,kind".to_string(),
    ]);
    let prefill = (1u64..8, 16u64..2_048, 0.8f64..1.2).prop_map(|(s, l, f)| {
        let t = s * l;
        let ms = (5.0 + 0.02 * t as f64 + 2e-6 * (l * l * s) as f64) * f;
        vec![
            "llama-3.1-8b".into(),
            "prefill".into(),
            s.to_string(),
            l.to_string(),
            t.to_string(),
            "0".into(),
            "0".into(),
            t.to_string(),
            format!("{ms}"),
            format!("{}", ms * 0.99),
            format!("{}", ms * 1.01),
            "8".into(),
        ]
    });
    let decode = (1u64..256, 64u64..8_192, 0.8f64..1.2).prop_map(|(b, c, f)| {
        let ms = (6.0 + 0.01 * b as f64 + 3e-5 * (b * c) as f64) * f;
        vec![
            "llama-3.1-8b".into(),
            "decode".into(),
            "0".into(),
            "0".into(),
            "0".into(),
            b.to_string(),
            c.to_string(),
            b.to_string(),
            format!("{ms}"),
            format!("{}", ms * 0.99),
            format!("{}", ms * 1.01),
            "8".into(),
        ]
    });
    // One field replaced by an extreme value (or a kind of nothing) now and then.
    let row = (
        prop_oneof![prefill, decode],
        prop_oneof![4 => Just(None), 1 => (0..12usize, extreme()).prop_map(Some)],
    )
        .prop_map(|(mut cells, spoil)| {
            if let Some((i, v)) = spoil {
                cells[i] = v;
            }
            cells.join(",")
        });
    // Fitting costs about a millisecond per row: 2,000 rows at most keep it in the limit.
    file(
        header.boxed(),
        proptest::collection::vec(row, 0..40).boxed(),
        50,
    )
}

/// One value of a preset key.
#[derive(Clone, Debug)]
enum PresetValue {
    /// The H200 preset's value times this factor.
    Scaled(f64),
    /// The key left out.
    Absent,
    /// This TOML text instead.
    Literal(&'static str),
}

/// A cost preset TOML: the H200 preset's keys, each scaled, extreme, wrongly typed or
/// absent; or not TOML at all.
fn preset() -> BoxedStrategy<Bytes> {
    const KEYS: [(&str, f64); 7] = [
        ("setup_s", 0.0057),
        ("prefill_setup_s", 0.00069),
        ("per_token_s", 2.35e-5),
        ("free_tokens", 112.0),
        ("prefill_attention_s", 8.0e-10),
        ("per_kv_token_s", 3.2e-8),
        ("min_attention_seqs", 11.0),
    ];
    let value = prop_oneof![
        6 => (0.5f64..2.0).prop_map(PresetValue::Scaled),
        1 => Just(PresetValue::Absent),
        2 => select(vec![
            "1e308", "-1", "nan", "inf", "0", "1e-320", "\"x\"", "[]", "-0.0", "1e20",
            "4294967295", "18446744073709551615",
        ])
        .prop_map(PresetValue::Literal),
    ];
    (
        proptest::collection::vec(value, 7),
        select(vec!["h200-fuzz", "", "\u{0}", "a\"b"]),
        encoding(),
    )
        .prop_map(|(values, name, how)| {
            let mut text = format!("name = {name:?}\nsource = \"fuzz\"\n\n[profiled]\n");
            for ((key, base), v) in KEYS.iter().zip(values) {
                match v {
                    PresetValue::Absent => {}
                    PresetValue::Literal(t) => text.push_str(&format!("{key} = {t}\n")),
                    PresetValue::Scaled(f) => text.push_str(&format!("{key} = {:?}\n", base * f)),
                }
            }
            encode(text, how)
        })
        .boxed()
}

/// The input files every case has, whichever its arguments name.
fn files() -> BoxedStrategy<Vec<(&'static str, Bytes)>> {
    (trace(), trace(), profile(), profile(), preset())
        .prop_map(|(t, l, p, c, s)| {
            vec![
                ("trace.csv", t),
                ("lengths.csv", l),
                ("profile.csv", p),
                ("check.csv", c),
                ("preset.toml", s),
            ]
        })
        .boxed()
}

fn case(args: BoxedStrategy<Vec<String>>) -> BoxedStrategy<Case> {
    (args, files())
        .prop_map(|(args, files)| Case { args, files })
        .boxed()
}

// ---- running and judging ----

fn shell_quote(a: &str) -> String {
    if !a.is_empty()
        && a.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/@,=".contains(&b))
    {
        a.into()
    } else {
        format!("'{}'", a.replace('\'', "'\\''"))
    }
}

/// The numeric value of flag `name` in `args`, if given and a number.
fn flag_value(args: &[String], name: &str) -> Option<f64> {
    let i = args.iter().position(|a| a == name)?;
    args.get(i + 1)?.trim().parse().ok()
}

/// Whether the case asks for a size at which a long run is legitimate.
fn may_run_long(args: &[String]) -> bool {
    [
        "--requests",
        "--reps",
        "--repeat",
        "--gpus",
        "--prefill-gpus",
        "--decode-gpus",
        "--warmup",
    ]
    .iter()
    .any(|f| flag_value(args, f).is_some_and(|v| v >= HUGE_SIZE))
}

/// Longest run of ASCII digits in `s`.
fn longest_digits(s: &str) -> usize {
    s.split(|c: char| !c.is_ascii_digit())
        .map(str::len)
        .max()
        .unwrap_or(0)
}

/// What is wrong with a finished run's output, if anything.
fn judge(case: &Case, code: i32, stdout: &str, stderr: &str) -> Option<String> {
    let args = &case.args;
    // `validate` says so with exit 1 when a check falls outside its interval, which small
    // samples make likely: a verdict, not a failure.
    let verdict = args[0] == "validate" && code == 1 && stderr.contains("outside their 99.9%");
    if code != 0 && code != 2 && !verdict {
        return Some(format!("exit code {code} (allowed: 0, 2)"));
    }
    if stderr.contains("panicked") || stderr.contains("RUST_BACKTRACE") {
        return Some("a panic message on stderr".into());
    }
    if code != 0 {
        // Notes and warnings may come first; the error itself must follow them.
        let before_error = stderr
            .trim()
            .lines()
            .take_while(|l| !l.starts_with("error:"))
            .all(|l| l.starts_with("warning:") || l.starts_with("note:"));
        let msg = stderr.trim();
        let error_at = msg.find("error:").unwrap_or(msg.len());
        if !before_error || msg.len() - error_at < 15 {
            return Some("exit 2 without an `error: ...` message".into());
        }
        for dump in [
            "Some(",
            "Position {",
            "Utf8 {",
            "Error {",
            "ErrorKind",
            "{ pos:",
            "Os { code",
        ] {
            if msg.contains(dump) {
                return Some(format!("a Rust debug dump in the message ({dump})"));
            }
        }
        let given = args
            .iter()
            .map(|a| longest_digits(a))
            .chain(
                case.files
                    .iter()
                    .map(|(_, Bytes(b))| longest_digits(&String::from_utf8_lossy(b))),
            )
            .max()
            .unwrap_or(0);
        if longest_digits(msg) > given.max(40) {
            return Some("the message spells a number with more digits than any input".into());
        }
        if !stdout.trim().is_empty() && !verdict {
            return Some("exit 2 after printing on stdout".into());
        }
        return None;
    }
    // NaN printed, unless it is a name the case gave (a folder called NaN).
    if stdout.contains("NaN") && !args.iter().any(|a| a.contains("NaN")) {
        return Some("NaN on stdout".into());
    }
    let json = args.iter().any(|a| a == "--json");
    if json {
        let value: serde_json::Value = match serde_json::from_str(stdout) {
            Ok(v) => v,
            Err(e) => return Some(format!("stdout is not JSON with finite numbers: {e}")),
        };
        if args[0] == "run" {
            return run_invariants(&value);
        }
    }
    None
}

/// What `llmsim run --json` promises of its numbers, checked where they appear.
fn run_invariants(v: &serde_json::Value) -> Option<String> {
    use serde_json::Value;
    let f = |v: &Value, key: &str| v.get(key).and_then(Value::as_f64);
    let fraction = |x: f64| (0.0..=1.0 + 1e-9).contains(&x);
    for key in ["utilization", "kv_utilization", "kv_peak_utilization"] {
        if let Some(x) = f(v, key).filter(|x| !fraction(*x)) {
            return Some(format!("{key} = {x}, outside [0, 1]"));
        }
    }
    if let Some(gpus) = v.get("gpu_utilization").and_then(Value::as_array)
        && let Some(x) = gpus
            .iter()
            .filter_map(Value::as_f64)
            .find(|x| !fraction(*x))
    {
        return Some(format!("a gpu_utilization of {x}, outside [0, 1]"));
    }
    // The README allows `null` for `capacity_rps` and for latencies with nothing measured.
    for key in ["throughput_rps", "tokens_per_s", "utilization", "window_s"] {
        match f(v, key) {
            Some(x) if x >= 0.0 => {}
            _ => return Some(format!("{key} is {}, not a number >= 0", v[key])),
        }
    }
    let none_measured = f(v, "completed") == Some(0.0);
    for key in ["ttft", "tbt", "itl", "e2e"] {
        let Some(stats) = v.get(key) else { continue };
        // A first token may be measured without a completion (a run cut at its last
        // arrival), an end-to-end latency not.
        if key == "e2e" && none_measured && !stats["mean"].is_null() {
            return Some(format!(
                "{key}.mean is {} with no measured completion (null expected)",
                stats["mean"]
            ));
        }
        let q: Vec<Option<f64>> = ["p50", "p90", "p95", "p99", "max"]
            .iter()
            .map(|k| f(stats, k))
            .collect();
        let q: Vec<f64> = q.into_iter().flatten().collect();
        if q.iter().any(|x| *x < 0.0) {
            return Some(format!("{key} has a negative quantile: {stats}"));
        }
        if q.len() == 5 && q.windows(2).any(|w| w[0] > w[1] * (1.0 + 1e-9)) {
            return Some(format!(
                "{key}'s quantiles are out of order or above the maximum: {stats}"
            ));
        }
    }
    None
}

fn run_case(case: &Case) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().expect("a temporary folder");
    for (name, Bytes(bytes)) in &case.files {
        std::fs::write(dir.path().join(name), bytes).expect("a case file");
    }
    // The shared inputs of `reproduce`'s trace experiments, from the same files.
    let shared = dir.path().join("shared");
    std::fs::create_dir_all(shared.join("traces")).unwrap();
    std::fs::create_dir_all(shared.join("calibration")).unwrap();
    for (from, to) in [
        ("trace.csv", "traces/AzureLLMInferenceTrace_conv.csv"),
        ("lengths.csv", "traces/AzureLLMInferenceTrace_code.csv"),
        ("profile.csv", "calibration/h200_llama-3.1-8b.csv"),
    ] {
        std::fs::copy(dir.path().join(from), shared.join(to)).unwrap();
    }
    // A data folder of junk for `report`.
    let junk = dir.path().join("junk-data");
    std::fs::create_dir(&junk).unwrap();
    for (from, to) in [
        ("trace.csv", "data_scheduler_a_throughput_sweep.csv"),
        ("preset.toml", "data_scheduler_a_throughput_sweep.meta.json"),
        ("profile.csv", "manifest.json"),
    ] {
        std::fs::copy(dir.path().join(from), junk.join(to)).unwrap();
    }

    let bin =
        std::env::var_os("LLMSIM_FUZZ_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_llmsim").into());
    let mut cmd = if Path::new("/usr/bin/prlimit").exists() {
        let mut c = std::process::Command::new("/usr/bin/prlimit");
        c.arg(format!("--as={MEMORY_LIMIT_BYTES}"))
            .arg("--")
            .arg(bin);
        c
    } else {
        std::process::Command::new(bin)
    };
    cmd.args(&case.args)
        .current_dir(dir.path())
        .env("RAYON_NUM_THREADS", "2")
        .env("RUST_BACKTRACE", "0")
        .env_remove("LLMSIM_SHARED")
        .env_remove("LLMSIM_REQUIRE_SHARED");
    let line = format!(
        "llmsim {}",
        case.args
            .iter()
            .map(|a| if a.len() > 200 {
                format!("'{}...' ({} chars)", &a[..20], a.len())
            } else {
                shell_quote(a)
            })
            .collect::<Vec<_>>()
            .join(" ")
    );
    // A size at which a long run is legitimate gets the time an allocation bomb needs to
    // go off, not the time the run needs.
    let long = may_run_long(&case.args);
    let limit = if long {
        time_limit().min(Duration::from_secs(2))
    } else {
        time_limit()
    };
    let start = std::time::Instant::now();
    let result = common::output_within(&mut cmd, limit);
    if std::env::var_os("LLMSIM_FUZZ_VERBOSE").is_some() {
        eprintln!("{:>6.2} s  {line}", start.elapsed().as_secs_f64());
    }
    let verdict = match result {
        None if long => None,
        None => Some(format!("still running after {limit:?}, killed")),
        Some(o) => {
            let (stdout, stderr) = (
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr),
            );
            let code = o.status.code().unwrap_or_else(|| {
                use std::os::unix::process::ExitStatusExt;
                128 + o.status.signal().unwrap_or(0)
            });
            judge(case, code, &stdout, &stderr).map(|why| {
                let tail = |s: &str| {
                    s.chars()
                        .rev()
                        .take(1_500)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .collect::<String>()
                };
                format!(
                    "{why}\n  stdout: {}\n  stderr: {}",
                    tail(&stdout),
                    tail(&stderr)
                )
            })
        }
    };
    let Some(why) = verdict else { return Ok(()) };
    match std::env::var_os("LLMSIM_FUZZ_LOG") {
        // A campaign logs every failure with its folder, kept for rerunning, and goes on.
        Some(log) => {
            use std::io::Write;
            let kept = dir.keep();
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .expect("the fuzz log opens");
            writeln!(f, "rerun: cd {} && {line}\n  {why}", kept.display())
                .expect("the fuzz log takes it");
            Ok(())
        }
        // Shrinking fails many times on the way: the folders of all would litter the disk;
        // the same seed with LLMSIM_FUZZ_LOG set keeps them.
        None => Err(TestCaseError::fail(format!("{line}\n  {why}\n"))),
    }
}

// ---- the suites ----

fn words_owned(w: &[&str]) -> Vec<String> {
    w.iter().map(|s| s.to_string()).collect()
}

/// `reproduce`'s experiments that take well under a second with `--quick`, and the two that
/// read the shared inputs (here the case's own trace and profile).
const QUICK_EXPERIMENTS: [&str; 8] = [
    "scheduler_a_baseline",
    "validation_light_traffic",
    "capacity_vs_k",
    "sensitivity_ca",
    "sensitivity_regime",
    "latency_cdf",
    "trace_capacity",
    "roofline",
];

proptest! {
    #![proptest_config(config(1))]

    #[test]
    fn run_survives_any_flags_and_files(c in case(command(
        words_owned(&["run"]),
        engine_flags(),
        10,
        &[("--requests", "60")],
        &["--json"],
    ))) {
        run_case(&c)?;
    }

    #[test]
    fn bench_survives_any_flags_and_files(c in case(command(
        words_owned(&["bench"]),
        {
            let mut f = engine_flags();
            f.push(flag("--repeat", int(0, 2)));
            f
        },
        8,
        &[("--requests", "60"), ("--repeat", "1")],
        &[],
    ))) {
        run_case(&c)?;
    }

    #[test]
    fn calibrate_survives_any_profile_and_flags(c in case(command(
        vec!["calibrate".into()],
        vec![
            flag("--check", words(&["check.csv", "profile.csv", "missing.csv", "trace.csv"])),
            flag("--out", words(&["out.toml", "missing/out.toml", "profile.csv/out.toml", "."])),
            flag("--name", words(&["fuzz", "a\"b", "\u{1F600}"])),
            flag("--source", words(&["somewhere", "\n"])),
            flag("--roofline", words(&["h100", "h200", "h300"])),
        ],
        5,
        &[],
        &[],
    ).prop_flat_map(|args| {
        (Just(args), select(words_owned(&["profile.csv", "check.csv", "trace.csv", "preset.toml", "missing.csv", "."])))
    }).prop_map(|(mut args, profile)| {
        args.insert(1, profile);
        args
    }).boxed())) {
        run_case(&c)?;
    }

    #[test]
    fn reproduce_and_report_survive_any_flags_and_inputs(c in case(prop_oneof![
        command(
            words_owned(&["reproduce", "--quick"]),
            vec![
                flag("--only", words(&QUICK_EXPERIMENTS)),
                flag("--out", words(&["data", "new/deep/data", "profile.csv", "profile.csv/data"])),
                flag("--seed", num(any::<u64>().prop_map(|s| s.to_string()).boxed())),
                flag("--shared", words(&["shared", "missing-shared", "trace.csv"])),
                flag("--report", words(&["report", "profile.csv/report"])),
            ],
            5,
            &[("--only", "sensitivity_regime"), ("--shared", "shared")],
            &[],
        ),
        command(
            words_owned(&["report"]),
            vec![
                flag("--data", words(&["junk-data", "missing", "profile.csv", "shared"])),
                flag("--out", words(&["report", "profile.csv/report"])),
            ],
            2,
            &[("--data", "junk-data")],
            &[],
        ),
    ].boxed())) {
        run_case(&c)?;
    }
}

proptest! {
    #![proptest_config(config(8))]

    #[test]
    fn validate_survives_any_flags(c in case(command(
        words_owned(&["validate"]),
        vec![flag("--reps", int(2, 4)), flag("--requests", int(100, 1_000))],
        2,
        &[("--reps", "2"), ("--requests", "300")],
        &["--json"],
    ))) {
        run_case(&c)?;
    }
}
