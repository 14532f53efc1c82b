//! Loading a [`Client`] from the standard AWS environment, in the AWS SDK's own style.

use std::sync::Arc;
use std::time::Duration;

use s3crypt_core::keyring::caching::{CacheLimits, CachingKeyring};
use s3crypt_core::keyring::multi::MultiKeyring;
use s3crypt_core::Keyring;

use crate::client::{Client, ClientBuilder};
use crate::error::{Error, Result};
use crate::settings::{Encryption, Transfer};

/// Loads a [`Client`] from the standard AWS environment, in the AWS SDK's own style:
///
/// ```no_run
/// # async fn demo() -> Result<(), s3crypt::Error> {
/// let keyring = s3crypt::LocalKeyring::load("team.keyring".as_ref())?;
/// let client = s3crypt::from_env().keyring(keyring).load().await?;
/// # Ok(()) }
/// ```
///
/// Credentials, region and endpoint come from the environment (`AWS_PROFILE`, `AWS_REGION`,
/// `AWS_ENDPOINT_URL`, `~/.aws/config`, SSO, instance roles) unless set here; S3-compatible
/// endpoints get path-style addressing. See [`Loader`].
pub fn from_env() -> Loader {
    Loader::default()
}

/// A keyring, or a KMS key to make one from once the AWS configuration is loaded.
enum Key {
    Keyring(Arc<dyn Keyring>),
    #[cfg(feature = "kms")]
    Kms(String),
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Keyring(k) => k.fmt(f),
            #[cfg(feature = "kms")]
            Self::Kms(id) => write!(f, "Kms({id})"),
        }
    }
}

/// Configures and loads a [`Client`] (see [`from_env`]).
#[derive(Debug, Default)]
#[must_use = "a loader does nothing until `load` is awaited"]
pub struct Loader {
    sdk_config: Option<aws_config::SdkConfig>,
    profile: Option<String>,
    region: Option<String>,
    endpoint_url: Option<String>,
    path_style: Option<bool>,
    connect_timeout: Option<Duration>,
    read_timeout: Option<Duration>,
    operation_timeout: Option<Duration>,
    attempt_timeout: Option<Duration>,
    max_attempts: Option<u32>,
    /// Keyrings and KMS keys, in the order they were given (the first generates data keys).
    keys: Vec<Key>,
    cache: Option<CacheLimits>,
    client: ClientBuilder,
}

impl Loader {
    /// A keyring (who can decrypt). Several calls (and [`Loader::kms_key`]) combine into a
    /// [`crate::MultiKeyring`]: the first generates each data key, every one wraps it, any one
    /// may decrypt.
    pub fn keyring(mut self, keyring: impl Keyring + 'static) -> Self {
        self.keys.push(Key::Keyring(Arc::new(keyring)));
        self
    }

    /// An AWS KMS key (key ARN, key id, alias name or alias ARN) to wrap data keys with, through
    /// a KMS client loaded from the same environment (profile, region, credentials). A key ARN is
    /// needed to decrypt (a strict keyring only uses the key ARN it is given).
    #[cfg(feature = "kms")]
    pub fn kms_key(mut self, key_id: impl Into<String>) -> Self {
        self.keys.push(Key::Kms(key_id.into()));
        self
    }

    /// Caches data keys ([`crate::CachingKeyring`] around the keyrings): fewer key-service calls
    /// for services that write many objects, each data key used within `limits`.
    ///
    /// A cached data key serves only messages with the same encryption context, so caching needs
    /// [`crate::location::Binding::Bucket`] (set with [`Loader::location_binding`]; read what it
    /// gives up): with the default binding every object's context names its own key and nothing
    /// would ever be reused, so [`Loader::load`] refuses that combination rather than cache
    /// silently nothing.
    pub fn data_key_cache(mut self, limits: CacheLimits) -> Self {
        self.cache = Some(limits);
        self
    }

    /// Transfer settings.
    pub fn transfer(mut self, t: Transfer) -> Self {
        self.client = self.client.transfer(t);
        self
    }

    /// Encryption settings for new objects.
    pub fn encryption(mut self, e: Encryption) -> Self {
        self.client = self.client.encryption(e);
        self
    }

