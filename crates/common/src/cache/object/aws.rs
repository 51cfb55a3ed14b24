//! S3 credentials and region, found where AWS tools find them: `AWS_ACCESS_KEY_ID` /
//! `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`, then the profile (`profile` in config,
//! else `AWS_PROFILE`, else `default`) in `~/.aws/credentials` (`AWS_SHARED_CREDENTIALS_FILE`)
//! and `~/.aws/config` (`AWS_CONFIG_FILE`), then what `object_store` finds itself (web
//! identity, container and instance credentials).

use std::path::{Path, PathBuf};

use ini::Ini;

use super::{TierError, TierErrorKind};

/// A static key pair, with its session token.
#[derive(Clone, PartialEq, Eq)]
pub struct StaticKeys {
    pub key_id: String,
    pub secret: String,
    pub token: Option<String>,
    /// Where they came from, for diagnoses ("AWS_ACCESS_KEY_ID", "profile ci in …").
    pub source: String,
}

impl std::fmt::Debug for StaticKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StaticKeys({} from {})", self.key_id, self.source)
    }
}

/// What the credential search found.
#[derive(Debug, Default)]
pub struct Found {
    pub keys: Option<StaticKeys>,
    /// The profile's `region`, used when neither config nor env names one.
    pub region: Option<String>,
}

/// Looks credentials up; `env` is the process environment (a parameter for tests).
pub fn find(
    profile: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Found, TierError> {
    let var = |n: &str| env(n).filter(|v| !v.is_empty());
    let explicit = profile.map(str::to_owned).or_else(|| var("AWS_PROFILE"));
    let name = explicit.clone().unwrap_or_else(|| "default".to_owned());
    let home = var("HOME").map(PathBuf::from);
    let creds_file = var("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .or_else(|| home.as_ref().map(|h| h.join(".aws/credentials")));
    let config_file = var("AWS_CONFIG_FILE")
        .map(PathBuf::from)
        .or_else(|| home.as_ref().map(|h| h.join(".aws/config")));
    let creds = creds_file.as_deref().map(load).transpose()?.flatten();
    let config = config_file.as_deref().map(load).transpose()?.flatten();
    // ~/.aws/credentials names sections `[name]`; ~/.aws/config, `[profile name]` (and
    // `[default]`).
    let in_creds = creds.as_ref().and_then(|i| i.section(Some(name.as_str())));
    let config_section = format!("profile {name}");
    let in_config = config.as_ref().and_then(|i| {
        i.section(Some(config_section.as_str())).or_else(|| {
            (name == "default")
                .then(|| i.section(Some("default")))
                .flatten()
        })
    });
    let region = in_config
        .and_then(|s| s.get("region"))
        .or_else(|| in_creds.and_then(|s| s.get("region")))
        .map(str::to_owned);

    if let (Some(key_id), Some(secret)) = (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
        return Ok(Found {
            keys: Some(StaticKeys {
                key_id,
                secret,
                token: var("AWS_SESSION_TOKEN"),
                source: "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".into(),
            }),
            region,
        });
    }
    for (section, file) in [(in_creds, &creds_file), (in_config, &config_file)] {
        let Some(section) = section else { continue };
        let get = |k: &str| section.get(k).map(str::trim).filter(|v| !v.is_empty());
        match (get("aws_access_key_id"), get("aws_secret_access_key")) {
            (Some(key_id), Some(secret)) => {
                return Ok(Found {
                    keys: Some(StaticKeys {
                        key_id: key_id.to_owned(),
                        secret: secret.to_owned(),
                        token: get("aws_session_token").map(str::to_owned),
                        source: format!(
                            "profile {name} in {}",
                            file.as_deref().unwrap_or(Path::new("?")).display()
                        ),
                    }),
                    region,
                })
            }
            (Some(_), None) | (None, Some(_)) => {
                return Err(TierError::new(
                    TierErrorKind::Credentials,
                    format!(
                        "profile {name} in {} has only one of aws_access_key_id and \
                         aws_secret_access_key: set both",
                        file.as_deref().unwrap_or(Path::new("?")).display()
                    ),
                ))
            }
            (None, None) => {}
        }
    }
    if let Some(p) = explicit {
        if in_creds.is_none() && in_config.is_none() {
            return Err(TierError::new(
                TierErrorKind::Credentials,
                format!(
                    "AWS profile {p:?} is neither in {} nor in {}: add it, or unset AWS_PROFILE",
                    show(&creds_file),
                    show(&config_file)
                ),
            ));
        }
    }
    Ok(Found { keys: None, region })
}

fn show(p: &Option<PathBuf>) -> String {
    p.as_deref()
        .map_or_else(|| "~/.aws/…".to_owned(), |p| p.display().to_string())
}

/// Reads an AWS-style INI file; `None` when there is none.
fn load(path: &Path) -> Result<Option<Ini>, TierError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ini::load_from_str(&text).map(Some).map_err(|e| {
            TierError::new(
                TierErrorKind::Credentials,
                format!("cannot parse {}: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(TierError::new(
            TierErrorKind::Credentials,
            format!("cannot read {}: {e}", path.display()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: Vec<(&'static str, String)>) -> impl Fn(&str) -> Option<String> {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn env_keys_then_profiles() {
        let home = tempfile::tempdir().unwrap();
        let aws = home.path().join(".aws");
        std::fs::create_dir_all(&aws).unwrap();
        std::fs::write(
            aws.join("credentials"),
            "[default]\naws_access_key_id = D\naws_secret_access_key = DS\n\n\
             [ci]\naws_access_key_id=C\naws_secret_access_key=CS\naws_session_token=T\n",
        )
        .unwrap();
        std::fs::write(
            aws.join("config"),
            "[default]\nregion = eu-west-1\n[profile ci]\nregion = auto\n\
             [profile cfgonly]\naws_access_key_id = X\naws_secret_access_key = XS\n",
        )
        .unwrap();
        let h = home.path().display().to_string();
        let f = find(None, &env_of(vec![("HOME", h.clone())])).unwrap();
        let k = f.keys.unwrap();
        assert_eq!(
            (k.key_id.as_str(), f.region.as_deref()),
            ("D", Some("eu-west-1"))
        );
        let f = find(
            None,
            &env_of(vec![("HOME", h.clone()), ("AWS_PROFILE", "ci".into())]),
        )
        .unwrap();
        let k = f.keys.unwrap();
        assert_eq!((k.key_id.as_str(), k.token.as_deref()), ("C", Some("T")));
        assert_eq!(f.region.as_deref(), Some("auto"));
        let k = find(Some("cfgonly"), &env_of(vec![("HOME", h.clone())]))
            .unwrap()
            .keys
            .unwrap();
        assert_eq!(k.key_id, "X");
        // Env keys win over any profile.
        let k = find(
            Some("ci"),
            &env_of(vec![
                ("HOME", h.clone()),
                ("AWS_ACCESS_KEY_ID", "E".into()),
                ("AWS_SECRET_ACCESS_KEY", "ES".into()),
            ]),
        )
        .unwrap()
        .keys
        .unwrap();
        assert_eq!(k.key_id, "E");
        let e = find(Some("nope"), &env_of(vec![("HOME", h.clone())])).unwrap_err();
        assert!(e.to_string().contains("\"nope\""), "{e}");
        // No files, no env: nothing found, no error (object_store's own chain follows).
        let empty = tempfile::tempdir().unwrap();
        let f = find(
            None,
            &env_of(vec![("HOME", empty.path().display().to_string())]),
        )
        .unwrap();
        assert!(f.keys.is_none());
    }
}
