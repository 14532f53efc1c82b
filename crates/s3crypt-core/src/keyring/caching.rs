//! The caching keyring: reuse one data key for many messages, so that a remote keyring (KMS) is
//! called once per batch of messages instead of once per message.
//!
//! This is s3crypt's counterpart of the ESDK's caching cryptographic materials manager (spec
//! `framework/caching-cmm.md`) with a local, in-memory cache (`framework/local-cryptographic-
//! materials-cache.md`), expressed as a keyring that wraps another one:
//!
//! ```
//! use std::{sync::Arc, time::Duration};
//! use s3crypt_core::keyring::caching::{CacheLimits, CachingKeyring};
//! use s3crypt_core::keyring::raw_aes::{RawAesKeyring, WrappingKey};
//! use s3crypt_core::{EncryptOptions, Encryptor};
//!
//! # fn main() -> Result<(), s3crypt_core::Error> {
//! let inner = Arc::new(RawAesKeyring::new("ns", "key", WrappingKey::generate())?);
//! let limits = CacheLimits::new(Duration::from_secs(300))
//!     .with_max_messages(1000)
//!     .with_max_bytes(1 << 30)
//!     .with_capacity(100);
//! let cached = CachingKeyring::new(inner, limits)?;
//! let record = b"one small record";
//! let mut options = EncryptOptions::default();
//! options.context.insert("stream", "ingest-7")?;
//! options.plaintext_length = Some(record.len() as u64); // no length, no caching
//! for _ in 0..3 {
//!     let mut message = Vec::new();
//!     let mut enc = Encryptor::new(&cached, &options)?;
//!     enc.update(record, &mut message)?;
//!     enc.finish(&mut message)?;
//! }
//! assert_eq!((cached.stats().misses, cached.stats().hits), (1, 2));
//! # Ok(()) }
//! ```
//!
//! # What is cached, and when
//!
//! On encryption, when this keyring is the first one to see the message (no data key, no
//! encrypted data key yet), the suite is unsigned and the message's plaintext length is declared
//! ([`crate::EncryptOptions::plaintext_length`], an upper bound the encryptor and the pipelines
//! enforce, so the byte counts below cannot be exceeded by feeding more), the cache is looked up
//! under an identifier computed as in the spec's appendix A ("encryption materials, with
//! algorithm suite"):
//!
//! ```text
//! id = SHA-512( SHA-512(partition name) || 0x01 || suite id (u16) || SHA-512(serialized context) )
//! ```
//!
//! where the context is the message's full encryption context in its header serialization. An
//! entry holds a copy of the data key (wiped when the entry is dropped), the encrypted data keys
//! the inner keyring produced, its creation time and how many messages and plaintext bytes used
//! it. It serves a message only if its age is below [`CacheLimits::max_age`], one more message
//! stays within [`CacheLimits::max_messages`] and this message's declared length stays within
//! [`CacheLimits::max_bytes`]; an entry that fails any of these is evicted, never used, and the
//! inner keyring makes a fresh data key. On a miss the inner keyring is called with
//! [`CacheLimits::max_bytes`] as the plaintext length (as the spec requires, so that whatever it
//! produces is valid for every message the entry may serve) and the result is stored with this
//! first use already counted. Entries are also evicted when they are used up, when they expire
//! (checked on every lookup, oldest first) and, least recently used first, when
//! [`CacheLimits::capacity`] entries are stored.
//!
//! The cache is **bypassed** (the inner keyring is called for the message, nothing is stored)
//! when:
//!
//! * the materials already hold a data key or encrypted data keys: this keyring is not the first
//!   of a multi-keyring, so it can only wrap someone else's key, which it does by delegating;
//! * the plaintext length is unknown (as the ESDK does: without it the byte limit cannot be
//!   kept), or it alone exceeds [`CacheLimits::max_bytes`];
//! * the suite is signed (`0x0578`): each message's context holds its own fresh signing public key,
//!   so no two messages have the same identifier and an entry could never be used again.
//!
//! Every message still has its own content key. [`crate::Encryptor::new`] draws a fresh random
//! 32-byte message id for each message and derives the message's content key and key commitment
//! from the data key *and* that id (HKDF-SHA512, salt = message id), so messages sharing a cached
//! data key never share a content key or an AES-GCM (key, nonce) pair.
//!
//! Decryption is **not cached**: [`Keyring::on_decrypt`] always calls the inner keyring.
//!
//! # Trade-offs: read before enabling
//!
//! * **Blast radius.** A cached data key protects up to [`CacheLimits::max_messages`] messages.
//!   Whoever obtains that one data key (from this process's memory, or by having the inner key
//!   unwrap one of those messages' encrypted data keys) can decrypt all of them, not just one.
//! * **Audit.** With KMS, the audit log (CloudTrail) no longer shows one `GenerateDataKey` per
//!   object, only one per cache miss; per-object attribution of key use is lost.
//! * **Revocation lags.** When access to the wrapping key is revoked (a KMS grant retired, a key
//!   policy changed, a key disabled), this keyring keeps encrypting with cached entries until they
//!   expire or are used up: up to [`CacheLimits::max_age`] after the revocation. Readers are not
//!   affected (decryption is not cached). [`CachingKeyring::clear`] drops every entry at once.
//! * **Memory.** Up to [`CacheLimits::capacity`] data keys stay in this process's memory (wiped on
//!   eviction and drop) instead of one at a time.
//! * **Entries never cross encryption contexts** (nor suites). If the caller puts anything unique
//!   per message into the context, the cache cannot hit: every message is a miss, calls the
//!   inner keyring as without the cache, and only adds hashing and bookkeeping. **s3crypt's S3
//!   layer binds the bucket and object key into every object's context (`s3crypt:bucket`,
//!   `s3crypt:key`) by default, so for S3 objects this cache only helps with bucket-only binding
//!   (`s3crypt::location::Binding::Bucket`, which gives up protection against swaps within the
//!   bucket).** It pays off for many messages under one context, e.g. objects of one bucket with
//!   bucket binding, or records of one stream or tenant encrypted with this crate directly.
//!
//! # Concurrency
//!
//! The cache is behind a [`Mutex`] held only for lookups and insertions, never while the inner
//! keyring (possibly a network call) runs. Usage is counted under the lock, so the limits hold
//! across threads. Requests are coalesced per identifier: while one message asks the inner
//! keyring for a new data key, other messages with the same identifier wait for that key rather
//! than each making their own call (so a burst of N parallel uploads costs one key-service call,
//! not N). Different identifiers never wait for each other.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha512};