    /// Location binding (see [`ClientBuilder::location_binding`]).
    pub fn location_binding(mut self, b: crate::location::Binding) -> Self {
        self.client = self.client.location_binding(b);
        self
    }

    /// Where SSE-C keys come from.
    pub fn sse_c(mut self, source: Arc<dyn crate::sse_c::SseCSource>) -> Self {
        self.client = self.client.sse_c(source);
        self
    }

    /// An AWS SDK configuration you loaded already (instead of loading one). The region, endpoint,
    /// path style, timeouts and attempts set here still apply on top of it; a profile does not
    /// (load it into the configuration).
    pub fn sdk_config(mut self, conf: aws_config::SdkConfig) -> Self {
        self.sdk_config = Some(conf);
        self
    }

    /// The named profile of `~/.aws/config` (default: `AWS_PROFILE`, else `default`).
    pub fn profile_name(mut self, name: impl Into<String>) -> Self {
        self.profile = Some(name.into());
        self
    }

    /// The region (default: `AWS_REGION`, the profile's).
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// An S3-compatible endpoint (default: `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`); implies
    /// path-style addressing unless [`Loader::force_path_style`] says otherwise.
    pub fn endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.endpoint_url = Some(url.into());
        self
    }

    /// Path-style (`https://host/bucket/key`) rather than virtual-hosted addressing (default:
    /// path style when an endpoint URL is set, here or in the environment).
    pub fn force_path_style(mut self, yes: bool) -> Self {
        self.path_style = Some(yes);
        self
    }

    /// How long to wait for a connection (SDK default 3.1 s).
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = Some(d);
        self
    }

    /// How long a request may wait for its response, its body's upload included (default
    /// [`DEFAULT_READ_TIMEOUT`]).
    pub fn read_timeout(mut self, d: Duration) -> Self {
        self.read_timeout = Some(d);
        self
    }

    /// The most one operation may take, retries included (default: none).
    pub fn operation_timeout(mut self, d: Duration) -> Self {
        self.operation_timeout = Some(d);
        self
    }

    /// The most one attempt may take (default: none).
    pub fn operation_attempt_timeout(mut self, d: Duration) -> Self {
        self.attempt_timeout = Some(d);
        self
    }

    /// Attempts per request, the first included (SDK standard retry mode; default
    /// `AWS_MAX_ATTEMPTS`, else 3).
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = Some(n);
        self
    }

    /// A KMS client from the same configuration: the keyring crate's recommended retries and
    /// timeouts, with this loader's region, attempts and timeouts on top.
    #[cfg(feature = "kms")]
    fn kms_client(&self, conf: &aws_config::SdkConfig) -> aws_sdk_kms::Client {
        let mut retry = s3crypt_kms::recommended_retry_config();
        if let Some(n) = self.max_attempts {
            retry = retry.with_max_attempts(n);
        }
        let mut t = s3crypt_kms::recommended_timeout_config().to_builder();
        if let Some(d) = self.connect_timeout {
            t.set_connect_timeout(Some(d));
        }
        if let Some(d) = self.read_timeout {
            t.set_read_timeout(Some(d));
        }
        if let Some(d) = self.operation_timeout {
            t.set_operation_timeout(Some(d));
        }
        if let Some(d) = self.attempt_timeout {
            t.set_operation_attempt_timeout(Some(d));
        }
        let mut kb = aws_sdk_kms::config::Builder::from(conf)
            .retry_config(retry)
            .timeout_config(t.build());
        if let Some(r) = &self.region {
            kb = kb.region(aws_config::Region::new(r.clone()));
        }
        aws_sdk_kms::Client::from_conf(kb.build())
    }

    /// Loads the AWS configuration and builds the client.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] without any keyring or KMS key, for a data-key cache without
    /// bucket binding, a profile with a given `sdk_config`, zero `max_attempts`, or settings
    /// [`ClientBuilder::build`] refuses; [`Error::Crypto`] for an invalid KMS key id or cache
    /// limits.
    pub async fn load(self) -> Result<Client> {
        if self.cache.is_some() && self.client.binding == crate::location::Binding::Key {
            return Err(Error::InvalidArgument(
                "data-key caching needs location_binding(Binding::Bucket): a cached data key only \
                 serves messages with the same encryption context, and binding each object's key \
                 makes every context unique (see s3crypt::location::Binding::Bucket for what \
                 bucket binding gives up)"
                    .into(),
            ));
        }
        if self.sdk_config.is_some() && self.profile.is_some() {
            return Err(Error::InvalidArgument(
                "profile_name does not apply to a given sdk_config: load the profile into it"
                    .into(),
            ));
        }
        if self.max_attempts == Some(0) {
            return Err(Error::InvalidArgument(
                "max_attempts must be at least 1".into(),
            ));
        }
        let loaded_here = self.sdk_config.is_none();
        let conf = match self.sdk_config.clone() {
            Some(c) => c,
            None => {
                let mut l = aws_config::defaults(aws_config::BehaviorVersion::latest());
                if let Some(p) = &self.profile {
                    l = l.profile_name(p);
                }
                if let Some(r) = &self.region {
                    l = l.region(aws_config::Region::new(r.clone()));
                }
                l.load().await
            }
        };
        // An S3-compatible endpoint: given here, in the configuration, or (for a configuration
        // loaded here) in the S3-specific environment variable the S3 config builder reads.
        let ignore_env = std::env::var("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")
            .is_ok_and(|v| v.eq_ignore_ascii_case("true"));
        let endpoint_env = conf.endpoint_url().is_some()
            || (loaded_here
                && !ignore_env
                && (std::env::var_os("AWS_ENDPOINT_URL").is_some()
                    || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some()));
        let path_style = self
            .path_style
            .unwrap_or(self.endpoint_url.is_some() || endpoint_env);
        let mut b = aws_sdk_s3::config::Builder::from(&conf).force_path_style(path_style);
        if let Some(r) = &self.region {
            b = b.region(aws_config::Region::new(r.clone()));
        }
        if let Some(e) = &self.endpoint_url {
            b = b.endpoint_url(e);
        }
        if let Some(n) = self.max_attempts {
            // The configured retry mode and backoff, with this many attempts.
            let retry = conf
                .retry_config()
                .cloned()
                .unwrap_or_else(aws_config::retry::RetryConfig::standard)
                .with_max_attempts(n);
            b = b.retry_config(retry);
        }
        let mut t = conf
            .timeout_config()
            .cloned()
            .map(|t| t.to_builder())
            .unwrap_or_default();
        if let Some(d) = self.connect_timeout {
            t.set_connect_timeout(Some(d));
        }
        if let Some(d) = self.read_timeout.or(conf
            .timeout_config()
            .and_then(|t| t.read_timeout())
            .or(Some(DEFAULT_READ_TIMEOUT)))
        {
            t.set_read_timeout(Some(d));
        }
        if let Some(d) = self.operation_timeout {
            t.set_operation_timeout(Some(d));
        }
        if let Some(d) = self.attempt_timeout {
            t.set_operation_attempt_timeout(Some(d));
        }
        b = b.timeout_config(t.build());
        let s3 = aws_sdk_s3::Client::from_conf(b.build());

        #[cfg(feature = "kms")]
        let kms = self
            .keys
            .iter()
            .any(|k| matches!(k, Key::Kms(_)))
            .then(|| self.kms_client(&conf));
        let mut keyrings: Vec<Arc<dyn Keyring>> = Vec::with_capacity(self.keys.len());
        for k in self.keys {
            match k {
                Key::Keyring(k) => keyrings.push(k),
                #[cfg(feature = "kms")]
                Key::Kms(id) => {
                    let client = kms
                        .clone()
                        .ok_or_else(|| Error::Internal("no KMS client for a KMS key".into()))?;
                    keyrings.push(Arc::new(s3crypt_kms::KmsKeyring::new(client, id)?));
                }
            }
        }
        let keyring: Arc<dyn Keyring> = match keyrings.len() {
            0 => {
                return Err(Error::InvalidArgument(
                    "s3crypt::from_env() needs a keyring (.keyring) or a KMS key (.kms_key)".into(),
                ))
            }
            1 => keyrings.remove(0),
            _ => Arc::new(MultiKeyring::new(
                keyrings
                    .into_iter()
                    .map(|k| Box::new(k) as Box<dyn Keyring>)
                    .collect(),
            )),
        };
        let keyring: Arc<dyn Keyring> = match self.cache {
            Some(limits) => Arc::new(CachingKeyring::new(keyring, limits)?),
            None => keyring,
        };
        self.client.s3_client(s3).keyring(keyring).build()
    }
}

