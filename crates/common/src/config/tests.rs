//! The layered config read from real files and env: sccache's keys, precedence, errors.

use super::*;

fn load(toml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("config.toml");
    std::fs::write(&f, toml).unwrap();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    Config::load_from(&[&f], &|k| {
        env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    })
}

#[test]
fn verify_rate_from_file_env_and_the_verify_switch() {
    assert_eq!(load("", &[]).unwrap().verify_rate, 0.0);
    let c = load("[cache]\nverify_rate = 0.25\n", &[]).unwrap();
    assert_eq!(c.verify_rate, 0.25);
    let c = load("", &[("JETCC_VERIFY_RATE", "0.5")]).unwrap();
    assert_eq!(c.verify_rate, 0.5);
    let c = load("[cache]\nverify_rate = 0.1\n", &[("JETCC_VERIFY", "1")]).unwrap();
    assert_eq!(c.verify_rate, 1.0);
    let c = load("", &[("JETCC_VERIFY", "0")]).unwrap();
    assert_eq!(c.verify_rate, 0.0);
    assert!(matches!(
        load("[cache]\nverify_rate = 2.0\n", &[]),
        Err(ConfigError::VerifyRate(_))
    ));
}

#[test]
fn credentials_never_show_in_the_config_debug_form() {
    let c = load(
        "[dist]\nnats_url = \"nats://ci:pw-in-url@h:4222\"\npassword = \"pw-key\"\n\
         token = \"tok-key\"\n",
        &[],
    )
    .unwrap();
    let shown = format!("{c:?}");
    for secret in ["pw-in-url", "pw-key", "tok-key"] {
        assert!(!shown.contains(secret), "{shown}");
    }
    assert!(shown.contains("nats://ci:***@h:4222"), "{shown}");
}

#[test]
fn defaults_file_and_env_layer() {
    let c = load("", &[]).unwrap();
    assert_eq!(c.cache_size, DEFAULT_CACHE_SIZE);
    assert!(c.cache_dir.ends_with("jetcc"));
    let c = load("[cache.disk]\ndir = \"/x\"\nsize = \"2G\"\n", &[]).unwrap();
    assert_eq!(
        (c.cache_dir.as_path(), c.cache_size),
        (Path::new("/x"), 2 << 30)
    );
    let c = load(
        "[cache.disk]\ndir = \"/x\"\nsize = 5\n",
        &[("JETCC_DIR", "/y"), ("JETCC_CACHE_SIZE", "1M")],
    )
    .unwrap();
    assert_eq!(
        (c.cache_dir.as_path(), c.cache_size),
        (Path::new("/y"), 1 << 20)
    );
    let c = load("base_dirs = [\"/home/a\"]\n[dist]\nnats_url = \"x\"\n", &[]).unwrap();
    assert_eq!(c.base_dirs, vec![PathBuf::from("/home/a")]);
    // sccache's current spelling.
    let c = load("basedirs = [\"/home/b\"]\n", &[]).unwrap();
    assert_eq!(c.base_dirs, vec![PathBuf::from("/home/b")]);
    let c = load("", &[("JETCC_BASE_DIRS", "/a:/b")]).unwrap();
    assert_eq!(c.base_dirs.len(), 2);
    assert!(c.cache_incremental);
    let c = load("[cache]\nincremental = \"pass-through\"\n", &[]).unwrap();
    assert!(!c.cache_incremental);
    assert_eq!(
        c.paths,
        PathsMode::Exact,
        "the local cache alone keeps paths exact"
    );
    assert!(!c.jetstream_read_only, "read-write by default");
    let c = load("[cache.jetstream]\nread_only = true\n", &[]).unwrap();
    assert!(c.jetstream_read_only);
    let c = load("", &[("JETCC_JETSTREAM_RW_MODE", "READ_ONLY")]).unwrap();
    assert!(c.jetstream_read_only, "sccache's spelling");
    assert!(matches!(
        load("[cache.jetstream]\nrw_mode = \"sometimes\"\n", &[]),
        Err(ConfigError::RwMode { .. })
    ));
    assert!(load("", &[("JETCC_INCREMENTAL", "sometimes")]).is_err());
    assert!(!c.disk_read_only, "the local cache is written by default");
    let c = load("[cache.disk]\nrw_mode = \"READ_ONLY\"\n", &[]).unwrap();
    assert!(c.disk_read_only, "sccache's key");
    let c = load(
        "[cache.disk]\nread_only = true\n",
        &[("JETCC_LOCAL_RW_MODE", "READ_WRITE")],
    );
    assert!(!c.unwrap().disk_read_only, "the env wins");
    assert!(matches!(
        load("[cache.disk]\nrw_mode = \"RO\"\n", &[]),
        Err(ConfigError::RwMode { section, .. }) if section == "cache.disk"
    ));
}

