//! The AWS profile an S3 tier reads, as AWS tools find it: `profile` in `[cache.s3]`, else
//! `AWS_PROFILE`, else `default`, in `~/.aws/credentials` (`AWS_SHARED_CREDENTIALS_FILE`) and
//! `~/.aws/config` (`AWS_CONFIG_FILE`). It gives a region and, when the environment has no
//! keys, credentials: static keys, a `credential_process`, or `role_arn` with
//! `web_identity_token_file`. Profiles that assume a role from another profile or use SSO are
//! named with what to do instead, never silently skipped. Env credentials, web identity,
//! container and instance credentials are object_store's own (see `super::s3`).

use std::path::{Path, PathBuf};

use ini::{Ini, Properties};

use super::credential_process::CredentialProcess;
use super::{TierError, TierErrorKind};

/// A static key pair, with its session token.
#[derive(Clone, PartialEq, Eq)]
pub struct StaticKeys {
    pub key_id: String,
    pub secret: String,
    pub token: Option<String>,
}

impl std::fmt::Debug for StaticKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StaticKeys({})", self.key_id)
    }
}

/// How a profile says to get credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProfileCredentials {
    /// `aws_access_key_id` and `aws_secret_access_key` (and `aws_session_token`).
    Static(StaticKeys),
    /// `credential_process`: a command that prints the keys as JSON.
    Process(CredentialProcess),
    /// `role_arn` with `web_identity_token_file`: object_store's AssumeRoleWithWebIdentity.
    WebIdentity {
        role_arn: String,
        token_file: String,
        session_name: Option<String>,
    },
}

/// Credentials a profile gave, and where they were found (for diagnoses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FromProfile {
    pub credentials: ProfileCredentials,
    /// `profile ci in /home/me/.aws/config`
    pub source: String,
}

/// One file's section for the profile.
struct Section {
    props: Properties,
    file: PathBuf,
}

/// The profile's sections in both files, read once.
pub struct Profile {
    name: String,
    /// Named in config or `AWS_PROFILE` (a missing one is an error, a missing `default` not).
    explicit: bool,
    /// `~/.aws/credentials` first: its keys win, as in the AWS CLI.
    sections: Vec<Section>,
    creds_file: Option<PathBuf>,
    config_file: Option<PathBuf>,
}

/// Profile keys jetcc does not resolve itself, with the feature they belong to.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("source_profile", "assuming a role from another profile"),
    (
        "credential_source",
        "assuming a role from a credential source",
    ),
    ("sso_session", "IAM Identity Center (SSO)"),
    ("sso_start_url", "IAM Identity Center (SSO)"),
    ("sso_account_id", "IAM Identity Center (SSO)"),
];

