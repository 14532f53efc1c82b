//! A local KMS (moto) with keys, keyrings pointed at it, its request log, and message helpers.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kms::Client;
use base64::Engine as _;
use s3crypt_core::header::Header;
use s3crypt_core::keyring::multi::MultiKeyring;
use s3crypt_core::keyring::raw_aes::{RawAesKeyring, WrappingKey};
use s3crypt_core::pipeline::{self, PipelineOptions};
use s3crypt_core::{
    DecryptOptions, Decryptor, EncryptOptions, Encryptor, Error, Keyring, ReadLimits,
};
use s3crypt_kms::{DiscoveryFilter, KmsKeyring};

use crate::servers::{self, Kind, Server};

/// The account moto puts every key in.
pub(crate) const ACCOUNT: &str = "123456789012";
/// The region of the keyrings' configured client.
pub(crate) const HOME: &str = "us-east-1";

/// A current-thread runtime for the test's own SDK calls (creating keys and aliases).
pub(crate) fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A KMS client for `endpoint` in `region`, with the crate's recommended retries and timeouts
/// (backoff shortened so that throttling tests stay quick).
pub(crate) fn client_for(endpoint: &str, region: &str) -> Client {
    Client::from_conf(
        aws_sdk_kms::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .region(Region::new(region.to_owned()))
            .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
            .retry_config(
                s3crypt_kms::recommended_retry_config()
                    .with_initial_backoff(Duration::from_millis(10)),
            )
            .timeout_config(s3crypt_kms::recommended_timeout_config())
            .build(),
    )
}

/// One request moto received.
#[derive(Debug)]
pub(crate) struct Call {
    /// The operation, e.g. `Decrypt` (from `x-amz-target: TrentService.Decrypt`).
    pub op: String,
    /// The region the request was signed for (SigV4 credential scope).
    pub region: String,
    pub body: serde_json::Value,
}

pub(crate) struct Kms {
    pub server: Server,
}

impl Kms {
    /// Starts moto, or `None` (test skipped) when `S3CRYPT_TEST_MOTO` is unset outside CI.
    pub(crate) fn start() -> Option<Self> {
        servers::start(Kind::Moto).map(|server| Self { server })
    }

    pub(crate) fn client(&self, region: &str) -> Client {
        client_for(&self.server.endpoint, region)
    }

    /// A new symmetric key in `region`; its ARN.
    pub(crate) fn create_key(&self, region: &str) -> String {
        let out = rt()
            .block_on(self.client(region).create_key().send())
            .unwrap();
        out.key_metadata.unwrap().arn.unwrap()
    }

    /// A new HMAC_256 key (usage GENERATE_VERIFY_MAC) in `region`; its ARN.
    pub(crate) fn create_hmac_key(&self, region: &str) -> String {
        use aws_sdk_kms::types::{KeySpec, KeyUsageType};
        let out = rt()
            .block_on(
                self.client(region)
                    .create_key()
                    .key_spec(KeySpec::Hmac256)
                    .key_usage(KeyUsageType::GenerateVerifyMac)
                    .send(),
            )
            .unwrap();
        out.key_metadata.unwrap().arn.unwrap()
    }

    /// `alias/NAME` pointing at `key_arn`.
    pub(crate) fn create_alias(&self, region: &str, alias: &str, key_arn: &str) {
        rt().block_on(
            self.client(region)
                .create_alias()
                .alias_name(alias)
                .target_key_id(key_arn)
                .send(),
        )
        .unwrap();
    }

    /// A strict keyring for `key_id`, configured with a client for the home region.
    pub(crate) fn strict(&self, key_id: &str) -> KmsKeyring {
        KmsKeyring::new(self.client(HOME), key_id).unwrap()
    }

    pub(crate) fn discovery(&self, filter: Option<DiscoveryFilter>) -> KmsKeyring {
        KmsKeyring::discovery(self.client(HOME), filter)
    }

    /// Starts (or restarts) moto's request log.
    pub(crate) fn record(&self) {
        if let Some(path) = &self.server.recording {
            let _ = std::fs::remove_file(path);
        }
        self.server.start_recording();
    }

