//! A profile's role: `role_arn` with what assumes it (a source profile, env keys, a web
//! identity token), and where STS is for it.

use super::*;

impl Profile {
    /// The role `role_arn` names, with what assumes it.
    pub(super) fn role(
        &self,
        role_arn: String,
        file: &Path,
        chain: &mut Vec<String>,
    ) -> Result<RoleProfile, TierError> {
        if self.get("mfa_serial").is_some() {
            return Err(self.unsupported("mfa_serial", "an MFA code for every session", file));
        }
        let duration_seconds = match self.value("duration_seconds") {
            None => None,
            Some(d) => Some(d.parse::<u32>().map_err(|_| {
                self.error(
                    file,
                    format!("sets duration_seconds = {d}, not a number of seconds: fix it"),
                )
            })?),
        };
        let role = RoleParams {
            role_arn,
            session_name: self.value("role_session_name"),
            external_id: self.value("external_id"),
            duration_seconds,
        };
        let source = match (
            self.value("source_profile"),
            self.value("credential_source"),
        ) {
            (Some(_), Some(_)) => {
                return Err(self.error(
                    file,
                    "sets both source_profile and credential_source: keep one".to_owned(),
                ))
            }
            (Some(src), None) if src == self.name => {
                // A profile that is its own source assumes the role with its own keys.
                let keys = self.static_keys()?.ok_or_else(|| {
                    self.error(
                        file,
                        "names itself as source_profile but has no aws_access_key_id and \
                         aws_secret_access_key: add them, or name another profile"
                            .to_owned(),
                    )
                })?;
                RoleSource::Profile(keys)
            }
            (Some(src), None) => RoleSource::Profile(self.source_profile(&src, file, chain)?),
            (None, Some(cs)) if cs.eq_ignore_ascii_case("Environment") => {
                RoleSource::Environment(self.env_keys(file)?)
            }
            (None, Some(cs))
                if cs.eq_ignore_ascii_case("Ec2InstanceMetadata")
                    || cs.eq_ignore_ascii_case("EcsContainer") =>
            {
                return Err(self.unsupported(
                    "credential_source",
                    &format!("assuming a role with the {cs} credentials"),
                    file,
                ))
            }
            (None, Some(cs)) => {
                return Err(self.error(
                    file,
                    format!(
                        "sets credential_source = {cs}, which AWS does not define: use \
                         Environment, Ec2InstanceMetadata or EcsContainer"
                    ),
                ))
            }
            (None, None) => {
                return Err(self.error(
                    file,
                    "sets role_arn without source_profile, credential_source or \
                     web_identity_token_file: add the one that gives the credentials to \
                     assume it with"
                        .to_owned(),
                ))
            }
        };
        Ok(RoleProfile {
            profile: self.name.clone(),
            role,
            sts: self.sts_endpoint(),
            source,
        })
    }

    /// The credentials of `source_profile = name`.
    fn source_profile(
        &self,
        name: &str,
        file: &Path,
        chain: &mut Vec<String>,
    ) -> Result<FromProfile, TierError> {
        chain.push(self.name.clone());
        if chain.iter().any(|p| p == name) {
            return Err(self.error(
                file,
                format!(
                    "is in a source_profile loop ({} -> {name}): end it at a profile with \
                     credentials",
                    chain.join(" -> ")
                ),
            ));
        }
        if chain.len() > MAX_CHAIN {
            return Err(self.error(
                file,
                format!("chains more than {MAX_CHAIN} roles through source_profile: shorten it"),
            ));
        }
        let source = self.other(name);
        if source.sections.is_empty() {
            return Err(source.missing(&format!("or fix source_profile in {}", file.display())));
        }
        let found = source.resolve(chain)?;
        chain.pop();
        found.ok_or_else(|| {
            self.error(
                file,
                format!(
                    "names source_profile = {name}, which gives no credentials: add keys, a \
                     credential_process or a role to it"
                ),
            )
        })
    }

    /// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`, for `credential_source = Environment`.
    fn env_keys(&self, file: &Path) -> Result<StaticKeys, TierError> {
        match (
            self.env("AWS_ACCESS_KEY_ID"),
            self.env("AWS_SECRET_ACCESS_KEY"),
        ) {
            (Some(key_id), Some(secret)) => Ok(StaticKeys {
                key_id: key_id.to_owned(),
                secret: secret.to_owned(),
                token: self.env("AWS_SESSION_TOKEN").map(str::to_owned),
            }),
            _ => Err(self.error(
                file,
                "sets credential_source = Environment, but AWS_ACCESS_KEY_ID and \
                 AWS_SECRET_ACCESS_KEY are not both set: export them"
                    .to_owned(),
            )),
        }
    }

    /// Where STS is for this profile: `AWS_ENDPOINT_URL_STS`, `AWS_ENDPOINT_URL`, the
    /// profile's `endpoint_url` (unless configured endpoints are ignored), else AWS's regional
    /// endpoint (the global one with `sts_regional_endpoints = legacy`). The region signs the
    /// call: `AWS_REGION`, `AWS_DEFAULT_REGION`, the profile's, else `us-east-1`.
    fn sts_endpoint(&self) -> StsEndpoint {
        let region = self
            .env("AWS_REGION")
            .or_else(|| self.env("AWS_DEFAULT_REGION"))
            .map(str::to_owned)
            .or_else(|| self.region())
            .unwrap_or_else(|| "us-east-1".to_owned());
        let configured = self
            .configured_endpoint("AWS_ENDPOINT_URL_STS")
            .map(|u| u.trim_end_matches('/').to_owned());
        let legacy = self
            .env("AWS_STS_REGIONAL_ENDPOINTS")
            .map(str::to_owned)
            .or_else(|| self.value("sts_regional_endpoints"))
            .is_some_and(|v| v.eq_ignore_ascii_case("legacy"));
        match configured {
            Some(url) => StsEndpoint { url, region },
            None if legacy => StsEndpoint {
                url: "https://sts.amazonaws.com".to_owned(),
                region: "us-east-1".to_owned(),
            },
            None => StsEndpoint {
                url: format!("https://sts.{region}.{}", aws_domain(&region)),
                region,
            },
        }
    }

    /// `service_var` (`AWS_ENDPOINT_URL_STS`), else `AWS_ENDPOINT_URL`, else the profile's
    /// `endpoint_url`; none when `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS` or the profile's
    /// `ignore_configured_endpoint_urls` is true.
    fn configured_endpoint(&self, service_var: &str) -> Option<String> {
        let ignore = self
            .env("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")
            .map(str::to_owned)
            .or_else(|| self.value("ignore_configured_endpoint_urls"))
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        if ignore {
            return None;
        }
        self.env(service_var)
            .or_else(|| self.env("AWS_ENDPOINT_URL"))
            .map(str::to_owned)
            .or_else(|| self.value("endpoint_url"))
    }
}
