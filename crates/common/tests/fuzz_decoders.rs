//! Every decoder of untrusted bytes survives random and mutated inputs without a panic: jobs,
//! job events and states (from any publisher or worker), worker heartbeats, monitor events,
//! cache entries and manifests (from any shared tier), and the sealed records under them.
//!
//! A seeded property loop, no fuzzing engine: each decoder gets valid encodings mutated (bit
//! flips, interesting bytes, truncation, splices, inserted, deleted and repeated ranges,
//! huge length prefixes), structurally plausible msgpack trees, and pure random bytes. A
//! sealed record is fuzzed twice: as stored (the seal refuses almost everything) and with its
//! body mutated then sealed again, which reaches the decoder behind the seal.
//!
//! The suite runs [`SUITE_INPUTS`] inputs per decoder; `bench/fuzz_decoders.sh` runs the
//! ignored test with 10⁶ (`JETCC_FUZZ_INPUTS`, `JETCC_FUZZ_SEED`). A panic prints the
//! decoder, the seed and the input in hex, to be kept below as a regression case.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use jetcc_common::buildscript::Directives;
use jetcc_common::cache::PathsMark;
use jetcc_common::depinfo::DepInfo;
use jetcc_common::digest::{seal, unseal};
use jetcc_common::manifest::{Manifest, ManifestEntry, Source};
use jetcc_common::protocol::events::{JobDone, UnitEvent};
use jetcc_common::protocol::job::{InputFile, JobEvent, JobReply, JobRequest, JobState, KeyPaths};
use jetcc_common::protocol::worker::WorkerStatus;
use jetcc_common::protocol::PROTOCOL_VERSION;
use jetcc_common::result::{CacheEntry, OutputFile, FORMAT_VERSION};
use jetcc_common::Digest;

/// Inputs per decoder in the suite: a few seconds in all in release.
const SUITE_INPUTS: u64 = 20_000;

/// xorshift64*: small, fast, reproducible from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// A decoder under test: takes any bytes, must return (anything) without panicking.
struct Decoder {
    name: &'static str,
    seeds: Vec<Vec<u8>>,
    /// Sealed records: also fuzz the body behind a valid seal.
    sealed: bool,
    decode: fn(&[u8]),
}

fn digest(n: u8) -> Digest {
    Digest::of_bytes(&[n])
}

fn job() -> JobRequest {
    JobRequest {
        version: PROTOCOL_VERSION,
        job_id: "0123456789abcdef0123456789abcdef".into(),
        reply_subject: "jetcc.reply.ci.0123456789abcdef0123456789abcdef".into(),
        crate_name: "leaf".into(),
        deadline_unix_ms: 1_700_000_000_000,
        toolchain: digest(1),
        args: vec!["--crate-name".into(), "leaf".into(), "src/lib.rs".into()],
        env: vec![("CARGO_PKG_NAME".into(), "leaf".into())],
        cwd: "/w/leaf".into(),
        inputs: vec![InputFile {
            path: "/w/leaf/src/lib.rs".into(),
            digest: digest(2),
            size: 10,
            mode: 0o644,
        }],
        system_inputs: vec![InputFile {
            path: "/usr/include/stdio.h".into(),
            digest: digest(3),
            size: 1,
            mode: 0o644,
        }],
        dirs: vec!["/w/leaf/src".into()],
        out_dir: "/w/target/debug/deps".into(),
        outputs: vec!["libleaf.rlib".into(), "leaf.d".into()],
        key_paths: KeyPaths {
            portable: true,
            base_dirs: vec!["/w".into()],
            cargo_home: Some("/home/ci/.cargo".into()),
            home: Some("/home/ci".into()),
        },
        shipped: None,
        inline: vec![],
    }
}

fn events() -> Vec<Vec<u8>> {
    [
        JobEvent::Started,
        JobEvent::Stderr(b"warning: unused\n".to_vec()),
        JobEvent::Artifact {
            name: "libleaf.rmeta".into(),
            digest: digest(4),
            line: br#"{"$message_type":"artifact"}"#.to_vec(),
            inline: None,
        },
        JobEvent::Done {
            exit_code: 0,
            stdout: vec![],
            outputs: vec![("libleaf.rlib".into(), digest(5))],
            compile_ms: 12,
            inline: vec![],
        },
        JobEvent::Refused {
            reason: "no".into(),
        },
    ]
    .iter()
    .map(|event| {
        JobReply::encode_parts(
            "00112233445566778899aabbccddeeff",
            "worker-a.host-1-0000beef",
            event,
        )
    })
    .collect()
}

fn states() -> Vec<Vec<u8>> {
    [
        JobState::Running { worker: "w".into() },
        JobState::Done {
            exit_code: 1,
            stdout: b"x".to_vec(),
            stderr: b"error\n".to_vec(),
            outputs: vec![("a.o".into(), digest(6))],
            compile_ms: 3,
        },
        JobState::Refused { reason: "r".into() },
    ]
    .iter()
    .map(JobState::encode)
    .collect()
}