use super::{DataKey, DecryptionMaterials, EncryptionMaterials, Keyring};
use crate::context::EncryptionContext;
use crate::error::{Error, Result};
use crate::header::EncryptedDataKey;
use crate::suite::Suite;

/// The largest [`CacheLimits::max_messages`]: 2^32 messages per data key, the ESDK's default and
/// the bound under which random 256-bit message ids keep derived keys distinct with overwhelming
/// probability.
pub const MAX_MESSAGES_PER_KEY: u64 = 1 << 32;

/// The largest [`CacheLimits::max_bytes`]: 2^63 - 1, the spec's upper bound for the byte limit.
pub const MAX_BYTES_PER_KEY: u64 = i64::MAX as u64;

/// How long and how much one cached data key may be used, and how many are kept.
///
/// Start from [`CacheLimits::new`] and narrow with the `with_*` methods (the struct is
/// `#[non_exhaustive]`: limits added later will not break your code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheLimits {
    /// Time after which an entry is no longer used, counted from just before the inner keyring
    /// was asked for the key. Must be non-zero.
    pub max_age: Duration,
    /// Messages one data key may encrypt: 1 to [`MAX_MESSAGES_PER_KEY`]. With 1 nothing is ever
    /// reused (and nothing stored).
    pub max_messages: u64,
    /// Plaintext bytes one data key may encrypt, summed over the declared lengths of its
    /// messages: 1 to [`MAX_BYTES_PER_KEY`]. A message declared longer than this bypasses the
    /// cache.
    pub max_bytes: u64,
    /// Most entries kept (one per suite, context and partition); the least recently used is
    /// evicted to make room. Must be non-zero.
    pub capacity: usize,
}

impl CacheLimits {
    /// Entries used for at most `max_age`; otherwise the spec's widest limits
    /// ([`MAX_MESSAGES_PER_KEY`] messages, [`MAX_BYTES_PER_KEY`] bytes per data key) and 1,024
    /// entries. Narrow them to what your threat model allows.
    pub const fn new(max_age: Duration) -> Self {
        Self {
            max_age,
            max_messages: MAX_MESSAGES_PER_KEY,
            max_bytes: MAX_BYTES_PER_KEY,
            capacity: 1024,
        }
    }

    /// Messages one data key may encrypt.
    #[must_use]
    pub const fn with_max_messages(mut self, n: u64) -> Self {
        self.max_messages = n;
        self
    }

    /// Plaintext bytes one data key may encrypt.
    #[must_use]
    pub const fn with_max_bytes(mut self, n: u64) -> Self {
        self.max_bytes = n;
        self
    }

    /// Most entries kept.
    #[must_use]
    pub const fn with_capacity(mut self, n: usize) -> Self {
        self.capacity = n;
        self
    }

