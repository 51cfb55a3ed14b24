//! The process env as jetcc reads it, and what of it a farm job may carry.
//!
//! `std::env::vars()` panics on a variable that is not UTF-8, and a shell's `FOO=$'\xff'` must
//! not break a build: variables are read with `vars_os`. One that is not UTF-8 is left out
//! unless it is keyed (it would change the output), in which case the caller steps aside and
//! runs the tool plainly ([`NotUtf8`]): no key can name it, so nothing may be cached for it.
//!
//! A job's env ([`job_env`]) is an allowlist: the variables cargo and rustc document for a
//! compile, the keyed ones and those the compile read (`env!`), never anything that looks like
//! a credential. A compile that *reads* a credential (`option_env!("GITHUB_TOKEN")`) is not
//! sent at all ([`SecretRead`]): shipping the value leaks it, and leaving it out would make
//! another artifact than a local compile.

/// A keyed variable whose name or value is not UTF-8.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("env var {0} is keyed but not UTF-8: jetcc cannot key it, so it steps aside")]
pub struct NotUtf8(pub String);

/// The variables whose names and values are UTF-8, in the process's order. A variable that is
/// not is skipped, unless `keyed` says it is keyed: then `Err` names it.
pub fn utf8_vars(keyed: impl Fn(&str) -> bool) -> Result<Vec<(String, String)>, NotUtf8> {
    from_os(std::env::vars_os(), keyed)
}

fn from_os(
    vars: impl Iterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
    keyed: impl Fn(&str) -> bool,
) -> Result<Vec<(String, String)>, NotUtf8> {
    let mut out = Vec::new();
    for (k, v) in vars {
        match (k.into_string(), v.into_string()) {
            (Ok(k), Ok(v)) => out.push((k, v)),
            (Ok(k), Err(_)) if keyed(&k) => return Err(NotUtf8(k)),
            (Err(k), _) if keyed(&k.to_string_lossy()) => {
                return Err(NotUtf8(k.to_string_lossy().into_owned()))
            }
            _ => {}
        }
    }
    Ok(out)
}

/// What a lookup compares a variable's value with: a value that is not UTF-8 reads as
/// [`NOT_UTF8`], which no stored value equals (an env value cannot hold NUL), so it matches
/// neither an entry stored with the variable unset nor one with any value.
pub fn var(name: &str) -> Option<String> {
    std::env::var_os(name).map(|v| v.into_string().unwrap_or_else(|_| NOT_UTF8.to_owned()))
}

/// See [`var`].
pub const NOT_UTF8: &str = "\0jetcc:not-utf-8";

/// Variables cargo documents as set for a compile ("Environment variables Cargo sets for
/// crates") and those rustc reads itself. `CARGO_PKG_*` and `CARGO_BIN_EXE_*` are prefixes.
/// Not `CARGO` (cargo's own path): no key names it, so a worker could not vouch for a result
/// it had shaped; a compile that reads it with `env!` lists it as an env dep, and gets it.
const DOCUMENTED: &[&str] = &[
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_CRATE_NAME",
    "CARGO_BIN_NAME",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_TARGET_TMPDIR",
    "CARGO_RUSTC_CURRENT_DIR",
    "OUT_DIR",
    "RUSTC_BOOTSTRAP",
    "RUSTC_FORCE_RUSTC_VERSION",
    "RUSTC_OVERRIDE_VERSION_STRING",
    "SOURCE_DATE_EPOCH",
];
const DOCUMENTED_PREFIXES: &[&str] = &["CARGO_PKG_", "CARGO_BIN_EXE_"];

/// Parts of a variable's name that say it holds a credential: anywhere in a word, a whole
/// word (`_`-separated: `AUTH` but not `AUTHORS`), or anywhere in the name.
const SECRET_IN_WORD: &[&str] = &["TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL"];
const SECRET_WORDS: &[&str] = &["AUTH", "PRIVATE", "APIKEY", "PASS"];
const SECRET_IN_NAME: &[&str] = &["API_KEY", "ACCESS_KEY", "SESSION_KEY", "SIGNING_KEY"];

/// Whether a variable's name says it holds a credential (`AWS_SECRET_ACCESS_KEY`,
/// `GITHUB_TOKEN`, `NPM_CONFIG__AUTH`…), or it configures jetcc or AWS tools (`JETCC_*`,
/// `AWS_*`: URLs with passwords, creds paths, keys).
pub fn looks_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    upper.starts_with("JETCC_") || upper.starts_with("AWS_") || names_credential(name)
}

/// The credentials in `vars` (a name [`looks_secret`] but for the `JETCC_`/`AWS_` prefix
/// alone, which also covers plain settings like `AWS_REGION`) whose values are long enough
/// (8+ bytes) to be told from ordinary bytes: what nothing a client sends to the farm may
/// hold. rustc writes the value of a variable a crate reads (`option_env!`) into that crate's
/// metadata, so a dependent's job would carry it in the crate's rmeta.
pub fn credentials(vars: &[(String, String)]) -> Vec<(String, String)> {
    vars.iter()
        .filter(|(k, v)| v.len() >= 8 && names_credential(k))
        .cloned()
        .collect()
}

/// The name of the first of `credentials` whose value `bytes` hold.
pub fn holds_credential<'a>(bytes: &[u8], credentials: &'a [(String, String)]) -> Option<&'a str> {
    credentials
        .iter()
        .find(|(_, v)| memchr::memmem::find(bytes, v.as_bytes()).is_some())
        .map(|(k, _)| k.as_str())
}