#[test]
fn dist_and_worker_sections() {
    assert_eq!(load("", &[]).unwrap().farm, None);
    let c = load(
        "[dist]\nnats_url = \"nats://f:4222\"\ntoken = \"s\"\n[worker]\nslots = 3\n",
        &[],
    )
    .unwrap();
    assert_eq!(
        c.paths,
        PathsMode::Portable,
        "shared results use portable paths"
    );
    let exact = load(
        "[dist]\nnats_url = \"x\"\n[cache]\npaths = \"exact\"\n",
        &[],
    );
    assert_eq!(exact.unwrap().paths, PathsMode::Exact);
    let env = load("", &[("JETCC_PATHS", "portable")]).unwrap();
    assert_eq!(env.paths, PathsMode::Portable);
    assert!(matches!(
        load("[cache]\npaths = \"relative\"\n", &[]),
        Err(ConfigError::Paths(_))
    ));
    let d = c.farm.unwrap();
    assert_eq!(
        (d.nats_url.as_str(), d.prefix.as_str()),
        ("nats://f:4222", "jetcc")
    );
    assert_eq!(d.token.as_deref(), Some("s"));
    assert_eq!(c.worker.slots, Some(3));
    let c = load(
        "",
        &[
            ("JETCC_NATS_URL", "nats://e:1"),
            ("JETCC_WORKER_SLOTS", "2"),
        ],
    )
    .unwrap();
    assert_eq!(c.farm.unwrap().nats_url, "nats://e:1");
    assert_eq!(c.worker.slots, Some(2));
    assert_eq!(c.worker.memory_limit, farm::DEFAULT_WORKER_MEMORY_LIMIT);
    let w = load(
        "[worker]\nmemory_limit = \"512M\"\npids_limit = 64\ndisk_limit = 1000\n",
        &[("JETCC_WORKER_RUN_AS", "builder")],
    )
    .unwrap()
    .worker;
    assert_eq!(
        (
            w.memory_limit,
            w.pids_limit,
            w.disk_limit,
            w.run_as.as_deref()
        ),
        (512 << 20, 64, 1000, Some("builder"))
    );
    let w = load("", &[("JETCC_WORKER_DISK_LIMIT", "2G")])
        .unwrap()
        .worker;
    assert_eq!(w.disk_limit, 2 << 30);
    let e = load("[worker]\nmemory_limit = \"lots\"\n", &[]).unwrap_err();
    assert!(e.to_string().contains("lots"), "{e}");
    let d = load(
        "[dist]\nnats_url = \"x\"\n[cache.jetstream]\nmax_size = \"2G\"\nmax_age_days = 3\n",
        &[],
    )
    .unwrap()
    .farm
    .unwrap();
    assert_eq!(d.cache_limits.max_bytes, 2 << 30);
    assert_eq!(d.cache_limits.max_age.as_secs(), 3 * 86_400);
    assert_eq!(d.cache_limits.ac_max_bytes, DEFAULT_AC_SIZE);
    assert_eq!(d.cache_limits.jobs_max_bytes, DEFAULT_JOBS_SIZE);
    assert_eq!(
        (d.cache_limits.gc_high_water, d.cache_limits.gc_low_water),
        (90, 75)
    );
    let d = load(
        "[dist]\nnats_url = \"x\"\n[cache.jetstream]\nac_max_size = \"64M\"\n\
         gc_high_water = 80\ngc_low_water = 50\ngc_interval_secs = 5\n",
        &[("JETCC_JETSTREAM_JOBS_MAX_SIZE", "1K")],
    )
    .unwrap()
    .farm
    .unwrap();
    let l = d.cache_limits;
    assert_eq!((l.ac_max_bytes, l.jobs_max_bytes), (64 << 20, 1024));
    assert_eq!((l.gc_high_water, l.gc_low_water), (80, 50));
    assert_eq!(l.gc_interval.as_secs(), 5);
    for bad in [
        "gc_low_water = 95",
        "gc_high_water = 101",
        "gc_low_water = 0",
    ] {
        let e = load(&format!("[cache.jetstream]\n{bad}\n"), &[]).unwrap_err();
        assert!(matches!(e, ConfigError::GcWater { .. }), "{bad}: {e}");
    }
    let d = load(
        "[dist]\nnats_url = \"x\"\n",
        &[
            ("JETCC_NATS_TLS_CA", "/ca.pem"),
            ("JETCC_NATS_TLS_CERT", "/c.pem"),
            ("JETCC_NATS_TLS_KEY", "/k.pem"),
        ],
    )
    .unwrap()
    .farm
    .unwrap();
    assert_eq!(d.tls_ca.as_deref(), Some(Path::new("/ca.pem")));
    assert_eq!(d.tls_key.as_deref(), Some(Path::new("/k.pem")));
    assert!(matches!(
        load("[dist]\nnats_url = \"x\"\ntls_cert = \"/c.pem\"\n", &[]),
        Err(ConfigError::TlsClientPair)
    ));
    let e = load("[dist]\nnats_url = \"x\"\nprefix = \"A.B\"\n", &[]).unwrap_err();
    assert!(e.to_string().contains("prefix"), "{e}");
    assert!(load("[dist]\nnats_urll = \"x\"\n", &[]).is_err());
}

