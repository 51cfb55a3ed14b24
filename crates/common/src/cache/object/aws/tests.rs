use super::*;
use crate::cache::object::sso::SsoProfile;
use crate::cache::object::sts::{RoleParams, StsEndpoint};

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
    creds_with(profile, home, &[])
}

/// As [`creds`], with more environment variables.
fn creds_with(
    profile: Option<&str>,
    home: &tempfile::TempDir,
    vars: &[(&'static str, &str)],
) -> Result<Option<FromProfile>, TierError> {
    let mut env = vec![("HOME", home.path().display().to_string())];
    env.extend(vars.iter().map(|(k, v)| (*k, v.to_string())));
    Profile::find(profile, &env_of(env))?.credentials()
}

/// The role a profile assumes.
fn role_of(found: Option<FromProfile>) -> RoleProfile {
    match found.map(|f| f.credentials) {
        Some(ProfileCredentials::AssumeRole(r)) => *r,
        other => panic!("not a role: {other:?}"),
    }
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
fn a_role_is_assumed_with_its_source_profile_s_credentials() {
    let home = home_with(
        "[base]\naws_access_key_id = AKIDBASE\naws_secret_access_key = BS\n",
        "[profile ci]\nrole_arn = arn:aws:iam::1:role/ci\nsource_profile = base\n\
         role_session_name = build-7\nexternal_id = ext\nduration_seconds = 900\n\
         region = eu-west-1\n\
         [profile chained]\nrole_arn = arn:aws:iam::2:role/deploy\nsource_profile = viaproc\n\
         [profile viaproc]\nrole_arn = arn:aws:iam::1:role/mid\nsource_profile = proc\n\
         [profile proc]\ncredential_process = get-creds\n\
         [profile self]\nrole_arn = arn:aws:iam::1:role/self\nsource_profile = self\n\
         aws_access_key_id = AKIDSELF\naws_secret_access_key = SS\n",
    );
    let found = creds(Some("ci"), &home).unwrap().unwrap();
    assert!(found.source.contains("profile ci in"), "{}", found.source);
    let role = role_of(Some(found));
    assert_eq!(
        role.role,
        RoleParams {
            role_arn: "arn:aws:iam::1:role/ci".into(),
            session_name: Some("build-7".into()),
            external_id: Some("ext".into()),
            duration_seconds: Some(900),
        }
    );
    assert_eq!(role.profile, "ci");
    assert_eq!(
        role.sts,
        StsEndpoint {
            url: "https://sts.eu-west-1.amazonaws.com".into(),
            region: "eu-west-1".into(),
        }
    );
    let RoleSource::Profile(src) = &role.source else {
        panic!("{:?}", role.source)
    };
    let ProfileCredentials::Static(k) = &src.credentials else {
        panic!("{src:?}")
    };
    assert_eq!(k.key_id, "AKIDBASE");
    assert!(src.source.contains("profile base in"), "{}", src.source);

    // A chain: a role assumed with a role assumed with a credential_process.
    let outer = role_of(creds(Some("chained"), &home).unwrap());
    let RoleSource::Profile(mid) = &outer.source else {
        panic!()
    };
    let inner = role_of(Some(mid.clone()));
    assert_eq!(inner.role.role_arn, "arn:aws:iam::1:role/mid");
    let RoleSource::Profile(p) = &inner.source else {
        panic!()
    };
    assert!(matches!(&p.credentials, ProfileCredentials::Process(c) if c.command == "get-creds"));

    // A profile that is its own source assumes the role with its own keys.
    let own = role_of(creds(Some("self"), &home).unwrap());
    let RoleSource::Profile(p) = &own.source else {
        panic!()
    };
    assert!(matches!(&p.credentials, ProfileCredentials::Static(k) if k.key_id == "AKIDSELF"));
}

#[test]
fn credential_source_environment_takes_the_env_keys() {
    let home = home_with(
        "",
        "[profile envrole]\nrole_arn = arn:aws:iam::1:role/ci\ncredential_source = Environment\n",
    );
    let vars = [
        ("AWS_ACCESS_KEY_ID", "AKIDENV"),
        ("AWS_SECRET_ACCESS_KEY", "ES"),
        ("AWS_SESSION_TOKEN", "ET"),
    ];
    let p = Profile::find(
        Some("envrole"),
        &env_of(vec![("HOME", home.path().display().to_string())]),
    )
    .unwrap();
    assert!(p.assumes_role_from_env());
    let role = role_of(creds_with(Some("envrole"), &home, &vars).unwrap());
    assert_eq!(
        role.source,
        RoleSource::Environment(StaticKeys {
            key_id: "AKIDENV".into(),
            secret: "ES".into(),
            token: Some("ET".into()),
        })
    );
    let e = creds_with(Some("envrole"), &home, &vars[..1]).unwrap_err();
    assert!(e.message.contains("credential_source = Environment"), "{e}");
    assert!(e.message.contains("export them"), "{e}");
}

#[test]
fn the_sts_endpoint_is_the_configured_one_else_aws_s_in_the_region() {
    let home = home_with(
        "[base]\naws_access_key_id = A\naws_secret_access_key = S\n",
        "[profile r]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = base\n\
         [profile local]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = base\n\
         endpoint_url = http://sts.lan:8333\nregion = lan-1\n\
         [profile ignoring]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = base\n\
         endpoint_url = http://sts.lan:8333\nignore_configured_endpoint_urls = true\n\
         [profile legacy]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = base\n\
         sts_regional_endpoints = legacy\nregion = eu-west-1\n\
         [profile china]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = base\n\
         region = cn-north-1\n",
    );
    let sts = |p: &str, vars: &[(&'static str, &str)]| {
        let s = role_of(creds_with(Some(p), &home, vars).unwrap()).sts;
        (s.url, s.region)
    };
    let pair = |u: &str, r: &str| (u.to_owned(), r.to_owned());
    assert_eq!(
        sts("r", &[]),
        pair("https://sts.us-east-1.amazonaws.com", "us-east-1")
    );
    assert_eq!(
        sts("r", &[("AWS_REGION", "eu-north-1")]),
        pair("https://sts.eu-north-1.amazonaws.com", "eu-north-1")
    );
    assert_eq!(sts("local", &[]), pair("http://sts.lan:8333", "lan-1"));
    assert_eq!(
        sts("local", &[("AWS_ENDPOINT_URL", "http://all:1/")]),
        pair("http://all:1", "lan-1"),
        "AWS_ENDPOINT_URL over the profile's"
    );
    assert_eq!(
        sts(
            "local",
            &[
                ("AWS_ENDPOINT_URL", "http://all:1"),
                ("AWS_ENDPOINT_URL_STS", "http://sts:2")
            ]
        ),
        pair("http://sts:2", "lan-1"),
        "the service's own over AWS_ENDPOINT_URL"
    );
    assert_eq!(
        sts("ignoring", &[("AWS_ENDPOINT_URL_STS", "http://sts:2")]),
        pair("https://sts.us-east-1.amazonaws.com", "us-east-1")
    );
    assert_eq!(
        sts("local", &[("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true")]),
        pair("https://sts.lan-1.amazonaws.com", "lan-1")
    );
    assert_eq!(
        sts("legacy", &[]),
        pair("https://sts.amazonaws.com", "us-east-1")
    );
    assert_eq!(
        sts("china", &[]),
        pair("https://sts.cn-north-1.amazonaws.com.cn", "cn-north-1")
    );
}

#[test]
fn sso_profiles_from_a_session_or_the_legacy_keys() {
    let home = home_with(
        "",
        "[profile dev]\nsso_session = corp\nsso_account_id = 123456789012\n\
         sso_role_name = Developer\nregion = eu-west-1\n\
         [sso-session corp]\nsso_start_url = https://corp.awsapps.com/start\n\
         sso_region = eu-central-1\nsso_registration_scopes = sso:account:access\n\
         [profile old]\nsso_start_url = https://old.awsapps.com/start\nsso_region = us-west-2\n\
         sso_account_id = 1\nsso_role_name = R\n\
         [profile nosection]\nsso_session = gone\nsso_account_id = 1\nsso_role_name = R\n\
         [profile half]\nsso_session = corp\n",
    );
    let sso = |p: &str, vars: &[(&'static str, &str)]| match creds_with(Some(p), &home, vars)
        .unwrap()
        .map(|f| f.credentials)
    {
        Some(ProfileCredentials::Sso(s)) => s,
        other => panic!("{other:?}"),
    };
    let dev = sso("dev", &[]);
    assert_eq!(
        dev,
        SsoProfile {
            profile: "dev".into(),
            session: Some("corp".into()),
            start_url: "https://corp.awsapps.com/start".into(),
            region: "eu-central-1".into(),
            account_id: "123456789012".into(),
            role_name: "Developer".into(),
            portal: "https://portal.sso.eu-central-1.amazonaws.com".into(),
            cache_dir: home.path().join(".aws/sso/cache"),
        }
    );
    let old = sso("old", &[]);
    assert_eq!(old.session, None);
    assert_eq!(old.start_url, "https://old.awsapps.com/start");
    assert_eq!(old.portal, "https://portal.sso.us-west-2.amazonaws.com");
    assert_eq!(
        sso("dev", &[("AWS_ENDPOINT_URL_SSO", "http://127.0.0.1:1")]).portal,
        "http://127.0.0.1:1"
    );
    // The token never goes where the generic endpoint (often an S3 server) points.
    assert_eq!(
        sso("dev", &[("AWS_ENDPOINT_URL", "http://minio.lan:9000")]).portal,
        "https://portal.sso.eu-central-1.amazonaws.com"
    );

    let e = creds(Some("nosection"), &home).unwrap_err();
    assert!(e.message.contains("no [sso-session gone]"), "{e}");
    assert!(
        e.message.contains("aws configure sso --profile nosection"),
        "{e}"
    );
    let e = creds(Some("half"), &home).unwrap_err();
    assert!(
        e.message.contains("without sso_account_id, sso_role_name"),
        "{e}"
    );
}

#[test]
fn roles_jetcc_cannot_assume_say_why_and_what_to_do() {
    let home = home_with(
        "[empty]\nregion = x\n",
        "[profile mfa]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = empty\n\
         mfa_serial = arn:aws:iam::1:mfa/me\n\
         [profile imds]\nrole_arn = arn:aws:iam::1:role/r\ncredential_source = Ec2InstanceMetadata\n\
         [profile nosrc]\nrole_arn = arn:aws:iam::1:role/r\n\
         [profile both]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = empty\n\
         credential_source = Environment\n\
         [profile odd]\nrole_arn = arn:aws:iam::1:role/r\ncredential_source = Vault\n\
         [profile nocreds]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = empty\n\
         [profile ghost]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = nowhere\n\
         [profile loop1]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = loop2\n\
         [profile loop2]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = loop1\n\
         [profile wisrc]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = wi\n\
         [profile wi]\nrole_arn = arn:aws:iam::1:role/w\nweb_identity_token_file = /t\n\
         [profile dur]\nrole_arn = arn:aws:iam::1:role/r\ncredential_source = Environment\n\
         duration_seconds = 1h\n",
    );
    for (profile, says) in [
        ("mfa", "sets mfa_serial"),
        (
            "imds",
            "sets credential_source (assuming a role with the Ec2InstanceMetadata",
        ),
        ("wisrc", "sets web_identity_token_file"),
    ] {
        let e = creds(Some(profile), &home).unwrap_err();
        assert_eq!(e.kind, TierErrorKind::Credentials);
        assert!(e.message.contains(says), "{e}");
        assert!(
            e.message
                .contains("aws configure export-credentials --profile"),
            "{e}"
        );
    }
    for (profile, says) in [
        (
            "nosrc",
            "without source_profile, credential_source or web_identity_token_file",
        ),
        ("both", "sets both source_profile and credential_source"),
        (
            "odd",
            "credential_source = Vault, which AWS does not define",
        ),
        (
            "nocreds",
            "names source_profile = empty, which gives no credentials",
        ),
        ("ghost", "AWS profile \"nowhere\" is neither in"),
        ("loop1", "source_profile loop (loop1 -> loop2 -> loop1)"),
        ("dur", "duration_seconds = 1h, not a number"),
    ] {
        let e = creds_with(
            Some(profile),
            &home,
            &[("AWS_ACCESS_KEY_ID", "A"), ("AWS_SECRET_ACCESS_KEY", "S")],
        )
        .unwrap_err();
        assert_eq!(e.kind, TierErrorKind::Credentials);
        assert!(e.message.contains(says), "{profile}: {e}");
    }
}