fn status() -> WorkerStatus {
    WorkerStatus {
        id: "worker-a.host-1-0000beef".into(),
        host: "host".into(),
        cores: 8,
        slots: 4,
        free_slots: 2,
        toolchains: vec![digest(7)],
        toolchain_names: vec!["rustc 1.95.0".into()],
        jobs_done: 5,
        jobs_failed: 1,
        version: "0.1.0".into(),
        unix_ms: 1,
        rtt_us: 300,
        name: "host".into(),
        ships_for: vec![],
        shipped: vec![],
        shipped_names: vec![],
    }
}

fn entry() -> CacheEntry {
    CacheEntry {
        version: FORMAT_VERSION,
        outputs: vec![OutputFile {
            name: "libleaf.rlib".into(),
            digest: digest(8),
            size: 1234,
            mode: 0o644,
        }],
        dep_info: Some(("leaf.d".into(), "leaf.rlib: src/lib.rs\n".into())),
        stdout: vec![],
        stderr: b"warning\n".to_vec(),
        exit_code: 0,
        compile_ms: 50,
    }
}

fn manifest() -> Manifest {
    let mut m = Manifest::default();
    m.insert(ManifestEntry {
        sources: vec![Source {
            path: "src/lib.rs".into(),
            digest: digest(9),
            stamp: None,
        }],
        env_deps: vec![("FIXTURE_STAMP".into(), Some("v1".into()))],
        local_roots: vec![],
        key: digest(10),
        stored_at: 7,
    });
    m
}

fn decoders() -> Vec<Decoder> {
    vec![
        Decoder {
            name: "JobRequest",
            seeds: vec![job().encode()],
            sealed: false,
            decode: |b| {
                if let Ok(j) = JobRequest::decode(b) {
                    let _ = j.dedup_key();
                }
                if let Ok(j) = JobRequest::decode_unchecked(b) {
                    let _ = (j.validate(), j.dedup_key());
                }
            },
        },
        Decoder {
            name: "JobEvent",
            seeds: events(),
            sealed: false,
            decode: |b| {
                let _ = JobReply::decode(b).map(|e| format!("{e:?}"));
            },
        },
        Decoder {
            name: "JobState",
            seeds: states(),
            sealed: false,
            decode: |b| {
                let _ = JobState::decode(b).map(|s| format!("{s:?}"));
            },
        },
        Decoder {
            name: "WorkerStatus",
            seeds: vec![status().encode()],
            sealed: false,
            decode: |b| {
                if let Ok(s) = WorkerStatus::decode(b) {
                    let _ = s.is_fresh(std::time::SystemTime::now());
                }
            },
        },
        Decoder {
            name: "UnitEvent",
            seeds: vec![
                br#"{"v":1,"host":"h","kind":"c_compile","crate_name":"x","outcome":"hit","hit_tier":"jetstream","compiled":"remote","fallback":"farm-slow","compile_ms":3,"duration_ms":5,"tiers":{"local":{"hits":1,"misses":2}}}"#.to_vec(),
                br#"{"v":1,"host":"h","crate_name":"x","outcome":"miss","duration_ms":5}"#.to_vec(),
            ],
            sealed: false,
            decode: |b| {
                let _ = UnitEvent::decode(b);
            },
        },
        Decoder {
            name: "JobDone",
            seeds: vec![
                br#"{"v":1,"worker":"w.a","crate_name":"x","ok":false,"error":"e","duration_ms":5}"#.to_vec(),
            ],
            sealed: false,
            decode: |b| {
                let _ = JobDone::decode(b);
            },
        },
        Decoder {
            name: "CacheEntry",
            seeds: vec![entry().encode()],
            sealed: true,
            decode: |b| {
                if let Some(e) = CacheEntry::decode(b) {
                    let _ = e.total_output_bytes();
                }
            },
        },
        Decoder {
            name: "Manifest",
            seeds: vec![manifest().encode()],
            sealed: true,
            decode: |b| {
                let _ = Manifest::decode(b).newest_stored_at();
            },
        },
        Decoder {
            name: "unseal",
            seeds: vec![seal(b"body".to_vec()), seal(Vec::new())],
            sealed: false,
            decode: |b| {
                let _ = unseal(b);
            },
        },
        Decoder {
            name: "PathsMark",
            seeds: vec![PathsMark::now("host").encode()],
            sealed: false,
            decode: |b| {
                let _ = PathsMark::decode(b);
            },
        },
        // A hit replays a cached build-script run's stdout as its directives, and restores a
        // cached dep-info: both texts come from a tier.
        Decoder {
            name: "Directives",
            seeds: vec![b"cargo:rerun-if-changed=build.rs\ncargo::rustc-env=A=B\ncargo:rustc-cfg=x\ncargo:rerun-if-env-changed=E\n".to_vec()],
            sealed: false,
            decode: |b| {
                let _ = Directives::parse(b);
            },
        },
        Decoder {
            name: "DepInfo",
            seeds: vec![b"a.rlib: src/lib.rs src/a\\ b.rs\n\nsrc/lib.rs:\n# env-dep:X=1\n# env-dep:Y\n".to_vec()],
            sealed: false,
            decode: |b| {
                let _ = DepInfo::parse(&String::from_utf8_lossy(b));
            },
        },
    ]
}

