//! `docker-compose.yml`, without a Docker daemon: its structure is what `docker compose up`
//! and `--scale worker=N` need, and its own `nats` and `worker` commands, run as plain
//! processes (paths mapped through its volumes, the `nats` host to loopback), make a farm
//! that builds the fixture.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use jetcc_e2e::servers::{free_port, nats_server_bin, worker_bin, Nats, Worker};
use jetcc_e2e::*;
use yaml_serde::Value;

use crate::farm::farm_build;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn compose() -> Value {
    let text = std::fs::read_to_string(repo().join("docker-compose.yml")).unwrap();
    yaml_serde::from_str(&text).expect("docker-compose.yml is YAML")
}

fn strings(v: &Value, what: &str) -> Vec<String> {
    v.as_sequence()
        .unwrap_or_else(|| panic!("{what} is a list"))
        .iter()
        .map(|s| {
            s.as_str()
                .unwrap_or_else(|| panic!("{what}: strings"))
                .to_owned()
        })
        .collect()
}

/// A service's `environment:` map.
fn environment(service: &Value) -> BTreeMap<String, String> {
    let Some(env) = service.get("environment") else {
        return BTreeMap::new();
    };
    env.as_mapping()
        .expect("environment is a map")
        .iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => s.clone(),
                other => yaml_serde::to_string(other).unwrap().trim().to_owned(),
            };
            (k.as_str().unwrap().to_owned(), v)
        })
        .collect()
}

/// A service's command (entrypoint + command) with container paths mapped to the host
/// through its volumes: `./x` is the repo's, a named volume a fresh dir under `volumes`.
fn command_line(service: &Value, volumes: &Path) -> Vec<String> {
    let mut argv = service
        .get("entrypoint")
        .map(|e| strings(e, "entrypoint"))
        .unwrap_or_default();
    argv.extend(strings(&service["command"], "command"));
    let mounts: Vec<(String, PathBuf)> = service
        .get("volumes")
        .map(|v| strings(v, "volumes"))
        .unwrap_or_default()
        .iter()
        .map(|m| {
            let mut parts = m.split(':');
            let (src, dst) = (parts.next().unwrap(), parts.next().expect("src:dst"));
            let host = match src.strip_prefix("./") {
                Some(rel) => repo().join(rel),
                None => volumes.join(src),
            };
            std::fs::create_dir_all(volumes).unwrap();
            (dst.to_owned(), host)
        })
        .collect();
    for arg in &mut argv {
        for (dst, host) in &mounts {
            if let Some(rest) = arg.strip_prefix(dst.as_str()) {
                if rest.is_empty() || rest.starts_with('/') {
                    *arg = format!("{}{rest}", host.display());
                }
            }
        }
    }
    argv
}