impl Profile {
    /// Reads the profile's sections; `env` is the process environment (a parameter for tests).
    pub fn find(
        profile: Option<&str>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Profile, TierError> {
        let var = |n: &str| env(n).filter(|v| !v.is_empty());
        let explicit = profile
            .map(str::to_owned)
            .filter(|p| !p.is_empty())
            .or_else(|| var("AWS_PROFILE"));
        let name = explicit.clone().unwrap_or_else(|| "default".to_owned());
        let home = var("HOME").map(PathBuf::from);
        let creds_file = var("AWS_SHARED_CREDENTIALS_FILE")
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".aws/credentials")));
        let config_file = var("AWS_CONFIG_FILE")
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".aws/config")));
        let mut sections = Vec::new();
        // ~/.aws/credentials names sections `[name]`; ~/.aws/config, `[profile name]` (and
        // `[default]`).
        if let Some((ini, file)) = load_opt(&creds_file)? {
            if let Some(s) = ini.section(Some(name.as_str())) {
                sections.push(Section {
                    props: s.clone(),
                    file,
                });
            }
        }
        if let Some((ini, file)) = load_opt(&config_file)? {
            let titled = format!("profile {name}");
            let s = ini.section(Some(titled.as_str())).or_else(|| {
                (name == "default")
                    .then(|| ini.section(Some("default")))
                    .flatten()
            });
            if let Some(s) = s {
                sections.push(Section {
                    props: s.clone(),
                    file,
                });
            }
        }
        Ok(Profile {
            name,
            explicit: explicit.is_some(),
            sections,
            creds_file,
            config_file,
        })
    }

    /// A key's value (trimmed, not empty) and the file it is in.
    fn get(&self, key: &str) -> Option<(&str, &Path)> {
        self.sections.iter().find_map(|s| {
            let v = s.props.get(key).map(str::trim).filter(|v| !v.is_empty())?;
            Some((v, s.file.as_path()))
        })
    }

    fn value(&self, key: &str) -> Option<String> {
        self.get(key).map(|(v, _)| v.to_owned())
    }

    /// The profile's `region`, used when neither config nor env names one.
    pub fn region(&self) -> Option<String> {
        self.value("region")
    }

    fn source(&self, file: &Path) -> String {
        format!("profile {} in {}", self.name, file.display())
    }

    /// The credentials the profile names, in the AWS SDKs' order: a role (with a web identity
    /// token), then a `credential_process`, then static keys. `None`: it names none (the next
    /// sources are object_store's). A profile that needs what jetcc does not do is an error
    /// saying what to use instead.
    pub fn credentials(&self) -> Result<Option<FromProfile>, TierError> {
        if self.explicit && self.sections.is_empty() {
            return Err(TierError::new(
                TierErrorKind::Credentials,
                format!(
                    "AWS profile {:?} is neither in {} nor in {}: add it, or unset AWS_PROFILE \
                     (or [cache.s3] profile)",
                    self.name,
                    show(&self.creds_file),
                    show(&self.config_file)
                ),
            ));
        }
        if let Some((role_arn, file)) = self.get("role_arn") {
            if let Some(token_file) = self.value("web_identity_token_file") {
                return Ok(Some(FromProfile {
                    credentials: ProfileCredentials::WebIdentity {
                        role_arn: role_arn.to_owned(),
                        token_file,
                        session_name: self.value("role_session_name"),
                    },
                    source: self.source(file),
                }));
            }
            return Err(self.unsupported("role_arn", "assuming a role", file));
        }
        for (key, feature) in UNSUPPORTED {
            if let Some((_, file)) = self.get(key) {
                return Err(self.unsupported(key, feature, file));
            }
        }
        if let Some((command, file)) = self.get("credential_process") {
            return Ok(Some(FromProfile {
                credentials: ProfileCredentials::Process(CredentialProcess {
                    command: command.to_owned(),
                    profile: self.name.clone(),
                }),
                source: self.source(file),
            }));
        }
        // Both keys from the same file, as the AWS CLI pairs them.
        for s in &self.sections {
            let get = |k: &str| s.props.get(k).map(str::trim).filter(|v| !v.is_empty());
            match (get("aws_access_key_id"), get("aws_secret_access_key")) {
                (Some(key_id), Some(secret)) => {
                    return Ok(Some(FromProfile {
                        credentials: ProfileCredentials::Static(StaticKeys {
                            key_id: key_id.to_owned(),
                            secret: secret.to_owned(),
                            token: get("aws_session_token").map(str::to_owned),
                        }),
                        source: self.source(&s.file),
                    }))
                }
                (Some(_), None) | (None, Some(_)) => {
                    return Err(TierError::new(
                        TierErrorKind::Credentials,
                        format!(
                            "{} has only one of aws_access_key_id and aws_secret_access_key: \
                             set both",
                            self.source(&s.file)
                        ),
                    ))
                }
                (None, None) => {}
            }
        }
        Ok(None)
    }

    fn unsupported(&self, key: &str, feature: &str, file: &Path) -> TierError {
        let name = &self.name;
        TierError::new(
            TierErrorKind::Credentials,
            format!(
                "{} sets {key} ({feature}), which jetcc does not resolve itself: add a profile \
                 whose credential_process asks the AWS CLI, `[profile {name}-jetcc]` with \
                 `credential_process = aws configure export-credentials --profile {name} \
                 --format process`, and name it in [cache.s3] profile (or AWS_PROFILE); or \
                 export AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN",
                self.source(file)
            ),
        )
    }
}

fn show(p: &Option<PathBuf>) -> String {
    p.as_deref()
        .map_or_else(|| "~/.aws/…".to_owned(), |p| p.display().to_string())
}

fn load_opt(path: &Option<PathBuf>) -> Result<Option<(Ini, PathBuf)>, TierError> {
    let Some(path) = path else { return Ok(None) };
    Ok(load(path)?.map(|ini| (ini, path.clone())))
}

