//! Arguments, environment and config file resolved once per command into what it runs with:
//! keys, the S3 and KMS clients, transfer settings. Commands never read the config file or the
//! environment themselves.

use std::sync::Arc;

use s3crypt::location::Binding;
use s3crypt::{Client, Encryption, Transfer};

use crate::args::{Endpoint, KeyArgs, S3Args, SseCArgs};
use crate::config::{self, ConfigFile, Keys};
use crate::exit::Failure;

/// An S3 client for `--profile`, `--region`, `--endpoint-url` and the standard AWS environment.
/// A custom endpoint (flag or `AWS_ENDPOINT_URL[_S3]`) implies path-style addressing, as local and
/// S3-compatible servers expect.
///
/// # Errors
/// [`Failure::Usage`] for a profile that does not exist, an endpoint without a scheme, or no
/// region (see [`crate::aws_env`]).
async fn s3_client(a: &Endpoint) -> Result<aws_sdk_s3::Client, Failure> {
    crate::aws_env::check_before_load(a.profile.as_deref(), a.endpoint_url.as_deref())?;
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(p) = &a.profile {
        loader = loader.profile_name(p);
    }
    if let Some(r) = &a.region {
        loader = loader.region(aws_config::Region::new(r.clone()));
    }
    if let Some(e) = &a.endpoint_url {
        loader = loader.endpoint_url(e);
    }
    let conf = loader.load().await;
    crate::aws_env::checked(&conf)?;
    let custom_endpoint = a.endpoint_url.is_some()
        || std::env::var_os("AWS_ENDPOINT_URL").is_some()
        || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
    Ok(aws_sdk_s3::Client::from_conf(s3crypt::s3_config(
        &conf,
        a.path_style || custom_endpoint,
    )))
}

/// A KMS client for `--profile` and `--region` (and the standard AWS environment). `--endpoint-url`
/// is S3's; KMS endpoints come from `AWS_ENDPOINT_URL_KMS` or `AWS_ENDPOINT_URL`. Keys named by ARN
/// are called in their own region whatever `--region` says. The keyrings and HMAC keys built on it
/// refuse a plain `http://` endpoint off loopback before sending anything (`s3crypt_kms`'s
/// transport guard): nothing to check here.
async fn kms_client(s3: &Endpoint) -> aws_sdk_kms::Client {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .retry_config(s3crypt_kms::recommended_retry_config())
        .timeout_config(s3crypt_kms::recommended_timeout_config());
    if let Some(p) = &s3.profile {
        loader = loader.profile_name(p);
    }
    if let Some(r) = &s3.region {
        loader = loader.region(aws_config::Region::new(r.clone()));
    }
    aws_sdk_kms::Client::new(&loader.load().await)
}

/// The transfer settings `--part-size` and `--concurrency` ask for.
fn transfer(a: &S3Args) -> Result<Transfer, Failure> {
    if a.concurrency == Some(0) {
        return Err(Failure::Usage("--concurrency must be at least 1".into()));
    }
    let defaults = Transfer::default();
    let part = usize::try_from(config::parse_size(&a.part_size)?)
        .map_err(|_| Failure::Usage("--part-size is too large".into()))?;
    if part > (5 << 30) - (16 << 20) {
        return Err(Failure::Usage(
            "--part-size must be below 5GiB (S3's largest part)".into(),
        ));
    }
    if part < 5 << 20 {
        return Err(Failure::Usage(
            "--part-size must be at least 5MiB (S3's smallest part)".into(),
        ));
    }
    Ok(defaults
        .with_part_size(part)
        .with_multipart_threshold(part)
        .with_concurrency(a.concurrency.unwrap_or(defaults.concurrency))
        .with_download_concurrency(a.concurrency.unwrap_or(defaults.download_concurrency)))
}

/// The location binding `--bind` asks for.
pub(crate) fn binding(s3: &S3Args) -> Result<Binding, Failure> {
    match s3.bind.as_str() {
        "key" => Ok(Binding::Key),
        "bucket" => Ok(Binding::Bucket),
        other => Err(Failure::Usage(format!(
            "--bind {other:?}: use key or bucket"
        ))),
    }
}