/// Bytes that often sit on a decoder's edges: msgpack markers, length prefixes, limits.
const INTERESTING: &[u8] = &[
    0x00, 0x01, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6,
    0xcc, 0xcd, 0xce, 0xcf, 0xd0, 0xd3, 0xd9, 0xda, 0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0xe0, 0xff, b'"',
    b'{', b'}', b'[', b']', b':', b',', b'\\', b'\n', b' ',
];

/// One mutation of `data` (which may become empty), `other` being a second input to splice.
fn mutate(rng: &mut Rng, data: &mut Vec<u8>, other: &[u8]) {
    let len = data.len();
    match rng.below(10) {
        0 => {
            for _ in 0..1 + rng.below(8) {
                if !data.is_empty() {
                    let i = rng.below(data.len());
                    data[i] ^= 1 << rng.below(8);
                }
            }
        }
        1 => {
            if len > 0 {
                let i = rng.below(len);
                data[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
        }
        2 => data.truncate(rng.below(len + 1)),
        3 => {
            let cut = rng.below(len + 1);
            let from = rng.below(other.len() + 1);
            data.truncate(cut);
            data.extend_from_slice(&other[from..]);
        }
        4 => {
            let at = rng.below(len + 1);
            let n = 1 + rng.below(16);
            let bytes = rng.bytes(n);
            insert(data, at, &bytes);
        }
        5 => {
            if len > 0 {
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(32));
                data.drain(at..at + n);
            }
        }
        6 => {
            if len > 0 {
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(64));
                let chunk = data[at..at + n].to_vec();
                for _ in 0..1 + rng.below(4) {
                    insert(data, at, &chunk);
                }
            }
        }
        7 => {
            // A huge length: array32, map32, str32 or bin32 claiming up to 4 Gi items.
            let at = rng.below(len + 1);
            let marker = [0xdd, 0xdf, 0xdb, 0xc6][rng.below(4)];
            let n = [u32::MAX, 1 << 31, 1 << 20, 70_000][rng.below(4)];
            let mut bytes = vec![marker];
            bytes.extend_from_slice(&n.to_be_bytes());
            insert(data, at, &bytes);
        }
        8 => {
            if len > 0 {
                let i = rng.below(len);
                let v = rng.next() as u8;
                data[i] = data[i].wrapping_add(v % 5).wrapping_sub(2);
            }
        }
        _ => {
            let n = rng.below(64);
            *data = rng.bytes(n);
        }
    }
}

fn insert(data: &mut Vec<u8>, at: usize, bytes: &[u8]) {
    let tail = data.split_off(at);
    data.extend_from_slice(bytes);
    data.extend_from_slice(&tail);
}

/// A random msgpack value, shallow, drawn towards what jetcc's messages hold: names of
/// variants and fields, 32-byte digests, small and huge lengths.
fn msgpack(rng: &mut Rng, out: &mut Vec<u8>, depth: u32) {
    const WORDS: &[&str] = &[
        "Started",
        "Stderr",
        "Artifact",
        "Done",
        "Refused",
        "Running",
        "version",
        "job_id",
        "outputs",
        "name",
        "digest",
        "",
        "..",
        "/",
        "a/../b",
        "libx.rlib",
    ];
    let pick = if depth > 3 {
        rng.below(6)
    } else {
        rng.below(9)
    };
    match pick {
        0 => out.push([0xc0, 0xc2, 0xc3][rng.below(3)]),
        1 => out.push(rng.below(128) as u8),
        2 => {
            out.push(0xcf);
            out.extend_from_slice(&rng.next().to_be_bytes());
        }
        3 => {
            let w = WORDS[rng.below(WORDS.len())].as_bytes();
            out.push(0xa0 | w.len() as u8);
            out.extend_from_slice(w);
        }
        4 => {
            let n = [0usize, 1, 31, 32, 33, 200][rng.below(6)];
            out.push(0xc4);
            out.push(n as u8);
            out.extend(rng.bytes(n));
        }
        5 => {
            out.push(0xd0);
            out.push(rng.next() as u8);
        }
        6 | 7 => {
            let n = rng.below(6);
            out.push(0x90 | n as u8);
            for _ in 0..n {
                msgpack(rng, out, depth + 1);
            }
        }
        _ => {
            let n = rng.below(3);
            out.push(0x80 | n as u8);
            for _ in 0..n {
                msgpack(rng, out, depth + 1);
                msgpack(rng, out, depth + 1);
            }
        }
    }
}