#[test]
fn errors_name_the_problem() {
    let e = load("[cache.disk]\nsize = \"lots\"\n", &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("cache.disk.size"), "{e}");
    let e = load("[cache.disk]\ndri = \"/x\"\n", &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("dri"), "{e}");
    let e = load("[cache.disk\n", &[]).unwrap_err().to_string();
    assert!(e.contains("config.toml"), "{e}");
    assert!(load("base_dirs = [\"rel\"]", &[]).is_err());
}

#[test]
fn object_tier_sections() {
    assert_eq!(load("", &[]).unwrap().object, None);
    // The seed's sccache block, verbatim.
    let c = load(
        "[cache.s3]\nbucket = \"cache\"\nendpoint = \"https://my.minio.lan/\"\n\
         region = \"auto\"\nuse_ssl = true\nkey_prefix = \"sccache\"\nno_credentials = false\n",
        &[],
    )
    .unwrap();
    let o = c.object.unwrap();
    assert_eq!((o.key_prefix.as_str(), o.read_only), ("sccache", false));
    let Backend::S3(s3) = &o.backend else {
        panic!("{o:?}")
    };
    assert_eq!(s3.endpoint.as_deref(), Some("https://my.minio.lan/"));
    assert_eq!(
        (s3.region.as_deref(), s3.use_ssl),
        (Some("auto"), Some(true))
    );
    assert!(!s3.enable_virtual_host_style);
    assert_eq!(s3.encryption(), None);
    let sse = |toml: &str, env: &[(&str, &str)]| {
        let o = load(&format!("[cache.s3]\nbucket = \"b\"\n{toml}"), env)
            .unwrap()
            .object
            .unwrap();
        let Backend::S3(s3) = o.backend else {
            panic!("{o:?}")
        };
        s3.encryption()
    };
    assert_eq!(
        sse("server_side_encryption = true\n", &[]),
        Some(S3Encryption::S3Managed)
    );
    assert_eq!(
        sse("", &[("JETCC_S3_SERVER_SIDE_ENCRYPTION", "true")]),
        Some(S3Encryption::S3Managed)
    );
    assert_eq!(
        sse(
            "server_side_encryption = true\nserver_side_encryption_aws_kms = true\n",
            &[]
        ),
        Some(S3Encryption::Kms { key_id: None }),
        "KMS wins over SSE-S3, as in sccache"
    );
    assert_eq!(
        sse("server_side_encryption_kms_key_id = \"arn:k\"\n", &[]),
        Some(S3Encryption::Kms {
            key_id: Some("arn:k".into())
        }),
        "a key id implies KMS"
    );
    let o = load(
        "",
        &[
            ("JETCC_S3_BUCKET", "b"),
            ("JETCC_S3_NO_CREDENTIALS", "true"),
            ("JETCC_S3_RW_MODE", "READ_ONLY"),
            ("JETCC_S3_KEY_PREFIX", "/p/"),
        ],
    )
    .unwrap()
    .object
    .unwrap();
    assert!(o.read_only);
    assert_eq!(o.key_prefix, "p");
    assert!(matches!(&o.backend, Backend::S3(s) if s.no_credentials && s.bucket == "b"));
    let o = load("[cache.path]\ndir = \"/mnt/c\"\nread_only = true\n", &[])
        .unwrap()
        .object
        .unwrap();
    assert_eq!(o.backend, Backend::Path(PathBuf::from("/mnt/c")));
    assert!(matches!(
        load(
            "[cache.path]\ndir = \"/a\"\n[cache.gcs]\nbucket = \"b\"\n",
            &[]
        ),
        Err(ConfigError::SeveralObjectTiers)
    ));
    assert!(load("[cache.s3]\nbucket = \"b\"\nbukket = 1\n", &[]).is_err());
    let e = load("[cache.s3]\nbucket = \"b\"\nrw_mode = \"x\"\n", &[]).unwrap_err();
    assert!(e.to_string().contains("cache.s3.rw_mode"), "{e}");
}
