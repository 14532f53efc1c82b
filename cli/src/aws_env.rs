//! The AWS side of the configuration, checked before any request so that a mistake is reported
//! as what it is (a profile that does not exist, an endpoint without a scheme, no region) rather
//! than as whatever the first request runs into; and what S3's and the SDK's errors mean, in
//! one line with a hint.

use std::path::PathBuf;
use std::sync::OnceLock;

use crate::exit::Failure;

/// Where requests go, for messages ("cannot connect to http://127.0.0.1:9000").
static ENDPOINT: OnceLock<String> = OnceLock::new();

/// The endpoint requests go to, as set by [`checked`] (`None` before any client was built).
pub(crate) fn endpoint() -> Option<&'static str> {
    ENDPOINT.get().map(String::as_str)
}

/// `$HOME/.aws/NAME`, or the file the environment variable names.
fn aws_file(var: &str, name: &str) -> Option<PathBuf> {
    match std::env::var_os(var) {
        Some(p) => Some(PathBuf::from(p)),
        None => std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".aws").join(name)),
    }
}

/// Profile names defined in an AWS config file (`[default]`, `[profile NAME]`) or credentials
/// file (`[NAME]`).
fn profiles_in(text: &str, config_file: bool) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            let inner = l.strip_prefix('[')?.strip_suffix(']')?.trim();
            match (config_file, inner.strip_prefix("profile")) {
                (_, _) if inner == "default" => Some("default".to_owned()),
                (true, Some(rest)) if rest.starts_with(char::is_whitespace) => {
                    Some(rest.trim().to_owned())
                }
                (true, _) => None,
                (false, _) => Some(inner.to_owned()),
            }
        })
        .collect()
}

/// Fails if a profile was asked for (`--profile` or `AWS_PROFILE`) that neither AWS file
/// defines: the SDK would go on without it and fail later with "A region must be set".
///
/// # Errors
/// [`Failure::Usage`] naming the files and the profiles they do define.
fn check_profile(flag: Option<&str>) -> Result<(), Failure> {
    let env = std::env::var("AWS_PROFILE").ok();
    let Some(name) = flag.or(env.as_deref()).filter(|n| !n.is_empty()) else {
        return Ok(());
    };
    let mut known = Vec::new();
    let mut files = Vec::new();
    for (var, file, config) in [
        ("AWS_CONFIG_FILE", "config", true),
        ("AWS_SHARED_CREDENTIALS_FILE", "credentials", false),
    ] {
        let Some(path) = aws_file(var, file) else {
            continue;
        };
        if let Ok(text) = std::fs::read_to_string(&path) {
            known.extend(profiles_in(&text, config));
        }
        files.push(path.display().to_string());
    }
    if known.iter().any(|k| k == name) {
        return Ok(());
    }
    known.sort();
    known.dedup();
    let source = if flag.is_some() {
        "--profile"
    } else {
        "AWS_PROFILE"
    };
    let have = match known.is_empty() {
        true => "no profiles are defined there".to_owned(),
        false => format!("profiles there: {}", known.join(", ")),
    };
    Err(Failure::Usage(format!(
        "the AWS profile {name:?} ({source}) is not defined in {} ({have})",
        files.join(" or ")
    )))
}

/// Fails on an endpoint without `http://` or `https://` (the SDK's "not a valid URI").
///
/// # Errors
/// [`Failure::Usage`] saying what to add.
pub(crate) fn check_endpoint(url: &str, source: &str) -> Result<(), Failure> {
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return Ok(());
    }
    Err(Failure::Usage(format!(
        "the S3 endpoint {url:?} ({source}) has no scheme: write http://{url} (a local server) \
         or https://{url}"
    )))
}

/// Checks what can be checked before loading the AWS configuration.
///
/// # Errors
/// [`Failure::Usage`] for an unknown profile or an endpoint without a scheme.
pub(crate) fn check_before_load(
    profile: Option<&str>,
    endpoint: Option<&str>,
) -> Result<(), Failure> {
    check_profile(profile)?;
    if let Some(e) = endpoint {
        check_endpoint(e, "--endpoint-url")?;
    }
    for var in ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"] {
        if let Ok(e) = std::env::var(var) {
            if !e.is_empty() {
                check_endpoint(&e, var)?;
            }
        }
    }
    Ok(())
}

