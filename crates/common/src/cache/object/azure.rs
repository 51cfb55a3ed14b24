//! The Azure client: object_store's `MicrosoftAzureBuilder::from_env()` (the
//! `AZURE_STORAGE_*` variables), then `[cache.azure] connection_string` on top, read as Azure's
//! tools read one: `AccountName`, `AccountKey` or `SharedAccessSignature`, `BlobEndpoint`, or
//! `DefaultEndpointsProtocol` with `EndpointSuffix` (another cloud), or
//! `UseDevelopmentStorage=true` (Azurite).

use std::sync::Arc;

use object_store::azure::{
    split_sas, AzureAccessKey, AzureConfigKey, AzureCredential, MicrosoftAzureBuilder,
};
use object_store::{ObjectStore, StaticCredentialProvider};

use super::{client_options, config_error, retry, Place, TierError, TierErrorKind};
use crate::config::AzureConfig;

/// A connection string's parts that name the blob service and its credentials. Other parts
/// (`QueueEndpoint`, `TableEndpoint`, …) are for other services.
#[derive(Default, Clone, PartialEq, Eq)]
pub(super) struct ConnectionString {
    account: Option<String>,
    key: Option<String>,
    sas: Option<String>,
    blob_endpoint: Option<String>,
    protocol: Option<String>,
    endpoint_suffix: Option<String>,
    emulator: bool,
}

impl std::fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key or the signature.
        f.debug_struct("ConnectionString")
            .field("account", &self.account)
            .field("blob_endpoint", &self.blob_endpoint)
            .field("endpoint", &self.endpoint())
            .finish_non_exhaustive()
    }
}

impl ConnectionString {
    /// `Key=value;…`: a value runs to the next `;` and may hold `=` (base64 keys, SAS).
    pub(super) fn parse(s: &str) -> Result<ConnectionString, TierError> {
        let mut c = ConnectionString::default();
        for part in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((k, v)) = part.split_once('=') else {
                // The part may be a secret: name its position, not its text.
                return Err(TierError::new(
                    TierErrorKind::Config,
                    "[cache.azure] connection_string has a part without `=`: it must be \
                     `Key=value;…` as the Azure portal shows it",
                ));
            };
            let v = Some(v.trim().to_owned()).filter(|v| !v.is_empty());
            match k.trim() {
                "AccountName" => c.account = v,
                "AccountKey" => c.key = v,
                "SharedAccessSignature" => c.sas = v,
                "BlobEndpoint" => c.blob_endpoint = v,
                "DefaultEndpointsProtocol" => c.protocol = v,
                "EndpointSuffix" => c.endpoint_suffix = v,
                "UseDevelopmentStorage" => {
                    c.emulator = v.is_some_and(|v| v.eq_ignore_ascii_case("true"))
                }
                _ => {}
            }
        }
        Ok(c)
    }

    /// The account's blob URL: `BlobEndpoint`, else built from the protocol and
    /// `EndpointSuffix` (`https://<account>.blob.<suffix>`); `None`: object_store's default
    /// (`https://<account>.blob.core.windows.net`).
    fn endpoint(&self) -> Option<String> {
        if let Some(e) = &self.blob_endpoint {
            return Some(e.clone());
        }
        let account = self.account.as_deref()?;
        if self.endpoint_suffix.is_none() && self.protocol.is_none() {
            return None;
        }
        let protocol = self.protocol.as_deref().unwrap_or("https");
        let suffix = self
            .endpoint_suffix
            .as_deref()
            .unwrap_or("core.windows.net")
            .trim_matches('.');
        Some(format!("{protocol}://{account}.blob.{suffix}"))
    }

    /// The builder with the string's settings on top; `allow_http` is whether the endpoint
    /// is plain http.
    fn apply(
        &self,
        mut b: MicrosoftAzureBuilder,
    ) -> Result<(MicrosoftAzureBuilder, bool, String), TierError> {
        if let Some(a) = &self.account {
            b = b.with_account(a);
        }
        if self.emulator {
            b = b.with_use_emulator(true);
            if let Some(k) = &self.key {
                b = b.with_access_key(k);
            }
            if let Some(sas) = &self.sas {
                b = b.with_sas_authorization(split(sas)?);
            }
            return Ok((b, true, "the emulator's (UseDevelopmentStorage)".into()));
        }
        let endpoint = self.endpoint();
        let allow_http = endpoint
            .as_deref()
            .is_some_and(|e| e.starts_with("http://"));
        if let Some(e) = endpoint {
            b = b.with_endpoint(e);
        }
        // A provider, so the string's credentials win over any AZURE_STORAGE_* in the env.
        let (credential, what) = match (&self.key, &self.sas) {
            (Some(k), _) => {
                let key = AzureAccessKey::try_new(k).map_err(|_| {
                    TierError::new(
                        TierErrorKind::Config,
                        "[cache.azure] connection_string: AccountKey is not base64; copy it \
                         again from the storage account's access keys",
                    )
                })?;
                (
                    AzureCredential::AccessKey(key),
                    "AccountKey of connection_string",
                )
            }
            (None, Some(sas)) => (
                AzureCredential::SASToken(split(sas)?),
                "SharedAccessSignature of connection_string",
            ),
            (None, None) => {
                return Ok((b, allow_http, "the AZURE_STORAGE_* environment".into()));
            }
        };
        b = b.with_credentials(Arc::new(StaticCredentialProvider::new(credential)));
        Ok((b, allow_http, what.into()))
    }
}

fn split(sas: &str) -> Result<Vec<(String, String)>, TierError> {
    split_sas(sas).map_err(|_| {
        TierError::new(
            TierErrorKind::Config,
            "[cache.azure] connection_string: SharedAccessSignature is not a query string \
             (sv=…&sig=…); copy it again from where it was generated",
        )
    })
}

