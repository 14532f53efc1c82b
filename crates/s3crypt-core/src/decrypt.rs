//! Decryption: opening a header with a keyring, and the push API.

use std::io::Read;
use std::sync::Arc;

use crate::context::EncryptionContext;
use crate::error::{Error, Malformed, Result};
use crate::header::{Header, ParsedHeader, ReadLimits};
use crate::key::{
    MessageKey, FINAL_MARKER, FINAL_OVERHEAD, FINAL_PREFIX, REGULAR_OVERHEAD, REGULAR_PREFIX,
};
use crate::keyring::{DecryptionMaterials, Keyring};
use crate::signature::{Verifier, MAX_SIGNATURE_LEN};

/// What to require of a message being decrypted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecryptOptions {
    /// Pairs the message's encryption context must contain with these exact values.
    pub required_context: EncryptionContext,
    /// Pairs that must have these exact values when the message's context has their key at all
    /// (e.g. an object's location: a message bound to a location must be read there, whether or
    /// not the reader requires the binding).
    pub required_if_present: EncryptionContext,
    /// Limits applied to the header before anything is allocated from it.
    pub limits: ReadLimits,
}

/// A header whose data key was unwrapped, whose commitment matched and whose tag verified.
pub struct OpenedHeader {
    /// The header as read.
    pub parsed: ParsedHeader,
    pub(crate) key: MessageKey,
    pub(crate) verifier: Option<Verifier>,
}

impl std::fmt::Debug for OpenedHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenedHeader")
            .field("parsed", &self.parsed)
            .finish_non_exhaustive()
    }
}

impl OpenedHeader {
    /// Checks the context requirements, unwraps the data key with `keyring`, checks the key
    /// commitment and verifies the header tag.
    ///
    /// # Errors
    /// [`Error::ContextMismatch`] if a required pair is missing or differs, or a pair of
    /// [`DecryptOptions::required_if_present`] differs;
    /// [`Error::NoDecryptableKey`] if no key unwraps any EDK; [`Error::Authentication`] if the
    /// commitment or header tag does not verify; [`Error::Malformed`] if a signed message lacks a
    /// valid public key.
    pub fn open(
        parsed: ParsedHeader,
        keyring: &dyn Keyring,
        options: &DecryptOptions,
    ) -> Result<Self> {
        let h = &parsed.header;
        h.context.require(&options.required_context)?;
        for (k, v) in options.required_if_present.iter() {
            match h.context.get(k) {
                Some(found) if found != v => {
                    return Err(Error::ContextMismatch(format!(
                        "the message has {k:?} = {found:?}, {v:?} was required"
                    )))
                }
                _ => {}
            }
        }
        let mut materials = DecryptionMaterials::new(h.suite, h.context.clone());
        keyring.on_decrypt(&mut materials, &h.encrypted_data_keys)?;
        let data_key = materials
            .take_data_key()
            .ok_or_else(|| Error::NoDecryptableKey(describe_edks(h)))?;
        let key = MessageKey::for_decryption(h.suite, &data_key, h.message_id, &h.commitment)?;
        drop(data_key);
        key.verify_header(&parsed.bytes, &parsed.tag)?;
        let verifier = if h.suite.is_signed() {
            let mut v = Verifier::from_context(&h.context)?;
            v.update(&parsed.bytes);
            v.update(&parsed.tag);
            Some(v)
        } else {
            None
        };
        Ok(Self {
            parsed,
            key,
            verifier,
        })
    }

    /// The header fields.
    pub fn header(&self) -> &Header {
        &self.parsed.header
    }
}

/// The wrapped keys of an (unauthenticated) header, for an error message: escaped, so that header
/// bytes cannot inject terminal control sequences, and bounded in size.
pub(crate) fn describe_edks(h: &Header) -> String {
    const MAX_SHOWN: usize = 8;
    const MAX_CHARS: usize = 120;
    let mut parts: Vec<String> = h
        .encrypted_data_keys
        .iter()
        .take(MAX_SHOWN)
        .map(|e| {
            let d: String = e
                .describe()
                .chars()
                .flat_map(char::escape_debug)
                .take(MAX_CHARS)
                .collect();
            format!("\"{d}\"")
        })
        .collect();
    if h.encrypted_data_keys.len() > MAX_SHOWN {
        parts.push(format!(
            "and {} more",
            h.encrypted_data_keys.len() - MAX_SHOWN
        ));
    }
    parts.join(", ")
}

/// What a decryption found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DecryptSummary {
    /// The header as read.
    pub header: ParsedHeader,
    /// Plaintext bytes released.
    pub plaintext_len: u64,
    /// Frames read, the final frame included.
    pub frames: u64,
}

enum State {
    Header {
        next_attempt: usize,
    },
    Body {
        opened: Box<OpenedHeader>,
        next_seq: u32,
    },
    Footer {
        opened: Box<OpenedHeader>,
        held: Vec<u8>,
        frames: u32,
    },
    Done {
        header: ParsedHeader,
        frames: u32,
    },
    Failed,
}