    /// Every KMS request since [`Kms::record`].
    pub(crate) fn calls(&self) -> Vec<Call> {
        let path = self.server.recording.as_ref().unwrap();
        let text = std::fs::read_to_string(path).unwrap_or_default();
        text.lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                let header = |name: &str| {
                    v["headers"]
                        .as_object()
                        .unwrap()
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(name))
                        .and_then(|(_, v)| v.as_str())
                        .unwrap_or_default()
                        .to_owned()
                };
                let target = header("x-amz-target");
                let op = target.rsplit('.').next().unwrap_or_default().to_owned();
                // "AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/kms/aws4_request, ..."
                let auth = header("authorization");
                let region = auth
                    .split("Credential=")
                    .nth(1)
                    .and_then(|c| c.split('/').nth(2))
                    .unwrap_or_default()
                    .to_owned();
                let raw = v["body"].as_str().unwrap_or_default();
                let body = if v["body_encoded"].as_bool().unwrap_or(false) {
                    base64::engine::general_purpose::STANDARD
                        .decode(raw)
                        .unwrap()
                } else {
                    raw.as_bytes().to_vec()
                };
                let body = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
                Call { op, region, body }
            })
            .collect()
    }

    /// The recorded calls of operation `op`.
    pub(crate) fn calls_to(&self, op: &str) -> Vec<Call> {
        self.calls().into_iter().filter(|c| c.op == op).collect()
    }
}

/// The test-vector plaintext: byte i = (i * 7 + 3) mod 251.
pub(crate) fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| ((i * 7 + 3) % 251) as u8).collect()
}

/// A local raw AES keyring.
pub(crate) fn raw(byte: u8) -> RawAesKeyring {
    RawAesKeyring::new("s3crypt-test", "local", WrappingKey::from_bytes([byte; 32])).unwrap()
}

pub(crate) fn multi(children: Vec<Box<dyn Keyring>>) -> Arc<dyn Keyring> {
    Arc::new(MultiKeyring::new(children))
}

pub(crate) fn opts_with_context(pairs: &[(&str, &str)]) -> EncryptOptions {
    let mut o = EncryptOptions::default();
    for (k, v) in pairs {
        o.context.insert(*k, *v).unwrap();
    }
    o
}

/// Encrypts with the push API.
pub(crate) fn encrypt(k: &dyn Keyring, opts: &EncryptOptions, pt: &[u8]) -> Vec<u8> {
    try_encrypt(k, opts, pt).unwrap()
}

pub(crate) fn try_encrypt(
    k: &dyn Keyring,
    opts: &EncryptOptions,
    pt: &[u8],
) -> Result<Vec<u8>, Error> {
    let mut enc = Encryptor::new(k, opts)?;
    let mut out = Vec::new();
    enc.update(pt, &mut out)?;
    enc.finish(&mut out)?;
    Ok(out)
}

/// Encrypts with the parallel pipeline.
pub(crate) fn encrypt_pipeline(k: &dyn Keyring, opts: &EncryptOptions, pt: &[u8]) -> Vec<u8> {
    let enc = Encryptor::new(k, opts).unwrap();
    let mut out = Vec::new();
    let popts = PipelineOptions {
        threads: 2,
        batch_bytes: 1 << 16,
    };
    pipeline::encrypt(enc, pt, &mut out, &popts, |_| {}).unwrap();
    out
}

/// Decrypts with the push API.
pub(crate) fn decrypt(
    k: Arc<dyn Keyring>,
    opts: &DecryptOptions,
    ct: &[u8],
) -> Result<Vec<u8>, Error> {
    let mut dec = Decryptor::new(k, opts.clone());
    let mut out = Vec::new();
    dec.update(ct, &mut out)?;
    dec.finish(&mut out)?;
    Ok(out)
}

/// Decrypts with the parallel pipeline.
pub(crate) fn decrypt_pipeline(k: &dyn Keyring, ct: &[u8]) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    let popts = PipelineOptions {
        threads: 2,
        batch_bytes: 1 << 16,
    };
    pipeline::decrypt(k, &DecryptOptions::default(), ct, &mut out, &popts, |_| {})?;
    Ok(out)
}

/// The header of a message (unauthenticated; for looking at its EDKs).
pub(crate) fn header(ct: &[u8]) -> Header {
    Header::read(ct, &ReadLimits::default()).unwrap().header
}

/// The provider infos of a message's `aws-kms` EDKs, as strings.
pub(crate) fn kms_edks(ct: &[u8]) -> Vec<String> {
    header(ct)
        .encrypted_data_keys
        .iter()
        .filter(|e| e.provider_id == "aws-kms")
        .map(|e| String::from_utf8(e.provider_info.clone()).unwrap())
        .collect()
}