    /// Checks the limits.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `max_age` or `capacity` is zero, `max_messages` is not in
    /// 1..=[`MAX_MESSAGES_PER_KEY`], or `max_bytes` is not in 1..=[`MAX_BYTES_PER_KEY`].
    pub fn validate(&self) -> Result<()> {
        if self.max_age.is_zero() {
            return Err(Error::InvalidArgument(
                "cache max_age must be greater than zero".into(),
            ));
        }
        if !(1..=MAX_MESSAGES_PER_KEY).contains(&self.max_messages) {
            return Err(Error::InvalidArgument(format!(
                "cache max_messages must be between 1 and 2^32, not {}",
                self.max_messages
            )));
        }
        if !(1..=MAX_BYTES_PER_KEY).contains(&self.max_bytes) {
            return Err(Error::InvalidArgument(format!(
                "cache max_bytes must be between 1 and 2^63 - 1, not {}",
                self.max_bytes
            )));
        }
        if self.capacity == 0 {
            return Err(Error::InvalidArgument(
                "cache capacity must be at least 1 entry (use the inner keyring directly to cache nothing)"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// Counters since the keyring was created. Each [`Keyring::on_encrypt`] call counts as exactly one
/// of `hits`, `misses` or `bypassed`; `hits` is the number of inner keyring calls saved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Messages served from the cache (inner keyring not called).
    pub hits: u64,
    /// Messages that looked in the cache, found no usable entry and called the inner keyring.
    pub misses: u64,
    /// Messages that did not use the cache at all (not the first keyring, unknown length or
    /// longer than the byte limit, signed suite, or a context too large for the format).
    pub bypassed: u64,
    /// Entries removed: expired, used up, too full for a message, replaced, pushed out by the
    /// capacity, or cleared.
    pub evicted: u64,
}

/// A source of the current time; tests pass one they can advance.
pub type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

/// An encryption-side cache of data keys in front of another keyring; see the [module
/// documentation](self) for what is cached, the limits and the security trade-offs.
pub struct CachingKeyring {
    inner: Arc<dyn Keyring>,
    limits: CacheLimits,
    partition: String,
    /// SHA-512 of the partition name, the first input of every cache identifier.
    partition_hash: [u8; 64],
    clock: Clock,
    cache: Mutex<Cache>,
    /// Signalled when a data key for a context being filled (see [`Cache::filling`]) arrives.
    filled: Condvar,
    hits: AtomicU64,
    misses: AtomicU64,
    bypassed: AtomicU64,
    evicted: AtomicU64,
}

impl std::fmt::Debug for CachingKeyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the entries: they hold data keys.
        let entries = self.cache.try_lock().map(|c| c.entries.len()).ok();
        f.debug_struct("CachingKeyring")
            .field("inner", &self.inner)
            .field("limits", &self.limits)
            .field("partition", &self.partition)
            .field("entries", &entries)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl CachingKeyring {
    /// A cache in front of `inner` with `limits`, a partition name of its own (random) and the
    /// system's monotonic clock.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the limits are invalid (see [`CacheLimits::validate`]).
    pub fn new(inner: Arc<dyn Keyring>, limits: CacheLimits) -> Result<Self> {
        Self::with_clock(inner, limits, Arc::new(Instant::now))
    }

    /// As [`CachingKeyring::new`], reading the time from `clock` (which should never go back).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the limits are invalid (see [`CacheLimits::validate`]).
    pub fn with_clock(inner: Arc<dyn Keyring>, limits: CacheLimits, clock: Clock) -> Result<Self> {
        limits.validate()?;
        let mut random = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut random);
        let partition: String = random.iter().map(|b| format!("{b:02x}")).collect();
        Ok(Self {
            inner,
            limits,
            partition_hash: Sha512::digest(partition.as_bytes()).into(),
            partition,
            clock,
            cache: Mutex::new(Cache::default()),
            filled: Condvar::new(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            bypassed: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
        })
    }

    /// Names the cache partition (part of every cache identifier, as the ESDK's partition id).
    /// Each `CachingKeyring` has a cache of its own, so this only matters for reproducing the
    /// ESDK's identifiers; the default is a random name unique to this keyring. Entries stored
    /// before the call are dropped.
    #[must_use]
    pub fn with_partition(mut self, name: impl Into<String>) -> Self {
        self.partition = name.into();
        self.partition_hash = Sha512::digest(self.partition.as_bytes()).into();
        self.clear();
        self
    }

    /// The partition name.
    pub fn partition(&self) -> &str {
        &self.partition
    }

    /// The limits.
    pub fn limits(&self) -> &CacheLimits {
        &self.limits
    }

    /// The counters so far.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            bypassed: self.bypassed.load(Ordering::Relaxed),
            evicted: self.evicted.load(Ordering::Relaxed),
        }
    }

    /// Entries stored now (expired ones are removed at the next lookup).
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether no entry is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every entry (wiping their data keys), e.g. after a wrapping key was revoked; the next
    /// message of each context calls the inner keyring.
    pub fn clear(&self) {
        let n = self.lock().clear();
        self.evicted.fetch_add(n, Ordering::Relaxed);
    }

    fn lock(&self) -> MutexGuard<'_, Cache> {
        // Nothing that can panic runs under the lock, and the cache is consistent between calls.
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The declared plaintext length if the cache may serve `materials`, `None` to bypass it.
    fn cacheable_length(&self, materials: &EncryptionMaterials) -> Option<u64> {
        if materials.data_key().is_some()
            || !materials.encrypted_data_keys().is_empty()
            || materials.suite().is_signed()
        {
            return None;
        }
        materials
            .plaintext_length()
            .filter(|&n| n <= self.limits.max_bytes)
    }

    /// The spec's appendix A identifier, "encryption materials, with algorithm suite".
    fn cache_id(&self, suite: Suite, context: &EncryptionContext) -> Result<CacheId> {
        let context_hash = Sha512::digest(context.to_bytes()?);
        let mut h = Sha512::new();
        h.update(self.partition_hash);
        h.update([0x01]);
        h.update(suite.id().to_be_bytes());
        h.update(context_hash);
        Ok(h.finalize().into())
    }
}

impl Keyring for CachingKeyring {
    /// As the inner keyring (a miss calls it; waiters for the same entry wait for that call).
    fn may_block(&self) -> bool {
        self.inner.may_block()
    }

    /// Serves the data key and encrypted data keys from the cache when allowed, otherwise calls
    /// the inner keyring (see the [module documentation](self)).
    ///
    /// # Errors
    /// Whatever the inner keyring returns (nothing is stored then).
    fn on_encrypt(&self, materials: &mut EncryptionMaterials) -> Result<()> {
        let Some(length) = self.cacheable_length(materials) else {
            self.bypassed.fetch_add(1, Ordering::Relaxed);
            return self.inner.on_encrypt(materials);
        };
        let Ok(id) = self.cache_id(materials.suite(), materials.context()) else {
            // A context too large for the format: the inner keyring or the header reports it.
            self.bypassed.fetch_add(1, Ordering::Relaxed);
            return self.inner.on_encrypt(materials);
        };
        // One data key request per context at a time: concurrent messages for a context that is
        // being filled wait for that key instead of each asking the inner keyring (a burst of
        // parallel uploads would otherwise make one key-service call per upload in flight).
        // (Nothing is stored with max_messages = 1: then there is nothing to wait for.)
        let coalesce = self.limits.max_messages > 1;
        let mut guard = self.lock();
        let mut waited_on = None;
        let (now, generation) = loop {
            let now = (self.clock)();
            let (found, evicted) = guard.take(&id, now, length, &self.limits);
            self.evicted.fetch_add(evicted, Ordering::Relaxed);
            if let Some((data_key, edks)) = found {
                drop(guard);
                self.hits.fetch_add(1, Ordering::Relaxed);
                materials.set_data_key(data_key);
                for edk in edks {
                    materials.add_encrypted_data_key(edk);
                }
                return Ok(());
            }
            // The fill this message waited for failed: report that, rather than have every
            // waiter repeat the failing call one after the other. The record goes once the
            // last of its waiters read it.
            if let Some(g) = waited_on {
                if let Some(e) = guard.take_failure(&id, g) {
                    return Err(e);
                }
            }
            match guard.filling.get_mut(&id) {
                Some(fill) if coalesce => {
                    if waited_on != Some(fill.generation) {
                        fill.waiters += 1;
                        waited_on = Some(fill.generation);
                    }
                    guard = self
                        .filled
                        .wait(guard)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                _ => {
                    guard.generation += 1;
                    let generation = guard.generation;
                    guard.filling.insert(
                        id,
                        Fill {
                            generation,
                            waiters: 0,
                        },
                    );
                    // An older failure's remaining waiters wait for this fill instead.
                    guard.failed.remove(&id);
                    break (now, generation);
                }
            }
        };
        drop(guard);
        // Whatever happens below (an error included), waiters are released.
        let mut filling = Filling {
            keyring: self,
            id,
            generation,
            failure: None,
        };
        self.misses.fetch_add(1, Ordering::Relaxed);
        // Ask for a key good for the whole byte limit, since the entry may serve that much.
        let mut fresh = EncryptionMaterials::new(materials.suite(), materials.context().clone())
            .with_plaintext_length(Some(self.limits.max_bytes));
        if let Err(e) = self.inner.on_encrypt(&mut fresh) {
            // Waiters get the same error.
            filling.failure = Some(e.duplicate());
            return Err(e);
        }
        let (_, _, data_key, edks) = fresh.into_parts();
        if let Some(key) = &data_key {
            if !edks.is_empty() {
                let entry = Entry {
                    data_key: key.duplicate(),
                    edks: edks.clone(),
                    created: now,
                    messages: 1,
                    bytes: length,
                    serial: 0,
                    last_use: 0,
                };
                let evicted = self.lock().insert(id, entry, (self.clock)(), &self.limits);
                self.evicted.fetch_add(evicted, Ordering::Relaxed);
            }
        }
        // Whatever the inner keyring produced goes to the message (the encryptor rejects
        // materials without a data key or without encrypted data keys).
        if let Some(key) = data_key {
            materials.set_data_key(key);
        }
        for edk in edks {
            materials.add_encrypted_data_key(edk);
        }
        Ok(())
    }

    /// Delegates to the inner keyring: decryption is not cached.
    ///
    /// # Errors
    /// Whatever the inner keyring returns.
    fn on_decrypt(
        &self,
        materials: &mut DecryptionMaterials,
        edks: &[EncryptedDataKey],
    ) -> Result<()> {
        self.inner.on_decrypt(materials, edks)
    }
}

/// A cache identifier (SHA-512 output).
type CacheId = [u8; 64];

/// Marks a context as being filled; on drop, unmarks it (recording a failure for the messages
/// that waited) and wakes the messages waiting for it.
struct Filling<'a> {
    keyring: &'a CachingKeyring,
    id: CacheId,
    generation: u64,
    failure: Option<Error>,
}

impl Drop for Filling<'_> {
    fn drop(&mut self) {
        let mut cache = self.keyring.lock();
        let waiters = match cache.filling.get(&self.id) {
            Some(fill) if fill.generation == self.generation => {
                let n = fill.waiters;
                cache.filling.remove(&self.id);
                n
            }
            _ => 0,
        };
        // A failure is kept only for the messages that waited for this fill (and only until
        // each read it), so failures for many contexts do not pile up.
        if let Some(error) = self.failure.take().filter(|_| waiters > 0) {
            cache.failed.insert(
                self.id,
                Failed {
                    generation: self.generation,
                    error,
                    unread: waiters,
                },
            );
        }
        drop(cache);
        self.keyring.filled.notify_all();
    }
}

/// One cached data key and its use so far.
struct Entry {
    data_key: DataKey,
    edks: Vec<EncryptedDataKey>,
    created: Instant,
    messages: u64,
    bytes: u64,
    /// Insertion number: with `created`, this entry's place in [`Cache::by_age`].
    serial: u64,
    /// Tick of the last use: this entry's place in [`Cache::by_use`].
    last_use: u64,
}

/// The entries and two orders over them: by creation time (expiry order, since every entry has
/// the same `max_age`) and by last use (eviction order when full).
#[derive(Default)]
struct Cache {
    entries: HashMap<CacheId, Entry>,
    by_age: BTreeMap<(Instant, u64), CacheId>,
    by_use: BTreeMap<u64, CacheId>,
    tick: u64,
    /// Contexts whose data key the inner keyring is being asked for right now.
    filling: HashMap<CacheId, Fill>,
    /// The last failed fill of a context, until every message that waited for it read it.
    failed: HashMap<CacheId, Failed>,
    /// Fills started so far.
    generation: u64,
}

/// A data key request in progress for one context.
struct Fill {
    /// The fill's number (see [`Cache::generation`]).
    generation: u64,
    /// Messages waiting for it.
    waiters: usize,
}

/// A failed fill, kept for the messages that waited for it.
struct Failed {
    generation: u64,
    /// The inner keyring's error.
    error: Error,
    /// Waiters that have not read it yet.
    unread: usize,
}

fn expired(now: Instant, created: Instant, limits: &CacheLimits) -> bool {
    now.saturating_duration_since(created) >= limits.max_age
}

impl Cache {
    /// The error of fill `generation` of `id` if it failed, for one of its waiters; the record
    /// goes with its last waiter.
    fn take_failure(&mut self, id: &CacheId, generation: u64) -> Option<Error> {
        let failed = self.failed.get_mut(id)?;
        if failed.generation != generation {
            return None;
        }
        failed.unread = failed.unread.saturating_sub(1);
        let e = failed.error.duplicate();
        if failed.unread == 0 {
            self.failed.remove(id);
        }
        Some(e)
    }

    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    fn remove(&mut self, id: &CacheId) -> bool {
        let Some(e) = self.entries.remove(id) else {
            return false;
        };
        self.by_age.remove(&(e.created, e.serial));
        self.by_use.remove(&e.last_use);
        true
    }

