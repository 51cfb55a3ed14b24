use super::*;

fn job() -> JobRequest {
    JobRequest {
        version: PROTOCOL_VERSION,
        job_id: "0123456789abcdef0123456789abcdef".into(),
        reply_subject: "jetcc.reply.publisher.0123456789abcdef0123456789abcdef".into(),
        crate_name: "leaf".into(),
        deadline_unix_ms: 1,
        toolchain: Digest::of_bytes(b"rustc 1.95"),
        args: vec!["--crate-name".into(), "leaf".into()],
        env: vec![("CARGO_PKG_NAME".into(), "leaf".into())],
        cwd: "/home/a/p".into(),
        inputs: vec![InputFile {
            path: "/home/a/p/src/lib.rs".into(),
            digest: Digest::of_bytes(b"fn a() {}"),
            size: 9,
            mode: 0o644,
        }],
        system_inputs: vec![InputFile {
            path: "/usr/include/stdio.h".into(),
            digest: Digest::of_bytes(b"int printf();"),
            size: 13,
            mode: 0o644,
        }],
        dirs: vec!["/home/a/p/src/gen".into()],
        out_dir: "/home/a/p/target/debug/deps".into(),
        outputs: vec!["libleaf-1.rlib".into(), "libleaf-1.rmeta".into()],
        key_paths: KeyPaths {
            portable: true,
            base_dirs: vec![],
            cargo_home: Some("/home/a/.cargo".into()),
            home: Some("/home/a".into()),
        },
        shipped: None,
        inline: vec![],
    }
}

#[test]
fn round_trips() {
    let j = job();
    assert_eq!(JobRequest::decode(&j.encode()).unwrap(), j);
    let e = JobReply {
        job_id: j.job_id.clone(),
        worker: "worker-a.h-1-2".into(),
        event: JobEvent::Done {
            exit_code: 0,
            stdout: vec![],
            outputs: vec![("libleaf-1.rlib".into(), Digest::of_bytes(b"x"))],
            compile_ms: 5,
            inline: vec![],
        },
    };
    assert_eq!(JobReply::decode(&e.encode()).unwrap(), e);
}

#[test]
fn inline_outputs_ride_as_bytes() {
    let blob = bytes::Bytes::from(vec![0xffu8; 4000]);
    let e = JobReply {
        job_id: "a".repeat(32),
        worker: "worker-a.h-1-2".into(),
        event: JobEvent::Done {
            exit_code: 0,
            stdout: vec![],
            outputs: vec![("libleaf-1.rlib".into(), Digest::of_bytes(&blob))],
            compile_ms: 5,
            inline: vec![blob.clone()],
        },
    };
    let encoded = e.encode();
    // As msgpack bin, not an array of integers (two bytes each for these).
    assert!(encoded.len() < blob.len() + 200, "{}", encoded.len());
    assert_eq!(JobReply::decode(&encoded).unwrap(), e);
}

#[test]
fn small_inputs_ride_in_the_job_within_the_bound_and_outside_its_identity() {
    let mut j = job();
    let source = bytes::Bytes::from_static(b"pub fn f() {}\n");
    j.inline = vec![source.clone()];
    let decoded = JobRequest::decode(&j.encode()).unwrap();
    assert_eq!(decoded, j);
    // The same job with its inputs in the CAS is the same job.
    assert_eq!(j.dedup_key(), job().dedup_key());
    let sent = by_digest(&decoded.inline);
    assert_eq!(sent.get(&Digest::of_bytes(&source)), Some(&&source));
    assert_eq!(sent.get(&Digest::of_bytes(b"other")), None);

    let mut over = job();
    over.inline = vec![bytes::Bytes::from(vec![b' '; INLINE_BYTES + 1])];
    let err = JobRequest::decode(&over.encode()).unwrap_err();
    assert!(err.to_string().contains("inline"), "{err}");
    let mut more_blobs_than_inputs = job();
    more_blobs_than_inputs.inline = vec![source; more_blobs_than_inputs.inputs.len() + 1];
    assert!(JobRequest::decode(&more_blobs_than_inputs.encode()).is_err());
}

#[test]
fn identical_jobs_share_a_dedup_key() {
    let a = job();
    let mut b = job();
    b.job_id = "f".repeat(32);
    b.reply_subject = "jetcc.reply.other.x".into();
    b.deadline_unix_ms = 99;
    assert_eq!(
        a.dedup_key(),
        b.dedup_key(),
        "id, reply and deadline do not count"
    );
    type Mutation = fn(&mut JobRequest);
    let changes: [Mutation; 9] = [
        |j| j.shipped = Some(Digest::of_bytes(b"pack")),
        |j| j.key_paths.portable = false,
        |j| j.key_paths.cargo_home = Some("/home/b/.cargo".into()),
        |j| j.system_inputs[0].digest = Digest::of_bytes(b"int puts();"),
        |j| j.args.push("-O".into()),
        |j| j.env[0].1 = "other".into(),
        |j| j.inputs[0].digest = Digest::of_bytes(b"fn b() {}"),
        |j| j.cwd = "/home/b/p".into(),
        |j| j.toolchain = Digest::of_bytes(b"rustc 1.96"),
    ];
    for change in changes {
        let mut c = job();
        change(&mut c);
        assert_ne!(a.dedup_key(), c.dedup_key(), "{c:?}");
    }
    let state = JobState::Done {
        exit_code: 0,
        stdout: vec![],
        stderr: b"line\n".to_vec(),
        outputs: vec![("libleaf-1.rlib".into(), Digest::of_bytes(b"x"))],
        compile_ms: 3,
    };
    assert_eq!(JobState::decode(&state.encode()).unwrap(), state);
    let evil = JobState::Done {
        exit_code: 0,
        stdout: vec![],
        stderr: vec![],
        outputs: vec![("../../x".into(), Digest::of_bytes(b"x"))],
        compile_ms: 3,
    };
    assert!(JobState::decode(&evil.encode()).is_err());
}