/// A client that only reads and deletes objects and metadata (`ls`, `rm`, `inspect`, `scan-ids`):
/// no keys are resolved and none are needed.
pub(crate) async fn metadata_client(endpoint: &Endpoint) -> Result<Client, Failure> {
    let keyring: Arc<dyn s3crypt_core::Keyring> =
        Arc::new(s3crypt_core::keyring::multi::MultiKeyring::default());
    Ok(Client::builder()
        .s3_client(s3_client(endpoint).await?)
        .keyring(keyring)
        .build()?)
}

/// Everything a command that encrypts or decrypts objects runs with, resolved once: the config
/// file read, the keys resolved (flags, then environment, then config file), one S3 client, one
/// KMS client shared by every KMS keyring and SSE-C HMAC key (only when some key is in KMS), the
/// transfer settings and the location binding. Usage errors come before any client is built.
pub(crate) struct S3Setup {
    /// The config file (for the suite and frame size of new objects).
    pub(crate) cfg: ConfigFile,
    /// The keys the command encrypts or decrypts with.
    pub(crate) keys: Keys,
    /// The location binding of new objects and the check on read.
    pub(crate) binding: Binding,
    s3: aws_sdk_s3::Client,
    kms: Option<aws_sdk_kms::Client>,
    transfer: Transfer,
    sse_c: Option<Arc<dyn s3crypt::sse_c::SseCSource>>,
}

impl S3Setup {
    /// Resolves `keys` (plus `extra`, keys the command adds, such as `rewrap --add-kms-key`) and
    /// the SSE-C key source when `--sse-c` is on.
    pub(crate) async fn resolve(
        s3: &S3Args,
        keys: &KeyArgs,
        sse_c: &SseCArgs,
        extra: Option<&Keys>,
    ) -> Result<Self, Failure> {
        let cfg = config::load_config()?;
        let sse_c_kms_keys = if sse_c.on() {
            config::resolve_sse_c_kms_keys(sse_c, keys, &cfg)
        } else {
            Vec::new()
        };
        let resolved = config::resolve_keys(keys, &cfg)?;
        let (transfer, binding) = (transfer(s3)?, binding(s3)?);
        let needs_kms =
            resolved.uses_kms() || extra.is_some_and(Keys::uses_kms) || !sse_c_kms_keys.is_empty();
        let kms = match needs_kms {
            true => Some(kms_client(&s3.endpoint).await),
            false => None,
        };
        let sse_c = match (sse_c.on(), &kms) {
            (false, _) => None,
            (true, Some(kms)) if !sse_c_kms_keys.is_empty() => Some(Arc::new(
                config::load_kms_sse_c(&sse_c_kms_keys, kms.clone())?,
            )
                as Arc<dyn s3crypt::sse_c::SseCSource>),
            (true, _) => Some(Arc::new(config::load_sse_c(&resolved.paths)?) as _),
        };
        Ok(Self {
            cfg,
            keys: resolved,
            binding,
            s3: s3_client(&s3.endpoint).await?,
            kms,
            transfer,
            sse_c,
        })
    }

    /// The command's keys in one keyring (see [`config::load_keys_with`]).
    pub(crate) fn keyring(&self) -> Result<s3crypt::keyring::MultiKeyring, Failure> {
        self.keyring_of(&self.keys)
    }

    /// Other keys (e.g. those `rewrap` adds) in one keyring, on the same KMS client.
    pub(crate) fn keyring_of(
        &self,
        keys: &Keys,
    ) -> Result<s3crypt::keyring::MultiKeyring, Failure> {
        config::load_keys_with(keys, self.kms.clone())
    }

    /// The client: `keyring` (the command's keys, possibly behind a data-key cache) with `enc`
    /// for new objects.
    pub(crate) fn client(
        &self,
        keyring: Arc<dyn s3crypt_core::Keyring>,
        enc: Encryption,
    ) -> Result<Client, Failure> {
        let mut b = Client::builder()
            .s3_client(self.s3.clone())
            .keyring(keyring)
            .transfer(self.transfer)
            .location_binding(self.binding)
            .encryption(enc);
        if let Some(source) = &self.sse_c {
            b = b.sse_c(Arc::clone(source));
        }
        Ok(b.build()?)
    }

    /// [`S3Setup::client`] with the command's own keys, for commands that only decrypt.
    pub(crate) fn decrypting_client(&self) -> Result<Client, Failure> {
        self.client(Arc::new(self.keyring()?), Encryption::default())
    }
}
