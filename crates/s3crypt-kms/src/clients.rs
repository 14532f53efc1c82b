//! KMS clients per region, all built from one configuration.
//!
//! A KMS key lives in one region and only that region's endpoint can use it, so a request naming a
//! key ARN goes to a client for the ARN's region (as the ESDK's multi-keyring helpers and the
//! Python SDK's master key providers do). Identifiers without a region (key ids, alias names) use
//! the configured client's region. Clients for other regions are copies of the configured client's
//! configuration (credentials, retries, timeouts, endpoint override, interceptors) with only the
//! region changed, built on first use and cached.
//!
//! Every one of them carries the [`TransportGuard`]: data keys travel in `GenerateDataKey` and
//! `Decrypt` responses and in `Encrypt` requests (and SSE-C keys in `GenerateMac` responses), so
//! a request to a plain `http://` endpoint other than loopback is refused before it is sent, by
//! the same rule as SSE-C requests to S3 ([`s3crypt_core::transport::check_secret_transport`]).

use std::collections::HashMap;
use std::sync::Mutex;

use aws_sdk_kms::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_kms::config::{ConfigBag, Intercept, Region, RuntimeComponents};
use aws_sdk_kms::error::BoxError;
use aws_sdk_kms::Client;
use s3crypt_core::transport::check_secret_transport;
use s3crypt_core::Error;

use crate::arn::is_plausible_region;
use crate::error::printable;

/// At most this many extra regions are cached; regions come from message headers, so a stream of
/// messages naming made-up regions must not grow the cache without bound.
const MAX_CACHED_REGIONS: usize = 32;

pub(crate) struct RegionalClients {
    /// The configured client, rebuilt from its configuration so that it has its own connection
    /// pool (see `runtime.rs`).
    home: Client,
    home_region: Option<String>,
    others: Mutex<HashMap<String, Client>>,
}

/// What KMS requests carry, for the transport guard's refusal.
const KMS_SECRETS: &str = "AWS KMS requests (they carry data keys)";

/// An SDK interceptor that refuses, just before transmission, a KMS request over plain HTTP to a
/// host other than loopback (whatever endpoint resolution produced: `AWS_ENDPOINT_URL_KMS`, a
/// profile, a custom resolver). The refusal is an [`s3crypt_core::transport::InsecureTransport`],
/// which `kms_failure` reports as it is (not retryable).
#[derive(Debug)]
pub(crate) struct TransportGuard;

impl Intercept for TransportGuard {
    fn name(&self) -> &'static str {
        "s3crypt-kms-transport-guard"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        check_secret_transport(context.request().uri(), KMS_SECRETS)?;
        Ok(())
    }
}

impl RegionalClients {
    pub(crate) fn new(client: &Client) -> Self {
        let conf = client
            .config()
            .to_builder()
            .interceptor(TransportGuard)
            .build();
        let home_region = conf.region().map(|r| r.as_ref().to_owned());
        Self {
            home: Client::from_conf(conf),
            home_region,
            others: Mutex::new(HashMap::new()),
        }
    }

    /// The region of the configured client, if it has one.
    pub(crate) fn home_region(&self) -> Option<&str> {
        self.home_region.as_deref()
    }

    /// The client for `region` (`None`: the configured client).
    ///
    /// # Errors
    /// [`Error::Keyring`] if `region` is not a plausible region name.
    pub(crate) fn get(&self, region: Option<&str>) -> Result<Client, Error> {
        let Some(region) = region else {
            return Ok(self.home.clone());
        };
        if Some(region) == self.home_region.as_deref() {
            return Ok(self.home.clone());
        }
        if !is_plausible_region(region) {
            return Err(Error::keyring(format!(
                "\"{}\" is not an AWS region name",
                printable(region, 64)
            )));
        }
        // A poisoned lock only means another thread panicked while inserting; the map is intact.
        let mut others = self
            .others
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(c) = others.get(region) {
            return Ok(c.clone());
        }
        let client = Client::from_conf(
            self.home
                .config()
                .to_builder()
                .region(Region::new(region.to_owned()))
                .build(),
        );
        if others.len() < MAX_CACHED_REGIONS {
            others.insert(region.to_owned(), client.clone());
        }
        Ok(client)
    }

    /// Regions with a cached client besides the home region (for `Debug`).
    pub(crate) fn cached_regions(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .others
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .keys()
            .cloned()
            .collect();
        v.sort();
        v
    }
}
