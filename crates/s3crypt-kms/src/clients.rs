//! KMS clients per region, all built from one configuration.
//!
//! A KMS key lives in one region and only that region's endpoint can use it, so a request naming a
//! key ARN goes to a client for the ARN's region (as the ESDK's multi-keyring helpers and the
//! Python SDK's master key providers do). Identifiers without a region (key ids, alias names) use
//! the configured client's region. Clients for other regions are copies of the configured client's
//! configuration (credentials, retries, timeouts, endpoint override, interceptors) with only the
//! region changed, built on first use and cached.

use std::collections::HashMap;
use std::sync::Mutex;

use aws_sdk_kms::config::Region;
use aws_sdk_kms::Client;
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

impl RegionalClients {
    pub(crate) fn new(client: &Client) -> Self {
        let conf = client.config().clone();
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
            return Err(Error::Keyring(format!(
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