#[test]
fn hostile_jobs_are_refused_with_the_field_named() {
    type Mutation = fn(&mut JobRequest);
    let cases: Vec<(Mutation, &str)> = vec![
        (
            |j| j.inputs[0].path = "/home/a/p/../../etc/passwd".into(),
            "inputs",
        ),
        (|j| j.inputs[0].path = "relative/lib.rs".into(), "inputs"),
        (|j| j.outputs.push("../../.bashrc".into()), "outputs"),
        (|j| j.outputs.push("/etc/passwd".into()), "outputs"),
        (|j| j.out_dir = "/t/./x".into(), "out_dir"),
        (|j| j.cwd = "cwd".into(), "cwd"),
        (|j| j.dirs.push("/home/a/../../etc".into()), "dirs"),
        (|j| j.job_id = "x".into(), "job_id"),
        (|j| j.key_paths.home = Some("home".into()), "key_paths"),
        (
            |j| j.key_paths.base_dirs.push("/a/../b".into()),
            "key_paths",
        ),
        (|j| j.args.push("a\0b".into()), "args/env"),
        (
            |j| j.system_inputs[0].path = "/etc/shadow".into(),
            "system_inputs",
        ),
        (
            |j| j.system_inputs[0].path = "/usr/../etc/shadow".into(),
            "system_inputs",
        ),
        (|j| j.outputs = vec!["a".into(); MAX_OUTPUTS + 1], "outputs"),
    ];
    for (mutate, field) in cases {
        let mut j = job();
        mutate(&mut j);
        match JobRequest::decode(&j.encode()) {
            Err(ProtocolError::Invalid { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
    let mut j = job();
    j.version = 99;
    assert_eq!(
        JobRequest::decode(&j.encode()),
        Err(ProtocolError::Version(99))
    );
}

/// Two inputs at one file, however spelled, or a file where a dir must be: refused, with
/// the path named.
#[test]
fn inputs_that_collide_are_refused() {
    let input = |path: &str, bytes: &[u8]| InputFile {
        path: path.into(),
        digest: Digest::of_bytes(bytes),
        size: bytes.len() as u64,
        mode: 0o644,
    };
    type Mutation = fn(&mut JobRequest, InputFile);
    let cases: Vec<(&str, Mutation, &str)> = vec![
        (
            "/home/a/p/src/lib.rs",
            |j, i| j.inputs.push(i),
            "listed twice",
        ),
        (
            "/home/a/p//src/lib.rs",
            |j, i| j.inputs.push(i),
            "listed twice",
        ),
        (
            "/home/a/p/src/lib.rs/",
            |j, i| j.inputs.push(i),
            "listed twice",
        ),
        (
            "/home/a/p/src/lib.rs/x",
            |j, i| j.inputs.push(i),
            "also a directory",
        ),
        ("/home/a/p/src", |j, i| j.inputs.push(i), "also a directory"),
        (
            "/home/a/p/src",
            |j, i| j.inputs.insert(0, i),
            "also a directory",
        ),
        (
            "/home/a/p/src/gen",
            |j, i| j.inputs.push(i),
            "also a directory",
        ),
        (
            "/home/a/p/target",
            |j, i| j.inputs.push(i),
            "also a directory",
        ),
        ("/home/a", |j, i| j.inputs.push(i), "also a directory"),
        ("/", |j, i| j.inputs.push(i), "names no file"),
    ];
    for (path, add, want) in cases {
        let mut j = job();
        add(&mut j, input(path, b"evil"));
        match JobRequest::decode(&j.encode()) {
            Err(ProtocolError::Invalid { field, why }) => {
                assert_eq!(field, "inputs", "{path}: {why}");
                assert!(why.contains(want), "{path}: {why}");
            }
            other => panic!("{path}: {other:?}"),
        }
    }
    // Siblings and an input in the out-dir are fine.
    let mut j = job();
    j.inputs.push(input("/home/a/p/src/lib2.rs", b"x"));
    j.inputs
        .push(input("/home/a/p/target/debug/deps/liba.rmeta", b"x"));
    j.validate().unwrap();
}

#[test]
fn garbage_and_oversized_messages_are_refused() {
    assert!(matches!(
        JobRequest::decode(b"\xc1garbage"),
        Err(ProtocolError::Malformed(_))
    ));
    assert!(matches!(
        JobRequest::decode(&vec![0u8; MAX_JOB_BYTES + 1]),
        Err(ProtocolError::TooLarge(_))
    ));
    let evil = JobReply {
        job_id: "0".repeat(32),
        worker: "w".into(),
        event: JobEvent::Done {
            exit_code: 0,
            stdout: vec![],
            outputs: vec![("../x".into(), Digest::of_bytes(b"x"))],
            compile_ms: 0,
            inline: vec![],
        },
    };
    assert!(matches!(
        JobReply::decode(&evil.encode()),
        Err(ProtocolError::Invalid { .. })
    ));
    assert!(matches!(
        JobReply::decode(&vec![0u8; MAX_EVENT_BYTES + 1]),
        Err(ProtocolError::TooLarge(_))
    ));
}
