//! Which endpoints secrets may be sent to: one rule for every request that carries key material
//! (SSE-C keys to S3; data keys to and from AWS KMS), checked by the layers that send them.
//!
//! The rule: `https`, or plain `http` to a loopback host only (`localhost`, `127.0.0.0/8`, `::1`),
//! which is where local test servers listen and where nobody on the network can read the request.

use crate::text::printable;

/// A refusal to send secrets to an endpoint (see [`check_secret_transport`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refusing to send {what} over {scheme} to {host}: use an https:// endpoint (plain http is allowed only to loopback: localhost, 127.0.0.0/8, ::1)")]
pub struct InsecureTransport {
    what: &'static str,
    scheme: String,
    host: String,
}

impl InsecureTransport {
    /// What would have been sent (`"SSE-C keys"`, …).
    pub fn what(&self) -> &'static str {
        self.what
    }

    /// The endpoint's scheme (`http`, …; `no scheme` for a URI without one).
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// The endpoint's host, escaped for display.
    pub fn host(&self) -> &str {
        &self.host
    }
}

/// Whether `uri` may carry `what` (a secret, named for the error message): `https`, or `http` to
/// a loopback host. Any other scheme, a URI without a scheme, and `http` to any other host
/// (including names that merely start like a loopback address) are refused.
///
/// ```
/// use s3crypt_core::transport::check_secret_transport;
/// assert!(check_secret_transport("https://kms.us-east-1.amazonaws.com/", "data keys").is_ok());
/// assert!(check_secret_transport("http://127.0.0.1:4566/", "data keys").is_ok());
/// let e = check_secret_transport("http://kms.example.com/", "data keys").unwrap_err();
/// assert!(e.to_string().starts_with("refusing to send data keys over http to kms.example.com"));
/// ```
///
/// # Errors
/// [`InsecureTransport`] naming the scheme and host when the endpoint is refused.
pub fn check_secret_transport(uri: &str, what: &'static str) -> Result<(), InsecureTransport> {
    let refuse = |scheme: &str, host: &str| InsecureTransport {
        what,
        scheme: printable(scheme, 16),
        host: printable(host, 200),
    };
    let Some((scheme, rest)) = uri.split_once("://") else {
        return Err(refuse("no scheme", uri));
    };
    if scheme.eq_ignore_ascii_case("https") {
        return Ok(());
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if scheme.eq_ignore_ascii_case("http") && loopback {
        Ok(())
    } else {
        Err(refuse(scheme, host))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_to_loopback() {
        for ok in [
            "https://s3.amazonaws.com/b/k",
            "HTTPS://s3.amazonaws.com/",
            "http://127.0.0.1:9000/b",
            "http://localhost/b",
            "http://LOCALHOST:4566",
            "http://[::1]:80/b",
            "http://127.9.9.9/",
        ] {
            assert!(check_secret_transport(ok, "keys").is_ok(), "{ok}");
        }
        for bad in [
            "HTTP://s3.example.com/b",
            "ftp://127.0.0.1/",
            "nonsense",
            "http://s3.example.com/b",
            "http://10.0.0.1:9000/b",
            "http://user@evil.com/",
            "http://127.0.0.1@evil.com/",
            "http://127.0.0.1.evil.com/",
            "http://localhost.evil.com/",
            "http://[::ffff:10.0.0.1]/",
        ] {
            assert!(check_secret_transport(bad, "keys").is_err(), "{bad}");
        }
    }

    #[test]
    fn refusals_name_the_scheme_and_the_escaped_host() {
        let e =
            check_secret_transport("http://evil\u{1b}[2J.example:80/x", "SSE-C keys").unwrap_err();
        assert_eq!(e.scheme(), "http");
        assert_eq!(e.host(), "evil\\u{1b}[2J.example");
        let msg = e.to_string();
        assert!(
            msg.starts_with("refusing to send SSE-C keys over http to evil"),
            "{msg}"
        );
        assert!(!msg.chars().any(char::is_control), "{msg:?}");
        assert_eq!(
            check_secret_transport("nonsense", "keys")
                .unwrap_err()
                .scheme(),
            "no scheme"
        );
    }
}