/// The next input for `d`: mostly a mutated seed, sometimes a random tree or random bytes.
fn input(rng: &mut Rng, d: &Decoder) -> Vec<u8> {
    let seed = &d.seeds[rng.below(d.seeds.len())];
    let other = &d.seeds[rng.below(d.seeds.len())];
    let mut data = match rng.below(10) {
        0 => {
            let n = rng.below(512);
            return rng.bytes(n);
        }
        1 => {
            let mut v = Vec::new();
            msgpack(rng, &mut v, 0);
            v
        }
        _ => seed.clone(),
    };
    // Sealed: mostly mutate the body and seal it again, to get past the seal.
    let reseal = d.sealed && rng.below(4) != 0;
    if reseal {
        data = unseal(&data).map(<[u8]>::to_vec).unwrap_or(data);
    }
    for _ in 0..1 + rng.below(4) {
        mutate(rng, &mut data, other);
    }
    if reseal {
        data = seal(data);
    }
    data
}

/// Runs `inputs` inputs through every decoder; panics naming the first input that panicked.
fn fuzz(inputs: u64, seed: u64) {
    let mut rng = Rng(seed | 1);
    for d in decoders() {
        let t0 = Instant::now();
        for i in 0..inputs {
            let data = input(&mut rng, &d);
            if catch_unwind(AssertUnwindSafe(|| (d.decode)(&data))).is_err() {
                panic!(
                    "{} panicked on input {i} (seed {seed}): {}",
                    d.name,
                    hex(&data)
                );
            }
        }
        println!(
            "{:<14}{inputs:>9} inputs  {:>7.2} s  no panic",
            d.name,
            t0.elapsed().as_secs_f64()
        );
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.parse().ok()
}

#[test]
fn decoders_survive_mutated_and_random_inputs() {
    fuzz(
        SUITE_INPUTS,
        env_u64("JETCC_FUZZ_SEED").unwrap_or(0x5eed_1e7c_c0de),
    );
}

/// The long run, for `bench/fuzz_decoders.sh`: 10⁶ inputs per decoder by default.
#[test]
#[ignore]
fn decoders_survive_a_million_inputs_each() {
    let inputs = env_u64("JETCC_FUZZ_INPUTS").unwrap_or(1_000_000);
    let seed = env_u64("JETCC_FUZZ_SEED").unwrap_or(0x0dd_ba11_f00d);
    println!("seed {seed}, {inputs} inputs per decoder");
    fuzz(inputs, seed);
}

/// The seeds themselves decode (a fuzz run that only ever saw refusals would test little).
#[test]
fn the_seeds_are_valid_encodings() {
    assert!(JobRequest::decode(&job().encode()).is_ok());
    assert!(events().iter().all(|e| JobReply::decode(e).is_ok()));
    assert!(states().iter().all(|s| JobState::decode(s).is_ok()));
    assert!(WorkerStatus::decode(&status().encode()).is_ok());
    assert_eq!(CacheEntry::decode(&entry().encode()), Some(entry()));
    assert_eq!(Manifest::decode(&manifest().encode()), manifest());
    for d in decoders().iter().filter(|d| d.name == "UnitEvent") {
        assert!(d.seeds.iter().all(|s| UnitEvent::decode(s).is_ok()));
    }
    for d in decoders().iter().filter(|d| d.name == "JobDone") {
        assert!(d.seeds.iter().all(|s| JobDone::decode(s).is_ok()));
    }
}

/// What a client decodes from others is bounded before it is looked at.
#[test]
fn oversized_messages_are_refused_unread() {
    use jetcc_common::protocol::job::{ProtocolError, MAX_EVENT_BYTES, MAX_JOB_BYTES};
    let big = |n: usize| vec![0x90u8; n + 1];
    let too_large = |r: Result<(), ProtocolError>| matches!(r, Err(ProtocolError::TooLarge(_)));
    assert!(too_large(JobReply::decode(&big(MAX_EVENT_BYTES)).map(drop)));
    assert!(too_large(JobState::decode(&big(MAX_EVENT_BYTES)).map(drop)));
    assert!(too_large(JobRequest::decode(&big(MAX_JOB_BYTES)).map(drop)));
    assert!(too_large(WorkerStatus::decode(&big(64 << 10)).map(drop)));
    assert!(too_large(UnitEvent::decode(&big(64 << 10)).map(drop)));
    assert!(too_large(JobDone::decode(&big(64 << 10)).map(drop)));
}
