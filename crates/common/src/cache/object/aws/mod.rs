//! The AWS profile an S3 tier reads, as AWS tools find it: `profile` in `[cache.s3]`, else
//! `AWS_PROFILE`, else `default`, in `~/.aws/credentials` (`AWS_SHARED_CREDENTIALS_FILE`) and
//! `~/.aws/config` (`AWS_CONFIG_FILE`). It gives a region and, when the environment has no
//! keys, credentials: static keys, a `credential_process`, `role_arn` with
//! `web_identity_token_file`, `role_arn` with `source_profile` (any of these, or another role:
//! a chain) or `credential_source = Environment`, or IAM Identity Center (`sso_session` with
//! its `[sso-session]`, or the legacy `sso_start_url`). What jetcc does not resolve (an MFA
//! code, a role from instance metadata) is named with what to do instead, never silently
//! skipped. Env credentials, web identity, container and instance credentials are
//! object_store's own (see `super::s3`); `super::chain` turns what is read here into
//! providers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ini::{Ini, Properties};

use super::credential_process::CredentialProcess;
use super::sso::SsoProfile;
use super::sts::{RoleParams, StsEndpoint};
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
    /// `role_arn` with `source_profile` or `credential_source`: STS AssumeRole.
    AssumeRole(Box<RoleProfile>),
    /// `sso_session` or `sso_start_url`: the SSO portal, with the AWS CLI's cached token.
    Sso(SsoProfile),
}

/// A role to assume, and the credentials that assume it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleProfile {
    /// The profile that names the role.
    pub profile: String,
    pub role: RoleParams,
    pub sts: StsEndpoint,
    pub source: RoleSource,
}

/// What signs the AssumeRole call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleSource {
    /// `source_profile`: that profile's credentials (or, when it names itself, its keys).
    Profile(FromProfile),
    /// `credential_source = Environment`: `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`.
    Environment(StaticKeys),
}

/// Credentials a profile gave, and where they were found (for diagnoses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FromProfile {
    pub credentials: ProfileCredentials,
    /// `profile ci in /home/me/.aws/config`
    pub source: String,
}

/// One file's section for the profile.
#[derive(Clone)]
struct Section {
    props: Properties,
    file: PathBuf,
}

/// Both files, read once.
struct Files {
    /// `~/.aws/credentials` first: its keys win, as in the AWS CLI.
    creds: Option<(Ini, PathBuf)>,
    config: Option<(Ini, PathBuf)>,
    creds_file: Option<PathBuf>,
    config_file: Option<PathBuf>,
}

impl Files {
    /// The named profile's sections: `[name]` in the credentials file, `[profile name]` (or
    /// `[default]`) in the config file.
    fn sections(&self, name: &str) -> Vec<Section> {
        let mut sections = Vec::new();
        if let Some((ini, file)) = &self.creds {
            if let Some(s) = ini.section(Some(name)) {
                sections.push(Section {
                    props: s.clone(),
                    file: file.clone(),
                });
            }
        }
        if let Some((ini, file)) = &self.config {
            let titled = format!("profile {name}");
            let s = ini.section(Some(titled.as_str())).or_else(|| {
                (name == "default")
                    .then(|| ini.section(Some("default")))
                    .flatten()
            });
            if let Some(s) = s {
                sections.push(Section {
                    props: s.clone(),
                    file: file.clone(),
                });
            }
        }
        sections
    }

    /// A `[kind name]` section of the config file (`sso-session`).
    fn config_section(&self, kind: &str, name: &str) -> Option<Section> {
        let (ini, file) = self.config.as_ref()?;
        let props = ini.section(Some(format!("{kind} {name}").as_str()))?;
        Some(Section {
            props: props.clone(),
            file: file.clone(),
        })
    }
}

/// The environment variables a profile's resolution reads (besides the files' names).
const ENV: &[&str] = &[
    "HOME",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_STS",
    "AWS_ENDPOINT_URL_SSO",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
    "AWS_STS_REGIONAL_ENDPOINTS",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
];

/// How many roles a chain may assume one after the other.
const MAX_CHAIN: usize = 5;

/// The profile's sections in both files, read once.
pub struct Profile {
    name: String,
    /// Named in config or `AWS_PROFILE` (a missing one is an error, a missing `default` not).
    explicit: bool,
    sections: Vec<Section>,
    files: Arc<Files>,
    /// The variables of [`ENV`] that are set and not empty.
    env: BTreeMap<&'static str, String>,
}