/// How long a request may wait for its response (the request body's upload included) when the
/// environment sets no read timeout: long enough for a 16 MiB part over a slow uplink, short
/// enough that a server which stops answering is retried rather than waited on forever.
pub const DEFAULT_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// The S3 configuration s3crypt uses for an SDK configuration: `path_style` addressing for
/// S3-compatible endpoints, and [`DEFAULT_READ_TIMEOUT`] unless a read timeout is configured.
/// Retries (standard mode, `AWS_MAX_ATTEMPTS`) and stalled-stream protection are the SDK's.
///
/// [`from_env`] applies it; this is for callers that build their own `aws_sdk_s3::Client` from
/// a configuration and want the same behaviour.
pub fn s3_config(conf: &aws_config::SdkConfig, path_style: bool) -> aws_sdk_s3::Config {
    let mut b = aws_sdk_s3::config::Builder::from(conf).force_path_style(path_style);
    let timeouts = conf.timeout_config().cloned();
    if timeouts.as_ref().and_then(|t| t.read_timeout()).is_none() {
        let mut t = timeouts.map(|t| t.to_builder()).unwrap_or_default();
        t.set_read_timeout(Some(DEFAULT_READ_TIMEOUT));
        b = b.timeout_config(t.build());
    }
    b.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf() -> aws_config::SdkConfig {
        aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .build()
    }

    fn raw(name: &str) -> crate::keyring::RawAesKeyring {
        crate::keyring::RawAesKeyring::new("ns", name, crate::keyring::WrappingKey::generate())
            .unwrap()
    }

    #[tokio::test]
    async fn settings_that_would_be_ignored_are_refused() {
        let e = from_env().sdk_config(conf()).load().await.unwrap_err();
        assert!(e.to_string().contains("needs a keyring"), "{e}");
        let e = from_env()
            .sdk_config(conf())
            .profile_name("p")
            .keyring(raw("a"))
            .load()
            .await
            .unwrap_err();
        assert!(e.to_string().contains("profile_name"), "{e}");
        let e = from_env()
            .sdk_config(conf())
            .keyring(raw("a"))
            .max_attempts(0)
            .load()
            .await
            .unwrap_err();
        assert!(e.to_string().contains("max_attempts"), "{e}");
    }

    #[tokio::test]
    async fn keyrings_keep_their_order_and_settings_reach_the_s3_client() {
        let c = from_env()
            .sdk_config(conf())
            .keyring(raw("first"))
            .keyring(raw("second"))
            .endpoint_url("http://127.0.0.1:9")
            .max_attempts(7)
            .read_timeout(Duration::from_secs(5))
            .load()
            .await
            .unwrap();
        // The first keyring generates the data key; both wrap it, in order.
        let mut m = crate::keyring::EncryptionMaterials::new(
            crate::Suite::DEFAULT,
            crate::EncryptionContext::new(),
        );
        c.shared.keyring.on_encrypt(&mut m).unwrap();
        let names: Vec<String> = m
            .encrypted_data_keys()
            .iter()
            .map(|e| String::from_utf8_lossy(&e.provider_info).into_owned())
            .collect();
        assert!(
            names[0].starts_with("first") && names[1].starts_with("second"),
            "{names:?}"
        );
        let s3 = c.s3().config();
        assert_eq!(s3.retry_config().map(|r| r.max_attempts()), Some(7));
        assert_eq!(
            s3.timeout_config().and_then(|t| t.read_timeout()),
            Some(Duration::from_secs(5))
        );
    }
}