/// Checks the loaded configuration (a region is set; an endpoint from the profile has a scheme)
/// and records the endpoint for messages.
///
/// # Errors
/// [`Failure::Usage`] without a region, or for an endpoint without a scheme.
pub(crate) fn checked(conf: &aws_config::SdkConfig) -> Result<(), Failure> {
    let Some(region) = conf.region() else {
        return Err(Failure::Usage(
            "no AWS region: pass --region, set AWS_REGION, or set region in the profile".into(),
        ));
    };
    let endpoint = match conf.endpoint_url() {
        Some(e) => {
            check_endpoint(e, "the profile's endpoint_url")?;
            e.to_owned()
        }
        None => format!("AWS S3 in {region}"),
    };
    let _ = ENDPOINT.set(endpoint);
    Ok(())
}

/// What an S3-layer error means, for someone at a terminal: exit code, one line, and a hint.
pub(crate) fn explain(e: &s3crypt::Error) -> Option<(u8, String, Option<String>)> {
    let chain = || {
        let mut v: Vec<&(dyn std::error::Error + 'static)> = Vec::new();
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(c) = cur {
            v.push(c);
            cur = c.source();
        }
        v
    };
    let at = endpoint().unwrap_or("S3");
    match e {
        s3crypt::Error::NoSuchBucket { bucket } => Some((
            10,
            format!("bucket {bucket} does not exist (at {at})"),
            Some("check the name and the endpoint or region".into()),
        )),
        s3crypt::Error::Transport { operation, .. } => {
            use aws_credential_types::provider::error::CredentialsError;
            for c in chain() {
                if let Some(CredentialsError::CredentialsNotLoaded(_)) =
                    c.downcast_ref::<CredentialsError>()
                {
                    return Some((
                        2,
                        "no AWS credentials found".into(),
                        Some(
                            "set AWS_PROFILE to a profile in ~/.aws/config (or pass --profile), \
                             or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
                                .into(),
                        ),
                    ));
                }
                if let Some(io) = c.downcast_ref::<std::io::Error>() {
                    let what = match io.kind() {
                        std::io::ErrorKind::ConnectionRefused => "connection refused",
                        std::io::ErrorKind::ConnectionReset => "connection reset",
                        std::io::ErrorKind::TimedOut => "timed out",
                        _ => continue,
                    };
                    return Some((
                        11,
                        format!("cannot reach {at} ({what}, S3 {operation})"),
                        Some(
                            "is the server running and the endpoint right? (--endpoint-url, \
                             AWS_ENDPOINT_URL)"
                                .into(),
                        ),
                    ));
                }
            }
            None
        }
        s3crypt::Error::Service {
            operation,
            status: Some(403),
            code,
            ..
        } => {
            let (line, hint) = match code.as_deref() {
                Some("SignatureDoesNotMatch") => (
                    "the secret access key does not match the access key id (SignatureDoesNotMatch)",
                    "check AWS_SECRET_ACCESS_KEY or the profile's aws_secret_access_key",
                ),
                Some("InvalidAccessKeyId") => (
                    "the access key id is not known to the service (InvalidAccessKeyId)",
                    "check AWS_ACCESS_KEY_ID or the profile's aws_access_key_id",
                ),
                Some("ExpiredToken") | Some("TokenRefreshRequired") => (
                    "the session credentials expired",
                    "get new ones (aws sso login, or your credential process)",
                ),
                _ => (
                    "access denied",
                    "the credentials in use are not allowed this request: check the IAM and \
                     bucket policies (SECURITY.md lists what each command needs)",
                ),
            };
            // S3's own words name the principal, the action and the resource.
            let said = e
                .service_message()
                .filter(|m| !m.is_empty())
                .map(|m| format!(": {m}"))
                .unwrap_or_default();
            Some((
                11,
                format!("S3 {operation}: {line} (at {at}){said}"),
                Some(hint.into()),
            ))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_sections_of_both_files() {
        let config = "[default]\nregion = x\n[profile dev]\n[ profile  ops ]\n[sso-session s]\n[services y]\n[profileX]\n";
        assert_eq!(profiles_in(config, true), ["default", "dev", "ops"]);
        let creds = "[default]\n[dev]\n# [commented]\n";
        assert_eq!(profiles_in(creds, false), ["default", "dev"]);
    }

    #[test]
    fn endpoints_need_a_scheme() {
        assert!(check_endpoint("http://127.0.0.1:9000", "x").is_ok());
        assert!(check_endpoint("HTTPS://s3.example", "x").is_ok());
        let Err(Failure::Usage(m)) = check_endpoint("127.0.0.1:9000", "--endpoint-url") else {
            panic!("accepted an endpoint without a scheme");
        };
        assert!(m.contains("http://127.0.0.1:9000"), "{m}");
    }
}