/// The push decryptor: feed message bytes, receive authenticated plaintext.
///
/// Only plaintext of frames whose tag verified is released; for signed suites the final frame's
/// plaintext is held until the signature verifies. Memory: up to one frame plus whatever input a
/// call passes in (the header is buffered whole; its size is bounded by [`ReadLimits`]). After an
/// error the decryptor refuses further input.
pub struct Decryptor {
    keyring: Arc<dyn Keyring>,
    options: DecryptOptions,
    buf: Vec<u8>,
    start: usize,
    state: State,
    plaintext_len: u64,
}

impl std::fmt::Debug for Decryptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decryptor")
            .field("plaintext_len", &self.plaintext_len)
            .finish_non_exhaustive()
    }
}

impl Decryptor {
    /// A decryptor that unwraps data keys with `keyring`.
    pub fn new(keyring: Arc<dyn Keyring>, options: DecryptOptions) -> Self {
        Self {
            keyring,
            options,
            buf: Vec::new(),
            start: 0,
            state: State::Header { next_attempt: 0 },
            plaintext_len: 0,
        }
    }

    /// The header, once it has been read and authenticated.
    pub fn header(&self) -> Option<&ParsedHeader> {
        match &self.state {
            State::Body { opened, .. } | State::Footer { opened, .. } => Some(&opened.parsed),
            State::Done { header, .. } => Some(header),
            _ => None,
        }
    }

    /// Consumes `input`, appending authenticated plaintext to `out`.
    ///
    /// # Errors
    /// Any decryption error (see [`Error`]); the decryptor is unusable afterwards.
    pub fn update(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<()> {
        if matches!(self.state, State::Failed) {
            return Err(Error::InvalidArgument(
                "decryptor used after an error".into(),
            ));
        }
        self.buf.extend_from_slice(input);
        let r = self.process(out, false);
        if r.is_err() {
            self.state = State::Failed;
        }
        r
    }

    /// Ends the input.
    ///
    /// # Errors
    /// [`Error::Truncated`] if the message is incomplete, or any error of the remaining bytes.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<DecryptSummary> {
        if matches!(self.state, State::Failed) {
            return Err(Error::InvalidArgument(
                "decryptor used after an error".into(),
            ));
        }
        self.process(out, true)?;
        match self.state {
            State::Done { header, frames } => Ok(DecryptSummary {
                header,
                plaintext_len: self.plaintext_len,
                frames: u64::from(frames),
            }),
            _ => Err(Error::Truncated("the message")),
        }
    }

    fn process(&mut self, out: &mut Vec<u8>, at_end: bool) -> Result<()> {
        let result = self.step_all(out, at_end);
        // Compact: keep only unconsumed bytes (less than one frame once past the header).
        self.buf.drain(..self.start);
        self.start = 0;
        result
    }