    /// Removes every expired entry (oldest first); returns how many.
    fn prune(&mut self, now: Instant, limits: &CacheLimits) -> u64 {
        let mut n = 0;
        while let Some((&(created, _), &id)) = self.by_age.first_key_value() {
            if !expired(now, created, limits) {
                break;
            }
            self.remove(&id);
            n += 1;
        }
        n
    }

    /// Uses the entry `id` for one message of `length` bytes if its limits allow. Returns a copy
    /// of its key and wrapped keys if so, and the number of entries evicted.
    fn take(
        &mut self,
        id: &CacheId,
        now: Instant,
        length: u64,
        limits: &CacheLimits,
    ) -> (Option<(DataKey, Vec<EncryptedDataKey>)>, u64) {
        let mut evicted = self.prune(now, limits);
        let Some(e) = self.entries.get(id) else {
            return (None, evicted);
        };
        let usable = !expired(now, e.created, limits)
            && e.messages < limits.max_messages
            && e.bytes
                .checked_add(length)
                .is_some_and(|b| b <= limits.max_bytes);
        if !usable {
            self.remove(id);
            return (None, evicted + 1);
        }
        let tick = self.next_tick();
        let Some(e) = self.entries.get_mut(id) else {
            return (None, evicted);
        };
        e.messages += 1;
        e.bytes += length;
        let old_use = std::mem::replace(&mut e.last_use, tick);
        let found = (e.data_key.duplicate(), e.edks.clone());
        let used_up = e.messages >= limits.max_messages;
        self.by_use.remove(&old_use);
        self.by_use.insert(tick, *id);
        if used_up {
            // It can serve no further message: do not keep the key around.
            self.remove(id);
            evicted += 1;
        }
        (Some(found), evicted)
    }