#[test]
fn the_compose_file_has_what_up_and_scale_need() {
    let c = compose();
    let services = c["services"].as_mapping().expect("services");
    for name in ["nats", "worker", "s3"] {
        assert!(services.contains_key(name), "no {name} service");
    }
    let declared: Vec<String> = c["volumes"]
        .as_mapping()
        .map(|m| m.keys().map(|k| k.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default();
    for (name, s) in services {
        let name = name.as_str().unwrap();
        assert!(
            s.get("image").is_some() || s.get("build").is_some(),
            "{name}: no image"
        );
        for m in s
            .get("volumes")
            .map(|v| strings(v, "volumes"))
            .unwrap_or_default()
        {
            let src = m.split(':').next().unwrap();
            match src.strip_prefix("./") {
                Some(rel) => assert!(
                    repo().join(rel).exists(),
                    "{name}: {src} is not in the repo"
                ),
                None => assert!(
                    declared.iter().any(|d| d == src),
                    "{name}: volume {src} undeclared"
                ),
            }
        }
        if let Some(dep) = s.get("depends_on") {
            for (other, _) in dep.as_mapping().expect("depends_on is a map") {
                assert!(
                    services.contains_key(other),
                    "{name} depends on a missing service"
                );
            }
        }
    }
    let nats = &c["services"]["nats"];
    // Published on loopback unless JETCC_NATS_BIND says otherwise (compose's `${VAR:-default}`).
    let ports = strings(&nats["ports"], "ports");
    for port in ["4222", "8222"] {
        let published = ports
            .iter()
            .find(|p| p.ends_with(&format!(":{port}:{port}")))
            .unwrap_or_else(|| panic!("port {port} is not published: {ports:?}"));
        assert_eq!(
            published,
            &format!("${{JETCC_NATS_BIND:-127.0.0.1}}:{port}:{port}"),
            "NATS on loopback unless told otherwise"
        );
    }
    let conf = command_line(nats, Path::new("/unused"));
    assert!(
        conf.iter().any(|a| a.ends_with("nats/single.conf")),
        "{conf:?}"
    );
    assert!(
        nats.get("healthcheck").is_some(),
        "workers wait for a healthy server"
    );

    // `--scale worker=4`: no fixed name, no host port; a clean stop lets jobs finish.
    let worker = &c["services"]["worker"];
    assert!(worker.get("container_name").is_none());
    assert!(worker.get("ports").is_none());
    assert!(worker.get("stop_grace_period").is_some());
    assert_eq!(worker["build"].as_str(), Some("."));
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    assert!(
        dockerfile.contains("-p jetcc-worker"),
        "the image builds the worker"
    );
    assert!(
        dockerfile.contains("ARG RUST_VERSION"),
        "clients' toolchain is a build arg"
    );
    assert_eq!(
        environment(worker)
            .get("JETCC_NATS_URL")
            .map(String::as_str),
        Some("nats://nats:4222")
    );
    let s3 = &c["services"]["s3"];
    assert_eq!(
        strings(&s3["profiles"], "profiles"),
        ["s3"],
        "S3 is optional"
    );
}

#[test]
fn the_compose_services_run_as_processes_build_the_fixture() {
    let p = Project::fixture("fixture");
    let root = p.dir.parent().unwrap().to_path_buf();
    let want = p.plain_artifacts();
    let c = compose();

    // nats: the file's command, on free loopback ports instead of its published ones.
    let argv = command_line(&c["services"]["nats"], &root.join("volumes"));
    let program = Path::new(&argv[0]).file_name().unwrap();
    assert_eq!(program, nats_server_bin().file_name().unwrap(), "{argv:?}");
    let mut args: Vec<String> = argv[1..].to_vec();
    args.extend(["-m".into(), free_port().to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let nats = Nats::start_with(&root.join("nats"), &args);

    // Two workers (`--scale worker=2`), each with the file's command and environment.
    let service = &c["services"]["worker"];
    let argv = command_line(service, &root.join("volumes"));
    assert_eq!(Path::new(&argv[0]), Path::new("jetcc-worker"), "{argv:?}");
    let env: Vec<(String, String)> = environment(service)
        .into_iter()
        .map(|(k, v)| (k, v.replace("nats://nats:4222", &nats.url())))
        .collect();
    let url = &env.iter().find(|(k, _)| k == "JETCC_NATS_URL").unwrap().1;
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let workers: Vec<Worker> = (0..2)
        .map(|i| {
            Worker::start_with(url, &root.join(format!("worker-{i}")), 1, &env, |cmd| {
                assert_eq!(cmd.get_program(), worker_bin());
                cmd.args(&argv[1..]);
            })
        })
        .collect();

    let cache = root.join("laptop");
    let built = p.build_ok(&farm_build(&cache, &nats));
    built.assert_each(FIXTURE_UNITS, Outcome::Miss);
    assert_same_artifacts(&want, &artifacts(&p.target()), "built on the compose farm");
    let s = stats(&cache);
    let remote = s["remote_compiles"].as_u64().unwrap();
    assert!(remote > 0, "{}", built.log);
    // With the C compile of util's build script.
    let remote = remote + s["c_compiles"]["remote"].as_u64().unwrap();
    let done: usize = workers.iter().map(|w| w.wait_jobs_done(1)).sum();
    assert_eq!(done as u64, remote);
}