/// Opens the Azure client (no request is made).
pub(super) fn open(a: &AzureConfig) -> Result<(Arc<dyn ObjectStore>, Place), TierError> {
    let base = MicrosoftAzureBuilder::from_env()
        .with_container_name(&a.container)
        .with_retry(retry());
    let (store, place) = configure(a, base)?;
    let store = store.build().map_err(|e| config_error("cache.azure", e))?;
    Ok((Arc::new(store), place))
}

fn configure(
    a: &AzureConfig,
    base: MicrosoftAzureBuilder,
) -> Result<(MicrosoftAzureBuilder, Place), TierError> {
    let conn = ConnectionString::parse(a.connection_string.as_deref().unwrap_or(""))?;
    let (b, allow_http, credentials) = conn.apply(base)?;
    let endpoint = b.get_config_value(&AzureConfigKey::Endpoint);
    let b = b.with_client_options(client_options(allow_http));
    let place = Place {
        what: format!("azure container {}", a.container),
        endpoint,
        credentials,
    };
    Ok((b, place))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(conn: &str) -> AzureConfig {
        serde_json::from_value(serde_json::json!({
            "container": "cache",
            "connection_string": conn,
        }))
        .unwrap()
    }

    const KEY: &str =
        "a2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2traw==";

    #[test]
    fn connection_strings_as_the_azure_portal_writes_them() {
        let c = ConnectionString::parse(&format!(
            "DefaultEndpointsProtocol=https;AccountName=team;AccountKey={KEY};\
             EndpointSuffix=core.chinacloudapi.cn"
        ))
        .unwrap();
        assert_eq!(c.key.as_deref(), Some(KEY), "the key's = padding kept");
        assert_eq!(
            c.endpoint().as_deref(),
            Some("https://team.blob.core.chinacloudapi.cn")
        );
        // A SAS holds = and & and %-escapes: kept whole.
        let sas = "sv=2022-11-02&ss=b&srt=co&sp=rwdl&se=2027-01-01T00:00:00Z&sig=abc%2Bdef%3D";
        let c = ConnectionString::parse(&format!(
            "BlobEndpoint=http://127.0.0.1:10000/team;SharedAccessSignature={sas}"
        ))
        .unwrap();
        assert_eq!(c.sas.as_deref(), Some(sas));
        assert_eq!(c.endpoint().as_deref(), Some("http://127.0.0.1:10000/team"));
        // BlobEndpoint wins over a suffix; the default cloud needs no endpoint.
        let c = ConnectionString::parse(
            "AccountName=a;EndpointSuffix=x.net;BlobEndpoint=https://b.example/",
        )
        .unwrap();
        assert_eq!(c.endpoint().as_deref(), Some("https://b.example/"));
        let c = ConnectionString::parse(&format!("AccountName=a;AccountKey={KEY}")).unwrap();
        assert_eq!(c.endpoint(), None);
        let c = ConnectionString::parse("DefaultEndpointsProtocol=http;AccountName=a").unwrap();
        assert_eq!(
            c.endpoint().as_deref(),
            Some("http://a.blob.core.windows.net")
        );
        let c = ConnectionString::parse("UseDevelopmentStorage=true").unwrap();
        assert!(c.emulator);
        // Nothing secret in errors or debug output.
        let e = ConnectionString::parse("AccountName=a;secretjunk").unwrap_err();
        assert!(!e.message.contains("secretjunk"), "{e}");
        let c = ConnectionString::parse(&format!("AccountName=a;AccountKey={KEY}")).unwrap();
        assert!(!format!("{c:?}").contains(KEY));
    }

    #[test]
    fn the_string_reaches_the_builder() {
        let (b, place) = configure(
            &config("AccountName=team;SharedAccessSignature=sv=1&sig=s;EndpointSuffix=usgovcloudapi.net"),
            MicrosoftAzureBuilder::new().with_container_name("cache"),
        )
        .unwrap();
        assert_eq!(
            b.get_config_value(&AzureConfigKey::Endpoint).as_deref(),
            Some("https://team.blob.usgovcloudapi.net")
        );
        assert!(
            place.credentials.contains("SharedAccessSignature"),
            "{place:?}"
        );
        b.build().unwrap();
        let e = configure(
            &config("AccountName=team;AccountKey=not base64!"),
            MicrosoftAzureBuilder::new(),
        )
        .err()
        .unwrap();
        assert!(e.message.contains("AccountKey is not base64"), "{e}");
    }

    /// A SAS-only string authorizes requests by its query, as Azure expects: the request a
    /// plain TCP listener receives carries the signature (no Azure server runs here).
    #[test]
    fn a_shared_access_signature_is_sent_with_each_request() {
        use object_store::ObjectStoreExt;
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = vec![0u8; 8192];
            let n = s.read(&mut buf).unwrap();
            let head = String::from_utf8_lossy(&buf[..n]).into_owned();
            let _ = s.write_all(
                b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
            head
        });
        let conn = format!(
            "AccountName=team;BlobEndpoint=http://127.0.0.1:{port}/team;\
             SharedAccessSignature=sv=2022-11-02&sp=r&sig=SIGNATURE"
        );
        let (store, _) = open(&config(&conn)).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let got = rt.block_on(store.head(&object_store::path::Path::from("probe")));
        assert!(got.is_err(), "404");
        let head = server.join().unwrap();
        let line = head.lines().next().unwrap();
        assert!(line.starts_with("HEAD /team/cache/probe?"), "{line}");
        assert!(
            line.contains("sig=SIGNATURE") && line.contains("sv=2022-11-02"),
            "{line}"
        );
        assert!(
            !head.to_ascii_lowercase().contains("authorization:"),
            "{head}"
        );
    }
}