    /// Stores `entry` (created at `entry.created`, its first use counted) under `id` unless it
    /// could serve no further message; returns the number of entries evicted.
    fn insert(&mut self, id: CacheId, mut entry: Entry, now: Instant, limits: &CacheLimits) -> u64 {
        let mut evicted = self.prune(now, limits);
        // A concurrent miss may have stored an entry for the same id meanwhile: replace it.
        if self.remove(&id) {
            evicted += 1;
        }
        if entry.messages >= limits.max_messages || expired(now, entry.created, limits) {
            return evicted;
        }
        while self.entries.len() >= limits.capacity {
            let Some((_, lru)) = self.by_use.pop_first() else {
                break;
            };
            self.remove(&lru);
            evicted += 1;
        }
        entry.serial = self.next_tick();
        entry.last_use = self.next_tick();
        self.by_age.insert((entry.created, entry.serial), id);
        self.by_use.insert(entry.last_use, id);
        self.entries.insert(id, entry);
        evicted
    }

    /// Removes every entry; returns how many.
    fn clear(&mut self) -> u64 {
        let n = self.entries.len() as u64;
        self.entries.clear();
        self.by_age.clear();
        self.by_use.clear();
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyring::raw_aes::{RawAesKeyring, WrappingKey};
    use crate::{DecryptOptions, Decryptor, EncryptOptions, Encryptor};
    use std::collections::HashSet;

    /// A raw AES keyring that counts its calls and remembers the last plaintext length it saw.
    #[derive(Debug)]
    struct Counting {
        inner: RawAesKeyring,
        encrypts: AtomicU64,
        last_length: Mutex<Option<u64>>,
    }

    impl Counting {
        fn new() -> Arc<Self> {
            Arc::new(Self {
                inner: RawAesKeyring::new("ns", "k", WrappingKey::from_bytes([7; 32])).unwrap(),
                encrypts: AtomicU64::new(0),
                last_length: Mutex::new(None),
            })
        }

        fn calls(&self) -> u64 {
            self.encrypts.load(Ordering::Relaxed)
        }
    }

    impl Keyring for Counting {
        fn on_encrypt(&self, materials: &mut EncryptionMaterials) -> Result<()> {
            self.encrypts.fetch_add(1, Ordering::Relaxed);
            *self.last_length.lock().unwrap() = materials.plaintext_length();
            self.inner.on_encrypt(materials)
        }

        fn on_decrypt(
            &self,
            materials: &mut DecryptionMaterials,
            edks: &[EncryptedDataKey],
        ) -> Result<()> {
            self.inner.on_decrypt(materials, edks)
        }
    }

    /// A clock the test moves by hand.
    struct TestClock(Mutex<Instant>);

    impl TestClock {
        fn new() -> Arc<Self> {
            Arc::new(Self(Mutex::new(Instant::now())))
        }

        fn advance(&self, d: Duration) {
            *self.0.lock().unwrap() += d;
        }

        fn clock(self: &Arc<Self>) -> Clock {
            let me = Arc::clone(self);
            Arc::new(move || *me.0.lock().unwrap())
        }
    }

    fn limits(max_messages: u64, max_bytes: u64, capacity: usize) -> CacheLimits {
        CacheLimits {
            max_age: Duration::from_secs(60),
            max_messages,
            max_bytes,
            capacity,
        }
    }

    fn ctx(pairs: &[(&str, &str)]) -> EncryptionContext {
        EncryptionContext::from_pairs(pairs.iter().copied()).unwrap()
    }

    /// Runs `on_encrypt` for one message as the encryptor does; returns the data key bytes and
    /// the encrypted data keys.
    fn materials_for(
        k: &dyn Keyring,
        suite: Suite,
        context: EncryptionContext,
        length: Option<u64>,
    ) -> ([u8; 32], Vec<EncryptedDataKey>) {
        let mut m = EncryptionMaterials::new(suite, context).with_plaintext_length(length);
        k.on_encrypt(&mut m).unwrap();
        let key = *m.data_key().unwrap().as_bytes();
        (key, m.encrypted_data_keys().to_vec())
    }

    fn encrypt(k: &dyn Keyring, opts: &EncryptOptions, pt: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut enc = Encryptor::new(k, opts).unwrap();
        enc.update(pt, &mut out).unwrap();
        enc.finish(&mut out).unwrap();
        out
    }

    fn decrypt(k: Arc<dyn Keyring>, message: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut dec = Decryptor::new(k, DecryptOptions::default());
        dec.update(message, &mut out).unwrap();
        dec.finish(&mut out).unwrap();
        out
    }

    fn opts(context: EncryptionContext, length: Option<u64>) -> EncryptOptions {
        EncryptOptions {
            frame_length: 1024,
            context,
            plaintext_length: length,
            ..Default::default()
        }
    }

    #[test]
    fn ten_thousand_messages_make_ten_inner_calls() {
        let pt = [0x42u8; 100];
        let o = opts(ctx(&[("stream", "s1")]), Some(pt.len() as u64));

        let counting = Counting::new();
        let cached =
            CachingKeyring::new(counting.clone(), limits(1000, u64::MAX >> 1, 10)).unwrap();
        for _ in 0..10_000 {
            encrypt(&cached, &o, &pt);
        }
        assert_eq!(counting.calls(), 10);
        let s = cached.stats();
        assert_eq!((s.hits, s.misses, s.bypassed), (9_990, 10, 0));
        // Each used-up entry is evicted at its 1,000th message.
        assert_eq!(s.evicted, 10);
        assert!(cached.is_empty());

        let uncached = Counting::new();
        for _ in 0..10_000 {
            encrypt(uncached.as_ref(), &o, &pt);
        }
        assert_eq!(uncached.calls(), 10_000);
    }

    #[test]
    fn no_data_key_encrypts_more_than_max_messages() {
        let counting = Counting::new();
        let cached = CachingKeyring::new(counting.clone(), limits(7, 1 << 40, 4)).unwrap();
        let mut uses: HashMap<[u8; 32], u64> = HashMap::new();
        for _ in 0..100 {
            let (key, _) = materials_for(&cached, Suite::DEFAULT, ctx(&[]), Some(1));
            *uses.entry(key).or_default() += 1;
        }
        assert!(uses.values().all(|&n| n == 7 || n == 100 % 7));
        assert_eq!(counting.calls(), 15);
    }

    #[test]
    fn byte_limit_gives_a_fresh_key() {
        let counting = Counting::new();
        let cached = CachingKeyring::new(counting.clone(), limits(1000, 100, 10)).unwrap();
        let c = || ctx(&[("a", "1")]);
        let (k1, e1) = materials_for(&cached, Suite::DEFAULT, c(), Some(60));
        let (k2, e2) = materials_for(&cached, Suite::DEFAULT, c(), Some(40)); // 100: at the limit
        assert_eq!((k1, &e1), (k2, &e2));
        let (k3, e3) = materials_for(&cached, Suite::DEFAULT, c(), Some(1)); // 101: over
        assert_ne!(k3, k1);
        assert_ne!(e3, e1);
        assert_eq!(counting.calls(), 2);

        // A message longer than the limit on its own bypasses and leaves the entry alone.
        let (k4, _) = materials_for(&cached, Suite::DEFAULT, c(), Some(101));
        assert_ne!(k4, k3);
        let (k5, _) = materials_for(&cached, Suite::DEFAULT, c(), Some(99)); // 1 + 99 = 100
        assert_eq!(k5, k3);
        let s = cached.stats();
        assert_eq!((s.hits, s.misses, s.bypassed), (2, 2, 1));
        // The first entry was over the limit for the third message; the second is used up by
        // neither count (max_messages = 1000), so it stays.
        assert_eq!(s.evicted, 1);
        assert_eq!(cached.len(), 1);
    }

    #[test]
    fn expired_entries_are_not_used() {
        let counting = Counting::new();
        let clock = TestClock::new();
        let cached =
            CachingKeyring::with_clock(counting.clone(), limits(1000, 1 << 40, 10), clock.clock())
                .unwrap();
        let (k1, _) = materials_for(&cached, Suite::DEFAULT, ctx(&[]), Some(1));
        clock.advance(Duration::from_secs(60) - Duration::from_nanos(1));
        let (k2, _) = materials_for(&cached, Suite::DEFAULT, ctx(&[]), Some(1));
        assert_eq!(k1, k2);
        clock.advance(Duration::from_nanos(1)); // age == max_age: expired
        let (k3, _) = materials_for(&cached, Suite::DEFAULT, ctx(&[]), Some(1));
        assert_ne!(k3, k1);
        assert_eq!(counting.calls(), 2);
        assert_eq!(cached.stats().evicted, 1);

        // Expired entries of other contexts go too, at the next lookup.
        let (_, _) = materials_for(&cached, Suite::DEFAULT, ctx(&[("x", "y")]), Some(1));
        assert_eq!(cached.len(), 2);
        clock.advance(Duration::from_secs(3600));
        let (k4, _) = materials_for(&cached, Suite::DEFAULT, ctx(&[("z", "w")]), Some(1));
        assert_ne!(k4, k3);
        assert_eq!(cached.len(), 1);
        assert_eq!(cached.stats().evicted, 3);
    }

    #[test]
    fn contexts_and_suites_never_share_a_data_key() {
        let counting = Counting::new();
        let cached = CachingKeyring::new(counting.clone(), limits(1000, 1 << 40, 10)).unwrap();
        let cases = [
            (Suite::DEFAULT, ctx(&[])),
            (Suite::DEFAULT, ctx(&[("a", "1")])),
            (Suite::DEFAULT, ctx(&[("a", "2")])),
            (Suite::DEFAULT, ctx(&[("a", "1"), ("b", "1")])),
            (Suite::ChaCha20Poly1305HkdfSha512Commit, ctx(&[("a", "1")])),
        ];
        let mut first = Vec::new();
        for (suite, c) in &cases {
            first.push(materials_for(&cached, *suite, c.clone(), Some(1)));
        }
        let keys: HashSet<_> = first.iter().map(|(k, _)| *k).collect();
        let edks: HashSet<_> = first.iter().map(|(_, e)| e[0].ciphertext.clone()).collect();
        assert_eq!((keys.len(), edks.len()), (cases.len(), cases.len()));
        // Each context hits its own entry, and only its own.
        for ((suite, c), (k, e)) in cases.iter().zip(&first) {
            let (k2, e2) = materials_for(&cached, *suite, c.clone(), Some(1));
            assert_eq!((&k2, &e2), (k, e));
        }
        assert_eq!(counting.calls(), cases.len() as u64);
        assert_eq!(cached.stats().hits, cases.len() as u64);
    }

    #[test]
    fn a_message_decrypts_only_under_its_own_context() {
        let counting = Counting::new();
        let cached = CachingKeyring::new(counting.clone(), limits(1000, 1 << 40, 10)).unwrap();
        let a = encrypt(&cached, &opts(ctx(&[("t", "a")]), Some(3)), b"aaa");
        let b = encrypt(&cached, &opts(ctx(&[("t", "b")]), Some(3)), b"bbb");
        let (ha, hb) = (
            crate::Header::read(&a, &crate::ReadLimits::default()).unwrap(),
            crate::Header::read(&b, &crate::ReadLimits::default()).unwrap(),
        );
        assert_ne!(ha.header.encrypted_data_keys, hb.header.encrypted_data_keys);
        // Each EDK unwraps only under its own context (it is the AAD of the wrapping).
        for (mine, other) in [(&ha, &hb), (&hb, &ha)] {
            let mut dm = DecryptionMaterials::new(Suite::DEFAULT, other.header.context.clone());
            counting
                .on_decrypt(&mut dm, &mine.header.encrypted_data_keys)
                .unwrap();
            assert!(dm.data_key().is_none());
        }
        assert_eq!(decrypt(counting.clone(), &a), b"aaa");
        assert_eq!(decrypt(counting, &b), b"bbb");
    }

    #[test]
    fn unknown_length_bypasses() {
        let counting = Counting::new();
        let cached = CachingKeyring::new(counting.clone(), limits(1000, 1 << 40, 10)).unwrap();
        for _ in 0..5 {
            let m = encrypt(&cached, &opts(ctx(&[]), None), b"x");
            assert_eq!(decrypt(counting.clone(), &m), b"x");
        }
        assert_eq!(counting.calls(), 5);
        assert_eq!(*counting.last_length.lock().unwrap(), None);
        assert_eq!(cached.stats().bypassed, 5);
        assert!(cached.is_empty());
    }

    #[test]
    fn signed_suite_bypasses() {
        let counting = Counting::new();
        let cached = CachingKeyring::new(counting.clone(), limits(1000, 1 << 40, 10)).unwrap();
        let mut o = opts(ctx(&[("a", "1")]), Some(5));
        o.suite = Suite::Aes256GcmHkdfSha512CommitEcdsaP384;
        for _ in 0..3 {
            let m = encrypt(&cached, &o, b"hello");
            assert_eq!(decrypt(counting.clone(), &m), b"hello");
        }
        assert_eq!(counting.calls(), 3);
        let s = cached.stats();
        assert_eq!((s.hits, s.misses, s.bypassed), (0, 0, 3));
        assert!(cached.is_empty());
    }

    #[test]
    fn oversized_context_bypasses_and_fails_in_the_inner_keyring() {
        let counting = Counting::new();
        let cached = CachingKeyring::new(counting.clone(), limits(1000, 1 << 40, 10)).unwrap();
        let big = "v".repeat(70_000);
        let mut m = EncryptionMaterials::new(Suite::DEFAULT, ctx(&[("k", big.as_str())]))
            .with_plaintext_length(Some(1));
        assert!(matches!(
            cached.on_encrypt(&mut m),
            Err(Error::InvalidArgument(_))
        ));
        assert_eq!(counting.calls(), 1);
        assert_eq!(cached.stats().bypassed, 1);
    }

    #[test]
    fn not_the_first_keyring_wraps_the_existing_key() {
        let counting = Counting::new();
        let cached = CachingKeyring::new(counting.clone(), limits(1000, 1 << 40, 10)).unwrap();
        let mut m =
            EncryptionMaterials::new(Suite::DEFAULT, ctx(&[])).with_plaintext_length(Some(1));
        let key = DataKey::generate();
        let bytes = *key.as_bytes();
        m.set_data_key(key);
        cached.on_encrypt(&mut m).unwrap();
        assert_eq!(m.data_key().unwrap().as_bytes(), &bytes);
        assert_eq!(m.encrypted_data_keys().len(), 1);
        assert_eq!(cached.stats().bypassed, 1);
        assert!(cached.is_empty());
    }

    #[test]
    fn cached_messages_have_their_own_message_ids_and_decrypt() {
        let counting = Counting::new();
        let cached =
            Arc::new(CachingKeyring::new(counting.clone(), limits(1000, 1 << 40, 10)).unwrap());
        let o = opts(ctx(&[("tenant", "acme")]), Some(3000));
        let pt: Vec<u8> = (0..3000).map(|i| i as u8).collect();
        let mut ids = HashSet::new();
        let mut edks = HashSet::new();
        for _ in 0..3 {
            let mut out = Vec::new();
            let mut enc = Encryptor::new(cached.as_ref(), &o).unwrap();
            enc.update(&pt, &mut out).unwrap();
            let summary = enc.finish(&mut out).unwrap();
            ids.insert(summary.message_id);
            let h = crate::Header::read(&out, &crate::ReadLimits::default()).unwrap();
            edks.insert(format!("{:?}", h.header.encrypted_data_keys[0].ciphertext));
            // The plain wrapping key decrypts it, with or without the cache in front.
            assert_eq!(decrypt(counting.clone(), &out), pt);
            assert_eq!(decrypt(cached.clone(), &out), pt);
        }
        assert_eq!(
            ids.len(),
            3,
            "each message has its own id, hence its own content key"
        );
        assert_eq!(edks.len(), 1, "all three share one cached data key");
        assert_eq!(counting.calls(), 1);

        // The parallel pipeline takes the same path through Encryptor::new.
        let enc = Encryptor::new(cached.as_ref(), &o).unwrap();
        let mut out = Vec::new();
        crate::pipeline::encrypt(enc, &pt[..], &mut out, &Default::default(), |_| {}).unwrap();
        assert_eq!(decrypt(counting.clone(), &out), pt);
        assert_eq!(counting.calls(), 1);
    }

    #[test]
    fn capacity_evicts_the_least_recently_used_entry() {
        let counting = Counting::new();
        let cached = CachingKeyring::new(counting.clone(), limits(1000, 1 << 40, 2)).unwrap();
        let get = |t: &str| materials_for(&cached, Suite::DEFAULT, ctx(&[("t", t)]), Some(1)).0;
        let a = get("a");
        let b = get("b");
        assert_eq!(get("a"), a); // a is now more recently used than b
        let c = get("c"); // full: b goes
        assert_eq!(cached.len(), 2);
        assert_eq!(counting.calls(), 3);
        assert_eq!(get("a"), a);
        assert_eq!(get("c"), c);
        assert_ne!(get("b"), b); // b was evicted: a fresh key (and a, now the LRU, goes)
        assert_eq!(counting.calls(), 4);
        assert_eq!(cached.stats().evicted, 2);
    }

    #[test]
    fn inner_keyring_is_asked_for_the_byte_limit() {
        let counting = Counting::new();
        let cached = CachingKeyring::new(counting.clone(), limits(1000, 12345, 2)).unwrap();
        materials_for(&cached, Suite::DEFAULT, ctx(&[]), Some(10));
        assert_eq!(*counting.last_length.lock().unwrap(), Some(12345));
    }

    #[test]
    fn max_messages_one_stores_nothing() {
        let counting = Counting::new();
        let cached = CachingKeyring::new(counting.clone(), limits(1, 1 << 40, 2)).unwrap();
        for _ in 0..3 {
            materials_for(&cached, Suite::DEFAULT, ctx(&[]), Some(1));
        }
        assert_eq!(counting.calls(), 3);
        assert!(cached.is_empty());
    }

    #[test]
    fn clear_and_partition_drop_entries() {
        let counting = Counting::new();
        let cached = CachingKeyring::new(counting.clone(), limits(1000, 1 << 40, 2)).unwrap();
        let (k1, _) = materials_for(&cached, Suite::DEFAULT, ctx(&[]), Some(1));
        cached.clear();
        let (k2, _) = materials_for(&cached, Suite::DEFAULT, ctx(&[]), Some(1));
        assert_ne!(k1, k2);
        let cached = cached.with_partition("p");
        assert_eq!(cached.partition(), "p");
        assert!(cached.is_empty());
        assert_eq!(counting.calls(), 2);
    }

    #[test]
    fn limits_are_validated() {
        let ok = limits(1000, 1000, 10);
        ok.validate().unwrap();
        let bad = [
            CacheLimits {
                max_age: Duration::ZERO,
                ..ok
            },
            CacheLimits {
                max_messages: 0,
                ..ok
            },
            CacheLimits {
                max_messages: MAX_MESSAGES_PER_KEY + 1,
                ..ok
            },
            CacheLimits { max_bytes: 0, ..ok },
            CacheLimits {
                max_bytes: u64::MAX,
                ..ok
            },
            CacheLimits { capacity: 0, ..ok },
        ];
        for l in bad {
            assert!(
                matches!(
                    CachingKeyring::new(Counting::new(), l),
                    Err(Error::InvalidArgument(_))
                ),
                "{l:?}"
            );
        }
        CacheLimits {
            max_messages: MAX_MESSAGES_PER_KEY,
            max_bytes: MAX_BYTES_PER_KEY,
            ..ok
        }
        .validate()
        .unwrap();
    }

    #[test]
    fn debug_shows_no_key_material() {
        let cached = CachingKeyring::new(Counting::new(), limits(1000, 1 << 40, 2)).unwrap();
        let (key, _) = materials_for(&cached, Suite::DEFAULT, ctx(&[]), Some(1));
        let shown = format!("{cached:?}");
        assert!(shown.contains("entries: Some(1)"), "{shown}");
        assert!(!shown.contains(&format!("{key:?}")));
        assert!(!shown.contains(&format!("{:?}", [7u8; 32])));
    }

    #[test]
    fn limits_hold_across_threads() {
        let counting = Counting::new();
        let cached = CachingKeyring::new(counting.clone(), limits(50, 1 << 40, 4)).unwrap();
        let uses: Mutex<HashMap<[u8; 32], u64>> = Mutex::new(HashMap::new());
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..500 {
                        let (key, _) = materials_for(&cached, Suite::DEFAULT, ctx(&[]), Some(1));
                        *uses.lock().unwrap().entry(key).or_default() += 1;
                    }
                });
            }
        });
        let uses = uses.into_inner().unwrap();
        assert!(uses.values().all(|&n| n <= 50));
        assert_eq!(uses.values().sum::<u64>(), 2000);
        let s = cached.stats();
        assert_eq!(s.hits + s.misses, 2000);
        assert_eq!(s.misses, counting.calls());
        // One key request per context at a time: exactly 2000 / 50 keys, however the threads
        // interleave.
        assert_eq!(counting.calls(), 40);
    }

    /// An inner keyring as slow as a remote key service.
    #[derive(Debug)]
    struct Slow(Arc<Counting>);

    impl Keyring for Slow {
        fn on_encrypt(&self, materials: &mut EncryptionMaterials) -> Result<()> {
            std::thread::sleep(Duration::from_millis(20));
            self.0.on_encrypt(materials)
        }

        fn on_decrypt(
            &self,
            materials: &mut DecryptionMaterials,
            edks: &[EncryptedDataKey],
        ) -> Result<()> {
            self.0.on_decrypt(materials, edks)
        }
    }

    #[test]
    fn concurrent_misses_for_one_context_make_one_request() {
        let counting = Counting::new();
        let cached =
            CachingKeyring::new(Arc::new(Slow(counting.clone())), limits(1000, 1 << 40, 4))
                .unwrap();
        std::thread::scope(|s| {
            for _ in 0..16 {
                s.spawn(|| {
                    for _ in 0..250 {
                        materials_for(&cached, Suite::DEFAULT, ctx(&[]), Some(1));
                    }
                });
            }
        });
        assert_eq!(counting.calls(), 4, "{:?}", cached.stats());
        // Another context is filled independently.
        materials_for(&cached, Suite::DEFAULT, ctx(&[("other", "1")]), Some(1));
        assert_eq!(counting.calls(), 5);
    }

    /// An inner keyring whose calls fail, each once the test lets it go on.
    #[derive(Debug, Default)]
    struct Failing {
        calls: AtomicU64,
        go: Mutex<bool>,
        went: std::sync::Condvar,
    }

    impl Failing {
        fn release(&self) {
            *self.go.lock().unwrap() = true;
            self.went.notify_all();
        }
    }

    impl Keyring for Failing {
        fn on_encrypt(&self, _: &mut EncryptionMaterials) -> Result<()> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let go = self.go.lock().unwrap();
            drop(self.went.wait_while(go, |go| !*go).unwrap());
            Err(Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the key service timed out",
            )))
        }

        fn on_decrypt(&self, _: &mut DecryptionMaterials, _: &[EncryptedDataKey]) -> Result<()> {
            unreachable!("not used")
        }
    }

    /// The error of a message that fails, as "kind: text" (the inner keyring's error, whether
    /// this message made the request or waited for another's).
    fn fails(k: &dyn Keyring, context: EncryptionContext) -> String {
        let mut m =
            EncryptionMaterials::new(Suite::DEFAULT, context).with_plaintext_length(Some(1));
        match k.on_encrypt(&mut m) {
            Err(Error::Io(e)) => format!("{:?}: {e}", e.kind()),
            other => panic!("expected the inner keyring's I/O error, got {other:?}"),
        }
    }

    #[test]
    fn a_failed_fill_fails_its_waiters_once_and_is_not_kept() {
        let inner = Arc::new(Failing::default());
        let cached = CachingKeyring::new(inner.clone(), limits(1000, 1 << 40, 4)).unwrap();
        std::thread::scope(|s| {
            let threads: Vec<_> = (0..8)
                .map(|_| s.spawn(|| fails(&cached, ctx(&[("a", "1")]))))
                .collect();
            // Let the fill fail only once the seven other messages wait for it.
            let deadline = Instant::now() + Duration::from_secs(30);
            while cached
                .lock()
                .filling
                .values()
                .map(|f| f.waiters)
                .sum::<usize>()
                < 7
            {
                if Instant::now() > deadline {
                    inner.release();
                    panic!("the messages did not wait for the fill in progress");
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            inner.release();
            for t in threads {
                assert_eq!(t.join().unwrap(), "TimedOut: the key service timed out");
            }
        });
        assert_eq!(
            inner.calls.load(Ordering::SeqCst),
            1,
            "one request for eight messages"
        );
        // Failures for many contexts leave nothing behind (a long-running service sees many).
        for i in 0..100 {
            fails(&cached, ctx(&[("n", &i.to_string())]));
        }
        assert_eq!(inner.calls.load(Ordering::SeqCst), 101);
        let cache = cached.lock();
        assert!(cache.failed.is_empty() && cache.filling.is_empty() && cache.entries.is_empty());
    }
}
