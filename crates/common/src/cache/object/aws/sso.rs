//! A profile's IAM Identity Center settings: its `[sso-session]`, or the legacy keys.

use super::*;

impl Profile {
    /// The profile's SSO settings: from its `[sso-session]` (`sso_session`), or the legacy
    /// keys on the profile itself (`sso_start_url`, `sso_region`).
    pub(super) fn sso(&self) -> Result<SsoProfile, TierError> {
        let (session, start_url, region, file) = match self.get("sso_session") {
            Some((session, file)) => {
                let section = self.files.config_section("sso-session", session);
                let Some(section) = section else {
                    return Err(self.error(
                        file,
                        format!(
                            "sets sso_session = {session}, but there is no [sso-session \
                             {session}] in {}: run `aws configure sso --profile {}`",
                            show(&self.files.config_file),
                            self.name
                        ),
                    ));
                };
                let get = |k: &str| {
                    section
                        .props
                        .get(k)
                        .map(str::trim)
                        .filter(|v| !v.is_empty())
                        .map(str::to_owned)
                };
                let start_url = get("sso_start_url");
                let region = get("sso_region");
                (Some(session.to_owned()), start_url, region, file)
            }
            None => {
                let (url, file) = self.get("sso_start_url").expect("checked by the caller");
                (None, Some(url.to_owned()), self.value("sso_region"), file)
            }
        };
        let account_id = self.value("sso_account_id");
        let role_name = self.value("sso_role_name");
        let missing: Vec<&str> = [
            ("sso_start_url", start_url.is_none()),
            ("sso_region", region.is_none()),
            ("sso_account_id", account_id.is_none()),
            ("sso_role_name", role_name.is_none()),
        ]
        .iter()
        .filter(|(_, m)| *m)
        .map(|(k, _)| *k)
        .collect();
        if !missing.is_empty() {
            return Err(self.error(
                file,
                format!(
                    "uses IAM Identity Center (SSO) without {}: run `aws configure sso \
                     --profile {}`",
                    missing.join(", "),
                    self.name
                ),
            ));
        }
        let region = region.expect("checked above");
        // Only the SSO-specific variable moves the portal: the bearer token is an AWS sign-in,
        // never to be sent to the S3-compatible server AWS_ENDPOINT_URL often names.
        let ignore = self
            .env("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let portal = self
            .env("AWS_ENDPOINT_URL_SSO")
            .filter(|_| !ignore)
            .map(|u| u.trim_end_matches('/').to_owned())
            .unwrap_or_else(|| format!("https://portal.sso.{region}.{}", aws_domain(&region)));
        let cache_dir = self
            .env("HOME")
            .map(|h| Path::new(h).join(".aws/sso/cache"))
            .ok_or_else(|| {
                self.error(
                    file,
                    "uses SSO, whose token is under ~/.aws/sso/cache, but HOME is not set: \
                     set it"
                        .to_owned(),
                )
            })?;
        Ok(SsoProfile {
            profile: self.name.clone(),
            session,
            start_url: start_url.expect("checked above"),
            region,
            account_id: account_id.expect("checked above"),
            role_name: role_name.expect("checked above"),
            portal,
            cache_dir,
        })
    }
}
