//! From what an AWS profile says (`super::aws`) to the object_store `CredentialProvider`
//! that signs S3 requests, and the words `jetcc --check` names it by (never a secret):
//! static keys, a `credential_process`, a role assumed through STS with any of these (or
//! another role, or the environment's keys), or an SSO role. Nothing is fetched here: each
//! provider fetches at its first use.

use std::sync::Arc;

use object_store::aws::AwsCredential;
use object_store::StaticCredentialProvider;

use super::aws::{FromProfile, ProfileCredentials, RoleProfile, RoleSource, StaticKeys};
use super::credential_process::ProcessProvider;
use super::refresh::{AwsProvider, Refreshing};
use super::sts::AssumeRole;

/// The provider for a profile's credentials and its description; `None` for a web identity
/// role, which object_store's builder does itself (`super::s3`).
pub(super) fn provider(found: &FromProfile) -> Option<(AwsProvider, String)> {
    let source = &found.source;
    Some(match &found.credentials {
        ProfileCredentials::Static(k) => {
            (fixed(k), format!("access key {} from {source}", k.key_id))
        }
        ProfileCredentials::Process(p) => (
            Arc::new(ProcessProvider::new(p.clone())),
            format!("credential_process of {source}"),
        ),
        ProfileCredentials::AssumeRole(role) => assume_role(role)?,
        ProfileCredentials::Sso(sso) => {
            let desc = format!(
                "SSO role {} in account {} ({source}, token from aws sso login)",
                sso.role_name, sso.account_id
            );
            (Arc::new(Refreshing::new(sso.clone())), desc)
        }
        ProfileCredentials::WebIdentity { .. } => return None,
    })
}

/// A role assumed with its source's credentials.
fn assume_role(role: &RoleProfile) -> Option<(AwsProvider, String)> {
    let (source, source_desc) = match &role.source {
        RoleSource::Profile(p) => provider(p)?,
        RoleSource::Environment(k) => (
            fixed(k),
            format!(
                "access key {} from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY \
                 (credential_source = Environment)",
                k.key_id
            ),
        ),
    };
    let desc = format!(
        "role {} assumed through STS at {} with {source_desc}",
        role.role.role_arn, role.sts.url
    );
    let fetch = AssumeRole {
        role: role.role.clone(),
        sts: role.sts.clone(),
        profile: role.profile.clone(),
        source,
        source_desc,
    };
    Some((Arc::new(Refreshing::new(fetch)), desc))
}

fn fixed(k: &StaticKeys) -> AwsProvider {
    Arc::new(StaticCredentialProvider::new(AwsCredential {
        key_id: k.key_id.clone(),
        secret_key: k.secret.clone(),
        token: k.token.clone(),
    }))
}