    fn step_all(&mut self, out: &mut Vec<u8>, at_end: bool) -> Result<()> {
        let wait = |what| {
            if at_end {
                Err(Error::Truncated(what))
            } else {
                Ok(())
            }
        };
        loop {
            let avail = &mut self.buf[self.start..];
            match &mut self.state {
                State::Failed => {
                    return Err(Error::InvalidArgument(
                        "decryptor used after an error".into(),
                    ))
                }
                State::Header { next_attempt } => {
                    // Re-parsing a growing header is bounded to O(n) total by doubling.
                    if !at_end && avail.len() < *next_attempt {
                        return Ok(());
                    }
                    match Header::read(avail, &self.options.limits) {
                        Err(Error::Truncated(what)) => {
                            *next_attempt = avail.len().saturating_mul(2).max(256);
                            return wait(what);
                        }
                        Err(e) => return Err(e),
                        Ok(parsed) => {
                            let n = parsed.len();
                            let opened =
                                OpenedHeader::open(parsed, self.keyring.as_ref(), &self.options)?;
                            self.start += n;
                            self.state = State::Body {
                                opened: Box::new(opened),
                                next_seq: 1,
                            };
                        }
                    }
                }
                State::Body { opened, next_seq } => {
                    let frame = opened.parsed.header.frame_length as usize;
                    if avail.len() < 4 {
                        return wait("the message body");
                    }
                    if avail[..4] == FINAL_MARKER.to_be_bytes() {
                        if avail.len() < FINAL_PREFIX {
                            return wait("the final frame");
                        }
                        let n = MessageKey::final_content_len(avail, frame as u32)? as usize;
                        let total = FINAL_OVERHEAD + n;
                        if avail.len() < total {
                            return wait("the final frame");
                        }
                        let f = &mut avail[..total];
                        if let Some(v) = &mut opened.verifier {
                            v.update(f);
                        }
                        opened.key.open_final(*next_seq, f)?;
                        let pt = &f[FINAL_PREFIX..FINAL_PREFIX + n];
                        let frames = *next_seq;
                        self.start += total;
                        let State::Body { opened, .. } =
                            std::mem::replace(&mut self.state, State::Failed)
                        else {
                            unreachable!()
                        };
                        if opened.verifier.is_some() {
                            self.state = State::Footer {
                                opened,
                                held: pt.to_vec(),
                                frames,
                            };
                        } else {
                            out.extend_from_slice(pt);
                            self.plaintext_len += n as u64;
                            self.state = State::Done {
                                header: opened.parsed,
                                frames,
                            };
                        }
                    } else {
                        let total = REGULAR_OVERHEAD + frame;
                        if avail.len() < total {
                            return wait("a frame");
                        }
                        if *next_seq == FINAL_MARKER {
                            return Err(Malformed::Field(
                                "frame count (more than 2^32 - 1 frames)",
                            )
                            .into());
                        }
                        let f = &mut avail[..total];
                        if let Some(v) = &mut opened.verifier {
                            v.update(f);
                        }
                        opened.key.open_regular(*next_seq, f)?;
                        out.extend_from_slice(&f[REGULAR_PREFIX..REGULAR_PREFIX + frame]);
                        self.plaintext_len += frame as u64;
                        *next_seq += 1;
                        self.start += total;
                    }
                }
                State::Footer { .. } => {
                    if avail.len() < 2 {
                        return wait("the signature");
                    }
                    let n = usize::from(u16::from_be_bytes([avail[0], avail[1]]));
                    if n > MAX_SIGNATURE_LEN {
                        return Err(Error::Authentication);
                    }
                    if avail.len() < 2 + n {
                        return wait("the signature");
                    }
                    let sig = avail[2..2 + n].to_vec();
                    self.start += 2 + n;
                    let State::Footer {
                        opened,
                        held,
                        frames,
                    } = std::mem::replace(&mut self.state, State::Failed)
                    else {
                        unreachable!()
                    };
                    let OpenedHeader {
                        parsed, verifier, ..
                    } = *opened;
                    verifier.ok_or(Error::Authentication)?.verify(&sig)?;
                    out.extend_from_slice(&held);
                    self.plaintext_len += held.len() as u64;
                    self.state = State::Done {
                        header: parsed,
                        frames,
                    };
                }
                State::Done { .. } => {
                    return if avail.is_empty() {
                        Ok(())
                    } else {
                        Err(Malformed::TrailingData.into())
                    };
                }
            }
        }
    }
}

/// A [`Read`] adapter: reads a message from `inner` and yields authenticated plaintext.
///
/// Reaching the end of `inner` before the message is complete is an error (kind `InvalidData`,
/// wrapping [`Error::Truncated`]); use [`crate::error_of`] to get the [`Error`] back from an
/// `io::Error`.
#[derive(Debug)]
pub struct DecryptReader<R: Read> {
    inner: R,
    dec: Option<Decryptor>,
    out: Vec<u8>,
    pos: usize,
    inbuf: Vec<u8>,
    summary: Option<DecryptSummary>,
    /// Set once decryption failed: later reads fail too, never `Ok(0)` (which means "complete").
    failed: bool,
}

impl<R: Read> DecryptReader<R> {
    /// Decrypts the message read from `inner`.
    pub fn new(keyring: Arc<dyn Keyring>, options: DecryptOptions, inner: R) -> Self {
        Self {
            inner,
            dec: Some(Decryptor::new(keyring, options)),
            out: Vec::new(),
            pos: 0,
            inbuf: vec![0; 64 * 1024],
            summary: None,
            failed: false,
        }
    }

    /// The summary, once the whole message has been read and verified.
    pub fn summary(&self) -> Option<&DecryptSummary> {
        self.summary.as_ref()
    }
}

fn io_err(e: Error) -> std::io::Error {
    match e {
        Error::Io(io) => io,
        other => std::io::Error::new(std::io::ErrorKind::InvalidData, other),
    }
}

impl<R: Read> Read for DecryptReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.failed {
            return Err(std::io::Error::other(
                "the message already failed to decrypt",
            ));
        }
        loop {
            if self.pos < self.out.len() {
                let n = buf.len().min(self.out.len() - self.pos);
                buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            self.out.clear();
            self.pos = 0;
            let Some(dec) = self.dec.as_mut() else {
                return Ok(0);
            };
            let n = match self.inner.read(&mut self.inbuf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                let dec = self
                    .dec
                    .take()
                    .ok_or_else(|| std::io::Error::other("decryptor finished"))?;
                match dec.finish(&mut self.out) {
                    Ok(summary) => self.summary = Some(summary),
                    Err(e) => {
                        self.failed = true;
                        return Err(io_err(e));
                    }
                }
            } else if let Err(e) = dec.update(&self.inbuf[..n], &mut self.out) {
                self.failed = true;
                return Err(io_err(e));
            }
        }
    }
}