fn names_credential(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    SECRET_IN_NAME.iter().any(|p| upper.contains(p))
        || upper.split('_').any(|word| {
            SECRET_WORDS.contains(&word) || SECRET_IN_WORD.iter().any(|p| word.contains(p))
        })
}

/// A compile reads a variable that looks like a credential: it is not sent to the farm.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the compile reads {0}, which looks like a credential: it is not sent to the farm")]
pub struct SecretRead(pub String);

/// The env a rustc job carries, from this process's UTF-8 `vars`: the documented compile
/// variables, the keyed ones (`keyed`, i.e. `key::is_keyed_env`) and those the compile read
/// (`env_deps`), minus anything that [`looks_secret`]. Fails if the compile reads a secret.
pub fn job_env(
    vars: &[(String, String)],
    keyed: impl Fn(&str) -> bool,
    env_deps: &[String],
) -> Result<Vec<(String, String)>, SecretRead> {
    if let Some(secret) = env_deps.iter().find(|n| looks_secret(n)) {
        return Err(SecretRead(secret.clone()));
    }
    Ok(vars
        .iter()
        .filter(|(k, _)| {
            let allowed = DOCUMENTED.contains(&k.as_str())
                || DOCUMENTED_PREFIXES.iter().any(|p| k.starts_with(p))
                || keyed(k)
                || env_deps.contains(k);
            allowed && !looks_secret(k)
        })
        .cloned()
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;

    fn os(s: &[u8]) -> OsString {
        OsString::from_vec(s.to_vec())
    }

    #[test]
    fn non_utf8_vars_are_skipped_unless_keyed() {
        let vars = || {
            vec![
                (os(b"FOO"), os(b"\xff")),
                (os(b"\xfeBAR"), os(b"x")),
                (os(b"CARGO_PKG_NAME"), os(b"leaf")),
            ]
            .into_iter()
        };
        let keyed = |k: &str| k.starts_with("CARGO_");
        assert_eq!(
            from_os(vars(), keyed).unwrap(),
            [("CARGO_PKG_NAME".to_owned(), "leaf".to_owned())]
        );
        let bad = vars().chain([(os(b"CARGO_X"), os(b"\xff"))]);
        assert_eq!(from_os(bad, keyed), Err(NotUtf8("CARGO_X".into())));
    }

    #[test]
    fn a_job_carries_only_allowed_vars_and_never_secrets() {
        let vars: Vec<(String, String)> = [
            ("CARGO_PKG_NAME", "leaf"),
            ("CARGO_MANIFEST_DIR", "/w/leaf"),
            ("OUT_DIR", "/t/out"),
            ("CARGO_DEPLOY_PASSWORD", "hunter2"),
            ("CARGO_REGISTRY_TOKEN", "tok"),
            ("AWS_SECRET_ACCESS_KEY", "aws"),
            ("GITHUB_TOKEN", "gh"),
            ("JETCC_NATS_PASSWORD", "nats"),
            ("JETCC_NATS_URL", "nats://u:p@h"),
            ("HOME", "/home/u"),
            ("PATH", "/usr/bin"),
            ("UTIL_STAMP", "v1"),
            ("SOURCE_DATE_EPOCH", "1"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let keyed = crate::key::is_keyed_env;
        let env = job_env(&vars, keyed, &["UTIL_STAMP".into()]).unwrap();
        let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "CARGO_PKG_NAME",
                "CARGO_MANIFEST_DIR",
                "OUT_DIR",
                "UTIL_STAMP",
                "SOURCE_DATE_EPOCH"
            ]
        );
        // A compile that reads a credential stays local.
        assert_eq!(
            job_env(&vars, keyed, &["GITHUB_TOKEN".into()]),
            Err(SecretRead("GITHUB_TOKEN".into()))
        );
    }

    #[test]
    fn secret_names() {
        for s in [
            "AWS_SECRET_ACCESS_KEY",
            "GITHUB_TOKEN",
            "JETCC_NATS_PASSWORD",
            "CARGO_REGISTRIES_X_TOKEN",
            "npm_config__auth",
            "SSH_PRIVATE_KEY",
            "MY_API_KEY",
        ] {
            assert!(looks_secret(s), "{s}");
        }
        for s in [
            "CARGO_PKG_AUTHORS",
            "OUT_DIR",
            "CARGO_MANIFEST_DIR",
            "UTIL_STAMP",
        ] {
            assert!(!looks_secret(s), "{s}");
        }
    }

    #[test]
    fn sent_bytes_are_checked_for_credentials_not_for_settings() {
        let vars: Vec<(String, String)> = [
            ("GITHUB_TOKEN", "gh-SECRET-value"),
            ("AWS_SECRET_ACCESS_KEY", "aws-SECRET-value"),
            // Settings, and a value too short to tell from ordinary bytes.
            ("AWS_REGION", "us-east-1-region"),
            ("JETCC_DIR", "/home/me/.cache/jetcc"),
            ("NPM_TOKEN", "short"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let credentials = credentials(&vars);
        let names: Vec<&str> = credentials.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["GITHUB_TOKEN", "AWS_SECRET_ACCESS_KEY"]);
        let rmeta = b"rust\0\0...GITHUB_TOKEN\0gh-SECRET-value\0...";
        assert_eq!(holds_credential(rmeta, &credentials), Some("GITHUB_TOKEN"));
        // The name alone (a source reading it) holds nothing.
        assert_eq!(
            holds_credential(b"option_env!(\"GITHUB_TOKEN\")", &credentials),
            None
        );
    }
}