impl Profile {
    /// Reads the profile's sections; `env` is the process environment (a parameter for tests).
    pub fn find(
        profile: Option<&str>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Profile, TierError> {
        let var = |n: &str| env(n).filter(|v| !v.trim().is_empty());
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
        let files = Arc::new(Files {
            creds: load_opt(&creds_file)?,
            config: load_opt(&config_file)?,
            creds_file,
            config_file,
        });
        let env = ENV
            .iter()
            .filter_map(|&k| Some((k, var(k)?.trim().to_owned())))
            .collect();
        Ok(Profile {
            sections: files.sections(&name),
            name,
            explicit: explicit.is_some(),
            files,
            env,
        })
    }

    /// Another profile of the same files (a `source_profile`).
    fn other(&self, name: &str) -> Profile {
        Profile {
            name: name.to_owned(),
            explicit: true,
            sections: self.files.sections(name),
            files: self.files.clone(),
            env: self.env.clone(),
        }
    }

    fn env(&self, name: &str) -> Option<&str> {
        self.env.get(name).map(String::as_str)
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

    /// Whether the profile assumes a role with the keys in the environment: then those keys
    /// sign its AssumeRole rather than the S3 requests themselves.
    pub fn assumes_role_from_env(&self) -> bool {
        self.get("role_arn").is_some()
            && self
                .value("credential_source")
                .is_some_and(|s| s.eq_ignore_ascii_case("Environment"))
    }

    /// The credentials the profile names, in the AWS SDKs' order: a role (with a web identity
    /// token, a source profile or a credential source), then SSO, then a
    /// `credential_process`, then static keys. `None`: it names none (the next sources are
    /// object_store's). A profile that needs what jetcc does not do is an error saying what to
    /// use instead.
    pub fn credentials(&self) -> Result<Option<FromProfile>, TierError> {
        if self.explicit && self.sections.is_empty() {
            return Err(self.missing("or unset AWS_PROFILE (or [cache.s3] profile)"));
        }
        self.resolve(&mut vec![])
    }

    /// `chain`: the role profiles being resolved, outermost first (a cycle is an error).
    fn resolve(&self, chain: &mut Vec<String>) -> Result<Option<FromProfile>, TierError> {
        if let Some((role_arn, file)) = self.get("role_arn") {
            if let Some(token_file) = self.value("web_identity_token_file") {
                if !chain.is_empty() {
                    return Err(self.unsupported(
                        "web_identity_token_file",
                        "a web identity role as the source of another role",
                        file,
                    ));
                }
                return Ok(Some(FromProfile {
                    credentials: ProfileCredentials::WebIdentity {
                        role_arn: role_arn.to_owned(),
                        token_file,
                        session_name: self.value("role_session_name"),
                    },
                    source: self.source(file),
                }));
            }
            let role = self.role(role_arn.to_owned(), file, chain)?;
            return Ok(Some(FromProfile {
                credentials: ProfileCredentials::AssumeRole(Box::new(role)),
                source: self.source(file),
            }));
        }
        if let Some((_, file)) = self
            .get("sso_session")
            .or_else(|| self.get("sso_start_url"))
        {
            return Ok(Some(FromProfile {
                credentials: ProfileCredentials::Sso(self.sso()?),
                source: self.source(file),
            }));
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
        self.static_keys()
    }

    /// `aws_access_key_id` and `aws_secret_access_key`, both from the same file, as the AWS CLI
    /// pairs them.
    fn static_keys(&self) -> Result<Option<FromProfile>, TierError> {
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
    fn missing(&self, or: &str) -> TierError {
        TierError::new(
            TierErrorKind::Credentials,
            format!(
                "AWS profile {:?} is neither in {} nor in {}: add it, {or}",
                self.name,
                show(&self.files.creds_file),
                show(&self.files.config_file)
            ),
        )
    }

    fn error(&self, file: &Path, why: String) -> TierError {
        TierError::new(
            TierErrorKind::Credentials,
            format!("{} {why}", self.source(file)),
        )
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

/// The domain of AWS's endpoints in a region (China's partition has its own).
fn aws_domain(region: &str) -> &'static str {
    match region.starts_with("cn-") {
        true => "amazonaws.com.cn",
        false => "amazonaws.com",
    }
}

mod role;
mod sso;
#[cfg(test)]
mod tests;