/// Reads an AWS-style INI file; `None` when there is none.
fn load(path: &Path) -> Result<Option<Ini>, TierError> {
    match std::fs::read_to_string(path) {
        // Values are taken literally, as the AWS CLI reads them: no quotes removed, no
        // backslash escapes (a credential_process is a shell command).
        Ok(text) => Ini::load_from_str_opt(
            &text,
            ini::ParseOption {
                enabled_quote: false,
                enabled_escape: false,
                ..ini::ParseOption::default()
            },
        )
        .map(Some)
        .map_err(|e| {
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

    fn home_with(credentials: &str, config: &str) -> tempfile::TempDir {
        let home = tempfile::tempdir().unwrap();
        let aws = home.path().join(".aws");
        std::fs::create_dir_all(&aws).unwrap();
        std::fs::write(aws.join("credentials"), credentials).unwrap();
        std::fs::write(aws.join("config"), config).unwrap();
        home
    }

    fn creds(
        profile: Option<&str>,
        home: &tempfile::TempDir,
    ) -> Result<Option<FromProfile>, TierError> {
        let h = home.path().display().to_string();
        Profile::find(profile, &env_of(vec![("HOME", h)]))?.credentials()
    }

    #[test]
    fn static_keys_and_regions_from_both_files() {
        let home = home_with(
            "[default]\naws_access_key_id = D\naws_secret_access_key = DS\n\n\
             [ci]\naws_access_key_id=C\naws_secret_access_key=CS\naws_session_token=T\n",
            "[default]\nregion = eu-west-1\n[profile ci]\nregion = auto\n\
             [profile cfgonly]\naws_access_key_id = X\naws_secret_access_key = XS\n",
        );
        let h = home.path().display().to_string();
        let p = Profile::find(None, &env_of(vec![("HOME", h.clone())])).unwrap();
        assert_eq!(p.region().as_deref(), Some("eu-west-1"));
        let got = p.credentials().unwrap().unwrap();
        let ProfileCredentials::Static(k) = got.credentials else {
            panic!("not static keys")
        };
        assert_eq!(k.key_id, "D");
        assert!(got.source.contains("profile default in"), "{}", got.source);

        let p = Profile::find(
            None,
            &env_of(vec![("HOME", h.clone()), ("AWS_PROFILE", "ci".into())]),
        )
        .unwrap();
        assert_eq!(p.region().as_deref(), Some("auto"));
        let Some(FromProfile {
            credentials: ProfileCredentials::Static(k),
            ..
        }) = p.credentials().unwrap()
        else {
            panic!()
        };
        assert_eq!((k.key_id.as_str(), k.token.as_deref()), ("C", Some("T")));

        // [cache.s3] profile wins over AWS_PROFILE.
        let p = Profile::find(
            Some("cfgonly"),
            &env_of(vec![("HOME", h.clone()), ("AWS_PROFILE", "ci".into())]),
        )
        .unwrap();
        let Some(FromProfile {
            credentials: ProfileCredentials::Static(k),
            ..
        }) = p.credentials().unwrap()
        else {
            panic!()
        };
        assert_eq!(k.key_id, "X");
    }

    #[test]
    fn a_missing_profile_is_an_error_only_when_named() {
        let home = home_with("", "");
        let e = creds(Some("nope"), &home).unwrap_err();
        assert!(e.to_string().contains("\"nope\""), "{e}");
        // No files, no env: nothing found, no error (object_store's own chain follows).
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(creds(None, &empty).unwrap(), None);
        // A profile with only a region names no credentials.
        let home = home_with("", "[profile r]\nregion = x\n");
        assert_eq!(creds(Some("r"), &home).unwrap(), None);
        // Half a key pair is an error.
        let home = home_with("[h]\naws_access_key_id = A\n", "");
        let e = creds(Some("h"), &home).unwrap_err();
        assert!(e.to_string().contains("only one of"), "{e}");
    }

    #[test]
    fn credential_process_and_web_identity_profiles() {
        let home = home_with(
            "[p]\naws_access_key_id = A\naws_secret_access_key = S\n",
            "[profile p]\ncredential_process = /usr/bin/get-creds --x \"a b\"\n\
             [profile w]\nrole_arn = arn:aws:iam::1:role/r\nweb_identity_token_file = /t\n\
             role_session_name = s\n",
        );
        let got = creds(Some("p"), &home).unwrap().unwrap();
        assert_eq!(
            got.credentials,
            ProfileCredentials::Process(CredentialProcess {
                command: "/usr/bin/get-creds --x \"a b\"".into(),
                profile: "p".into(),
            }),
            "credential_process before static keys, as in the AWS SDKs"
        );
        assert!(got.source.ends_with(".aws/config"), "{}", got.source);
        let got = creds(Some("w"), &home).unwrap().unwrap();
        assert_eq!(
            got.credentials,
            ProfileCredentials::WebIdentity {
                role_arn: "arn:aws:iam::1:role/r".into(),
                token_file: "/t".into(),
                session_name: Some("s".into()),
            }
        );
    }

    #[test]
    fn profiles_jetcc_cannot_resolve_say_what_to_do() {
        let home = home_with(
            "",
            "[profile role]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = base\n\
             [profile sso]\nsso_session = corp\nsso_account_id = 1\nsso_role_name = dev\n\
             [profile src]\ncredential_source = Ec2InstanceMetadata\n",
        );
        for (profile, key) in [
            ("role", "role_arn"),
            ("sso", "sso_session"),
            ("src", "credential_source"),
        ] {
            let e = creds(Some(profile), &home).unwrap_err();
            assert_eq!(e.kind, TierErrorKind::Credentials);
            let text = e.to_string();
            assert!(text.contains(&format!("sets {key}")), "{text}");
            assert!(
                text.contains(&format!(
                    "aws configure export-credentials --profile {profile} --format process"
                )),
                "{text}"
            );
            assert!(text.contains("AWS_ACCESS_KEY_ID"), "{text}");
        }
    }
}
