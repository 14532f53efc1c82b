//! Attacks on the fix for advisory S3C-2026-01, at the core level: every public way to write a
//! message (including the hazardous and `#[doc(hidden)]` ones) is driven into the corners where a
//! (data key, message id) could seal two different headers, or two different frames under one
//! sequence number. Each test asserts the defence; a failure is a finding.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use s3crypt_core::header::MESSAGE_ID_LEN;
use s3crypt_core::keyring::caching::{CacheLimits, CachingKeyring};
use s3crypt_core::keyring::{DataKey, DecryptionMaterials, EncryptionMaterials};
use s3crypt_core::parts::{MessageSealer, PartSealer};
use s3crypt_core::pipeline::{self, PipelineOptions};
use s3crypt_core::{
    DecryptOptions, DecryptReader, Decryptor, EncryptOptions, EncryptWriter, EncryptedDataKey,
    EncryptionContext, Encryptor, Error, Header, Keyring, Suite,
};

use crate::forbidden::{self, forge_message, parse_frames};
use crate::util::{keyring, pattern, raw};

/// One written message: (header bytes with tag, message id, the whole message).
struct Written {
    header: Vec<u8>,
    id: [u8; MESSAGE_ID_LEN],
    message: Vec<u8>,
    plaintext: Vec<u8>,
}

fn written(message: Vec<u8>, plaintext: &[u8]) -> Written {
    let p = Header::read(&message, &Default::default()).unwrap();
    Written {
        header: message[..p.len()].to_vec(),
        id: p.header.message_id,
        message,
        plaintext: plaintext.to_vec(),
    }
}

fn opts(suite: Suite, frame: u32, which: &str, len: Option<u64>) -> EncryptOptions {
    let mut context = EncryptionContext::new();
    context.insert("which", which).unwrap();
    EncryptOptions {
        suite,
        frame_length: frame,
        context,
        plaintext_length: len,
    }
}

/// Every frame of a message, in order: sequence numbers 1, 2, … n with the last one final.
fn assert_frames_numbered_once(w: &Written, frame: u32) {
    let body = &w.message[w.header.len()..];
    let frames = parse_frames(body, frame).expect("the message has a complete body");
    let seqs: Vec<u32> = frames.iter().map(|f| f.seq).collect();
    let want: Vec<u32> = (1..=frames.len() as u32).collect();
    assert_eq!(seqs, want, "frames must be numbered 1..n, each once");
    assert!(frames.last().unwrap().is_final);
    assert!(frames[..frames.len() - 1].iter().all(|f| !f.is_final));
}

/// Seals a message part by part with `sealer`, the parts handed out as `plan` says (numbers of
/// regular frames, then the last part's regular frames and final length), sealing them in reverse
/// order. Returns the message.
fn seal_parts(
    mut sealer: MessageSealer,
    plan: &[usize],
    last: (usize, usize),
    pt: &[u8],
) -> Vec<u8> {
    let mut parts: Vec<PartSealer> = plan.iter().map(|&n| sealer.part(n).unwrap()).collect();
    let header = sealer.header().to_vec();
    let (p, mut tail) = sealer.last_part(last.0, last.1).unwrap();
    parts.push(p);
    let mut bufs = Vec::new();
    let mut off = 0;
    for p in &parts {
        let mut b = vec![0u8; p.sealed_len()];
        for r in p.plaintext_ranges() {
            let n = r.len();
            b[r].copy_from_slice(&pt[off..off + n]);
            off += n;
        }
        bufs.push(b);
    }
    assert_eq!(off, pt.len());
    for (p, b) in parts.into_iter().zip(bufs.iter_mut()).rev() {
        p.seal(b).unwrap();
    }
    let mut msg = header;
    for b in &bufs {
        tail.absorb(b);
        msg.extend_from_slice(b);
    }
    msg.extend(tail.finish().unwrap());
    msg
}

/// A keyring that always plants one chosen data key and adds the same wrapped key (twice): what a
/// hostile or buggy keyring, or a data-key cache, can do. The message id is the only thing left
/// to keep message keys apart.
#[derive(Debug)]
struct PlantedKey {
    twice: bool,
}

impl Keyring for PlantedKey {
    fn on_encrypt(&self, m: &mut EncryptionMaterials) -> s3crypt_core::Result<()> {
        // Replaces whatever was there, unconditionally.
        m.set_data_key(DataKey::from_bytes(forbidden::DATA_KEY));
        let edk = EncryptedDataKey {
            provider_id: "test".into(),
            provider_info: b"fixed".to_vec(),
            ciphertext: vec![0xEE; 40],
        };
        m.add_encrypted_data_key(edk.clone());
        if self.twice {
            m.add_encrypted_data_key(edk);
        }
        Ok(())
    }

    fn on_decrypt(
        &self,
        m: &mut DecryptionMaterials,
        _: &[EncryptedDataKey],
    ) -> s3crypt_core::Result<()> {
        m.set_data_key(DataKey::from_bytes(forbidden::DATA_KEY));
        Ok(())
    }
}

fn decrypts_to(k: Arc<dyn Keyring>, msg: &[u8], pt: &[u8]) {
    let mut d = Decryptor::new(k, DecryptOptions::default());
    let mut out = Vec::new();
    d.update(msg, &mut out).unwrap();
    d.finish(&mut out).unwrap();
    assert!(out == pt, "plaintext differs");
}

/// Every public write path (push, writer, pipeline, file pipeline, parts in odd orders, signed and
/// unsigned), each under one planted data key (the worst case: a keyring or cache that always
/// returns the same key): no message id repeats, so no (key, nonce 0) tags two headers, and
/// within every message each frame sequence number is sealed exactly once. The forbidden attack
/// finds nothing between any two of them.
#[test]
fn every_write_path_under_one_planted_data_key_keeps_message_keys_apart() {
    let planted: Arc<dyn Keyring> = Arc::new(PlantedKey { twice: true });
    let popts = [
        PipelineOptions::default(),
        PipelineOptions {
            threads: 3,
            batch_bytes: 1,
        },
        PipelineOptions {
            threads: 2,
            batch_bytes: 100,
        },
    ];
    let mut all: Vec<Written> = Vec::new();
    for suite in Suite::ALL {
        let frame = 32u32;
        for len in [0usize, 1, 31, 32, 33, 64, 95, 96, 97, 300] {
            let pt = pattern(len);
            let o = opts(suite, frame, "x", None);
            // Push, in several chunkings (one update of nothing included).
            for chunk in [1usize, 7, 32, 1000] {
                let mut enc = Encryptor::new(planted.as_ref(), &o).unwrap();
                let mut out = Vec::new();
                enc.update(&[], &mut out).unwrap();
                for c in pt.chunks(chunk) {
                    enc.update(c, &mut out).unwrap();
                }
                enc.finish(&mut out).unwrap();
                all.push(written(out, &pt));
            }
            // Writer.
            let mut w = EncryptWriter::new(planted.as_ref(), &o, Vec::new()).unwrap();
            std::io::Write::write_all(&mut w, &pt).unwrap();
            all.push(written(w.finish().unwrap().0, &pt));
            // Pipelines.
            for p in &popts {
                let enc = Encryptor::new(planted.as_ref(), &o).unwrap();
                let mut out = Vec::new();
                pipeline::encrypt(enc, &pt[..], &mut out, p, |_| {}).unwrap();
                all.push(written(out, &pt));
                let mut f = tempfile::tempfile().unwrap();
                std::io::Write::write_all(&mut f, &pt).unwrap();
                let enc = Encryptor::new(planted.as_ref(), &o).unwrap();
                let mut out = Vec::new();
                pipeline::encrypt_file(enc, &f, &mut out, p, |_| {}).unwrap();
                all.push(written(out, &pt));
            }
            // Parts: zero-frame parts, one big part, many small ones.
            let f = frame as usize;
            let (regular, fin) = (len / f, len % f);
            let plans: Vec<(Vec<usize>, (usize, usize))> = vec![
                (vec![], (regular, fin)),
                (vec![0, 0], (regular, fin)),
                (vec![regular, 0], (0, fin)),
                ((0..regular).map(|_| 1).collect(), (0, fin)),
            ];
            for (plan, last) in plans {
                let enc = Encryptor::new(planted.as_ref(), &o).unwrap();
                let msg = seal_parts(MessageSealer::new(enc).unwrap(), &plan, last, &pt);
                all.push(written(msg, &pt));
            }
        }
    }
    let mut by_id: HashMap<[u8; 32], usize> = HashMap::new();
    for (i, w) in all.iter().enumerate() {
        if let Some(j) = by_id.insert(w.id, i) {
            assert!(
                all[j].header == w.header,
                "two different headers under one (data key, message id)"
            );
            panic!("a message id repeated under one data key");
        }
        decrypts_to(planted.clone(), &w.message, &w.plaintext);
        let frame = Header::read(&w.message, &Default::default())
            .unwrap()
            .header
            .frame_length;
        assert_frames_numbered_once(w, frame);
    }
    // Same data key, same context, same plaintext, distinct message ids: nothing to recover.
    let unsigned: Vec<&Written> = all
        .iter()
        .filter(|w| {
            let s = Header::read(&w.message, &Default::default())
                .unwrap()
                .header
                .suite;
            !s.is_signed() && w.plaintext.len() == 97
        })
        .take(6)
        .collect();
    for (i, a) in unsigned.iter().enumerate() {
        for b in &unsigned[i + 1..] {
            let chosen = vec![b'!'; a.plaintext.len()];
            assert!(forge_message(&a.message, &b.message, &a.plaintext, &chosen).is_empty());
        }
    }
}

/// An encryptor that has sealed (or buffered, or sent its header) cannot be handed to a second
/// sealer, which would number frames from 1 again under the same key.
#[test]
fn a_used_encryptor_cannot_be_continued_by_another_sealer() {
    let k = keyring(vec![raw("ns", "a", 1)]);
    let o = opts(Suite::DEFAULT, 16, "x", None);
    type Feed = fn(&mut Encryptor);
    let feeds: [(&str, Feed); 3] = [
        ("header only", |e| e.update(&[], &mut Vec::new()).unwrap()),
        ("buffered", |e| e.update(&[1; 5], &mut Vec::new()).unwrap()),
        ("sealed a frame", |e| {
            let mut out = Vec::new();
            e.update(&[1; 40], &mut out).unwrap();
            assert!(out.len() > e.header_bytes().len(), "a frame was sealed");
        }),
    ];
    for (what, feed) in feeds {
        let fresh = || Encryptor::new(k.as_ref(), &o).unwrap();
        let mut e = fresh();
        feed(&mut e);
        assert!(
            matches!(MessageSealer::new(e), Err(Error::InvalidArgument(_))),
            "{what}: parts"
        );
        let mut e = fresh();
        feed(&mut e);
        let r = pipeline::encrypt(
            e,
            &[2u8; 100][..],
            &mut Vec::new(),
            &Default::default(),
            |_| {},
        );
        assert!(
            matches!(r, Err(Error::InvalidArgument(_))),
            "{what}: pipeline"
        );
        let mut e = fresh();
        feed(&mut e);
        let f = tempfile::tempfile().unwrap();
        let r = pipeline::encrypt_file(e, &f, &mut Vec::new(), &Default::default(), |_| {});
        assert!(matches!(r, Err(Error::InvalidArgument(_))), "{what}: file");
    }
    // A refused update (over the declared length) consumes nothing and seals nothing: the
    // encryptor is still fresh, and a sealer may take it.
    let mut e = Encryptor::new(k.as_ref(), &opts(Suite::DEFAULT, 16, "x", Some(10))).unwrap();
    let mut out = Vec::new();
    assert!(matches!(
        e.update(&[0; 11], &mut out),
        Err(Error::InvalidArgument(_))
    ));
    assert!(out.is_empty());
    let msg = seal_parts(MessageSealer::new(e).unwrap(), &[], (0, 10), &[7; 10]);
    decrypts_to(k, &msg, &[7; 10]);
}

/// `MessageSealer::part` and `last_part` in odd orders and at the sequence-number limit: refused
/// requests hand out nothing (the next part starts where it should), and no sequence number is
/// ever given to two parts. The parts at the end of the number space are sealed for real (the
/// giant part before them is never sealed: it would be 2^32 frames).
#[test]
fn message_sealer_never_hands_out_a_sequence_number_twice() {
    let k = keyring(vec![raw("ns", "a", 1)]);
    // Refusals in the middle of a message.
    let enc = Encryptor::new(k.as_ref(), &opts(Suite::DEFAULT, 16, "x", Some(16 * 5 + 3))).unwrap();
    let mut s = MessageSealer::new(enc).unwrap();
    let a = s.part(2).unwrap();
    assert!(
        matches!(s.part(4), Err(Error::InvalidArgument(_))),
        "over the declared length"
    );
    let b = s.part(0).unwrap();
    let c = s.part(3).unwrap();
    assert!(matches!(s.part(1), Err(Error::InvalidArgument(_))));
    let header = s.header().to_vec();
    let (last, mut tail) = s.last_part(0, 3).unwrap();
    let pt = pattern(16 * 5 + 3);
    let mut seqs = Vec::new();
    let mut msg = header.clone();
    let mut off = 0;
    let mut sealed = Vec::new();
    for p in [a, b, c, last] {
        let mut buf = vec![0u8; p.sealed_len()];
        for r in p.plaintext_ranges() {
            let n = r.len();
            buf[r].copy_from_slice(&pt[off..off + n]);
            off += n;
        }
        sealed.push((p, buf));
    }
    for (p, mut buf) in sealed.into_iter().rev() {
        p.seal(&mut buf).unwrap();
        msg.splice(header.len()..header.len(), buf);
    }
    tail.absorb(&msg[header.len()..]);
    for f in parse_frames(&msg[header.len()..], 16).unwrap() {
        seqs.push(f.seq);
    }
    assert_eq!(seqs, (1..=6).collect::<Vec<u32>>());
    decrypts_to(k.clone(), &msg, &pt);

    // At the end of the number space.
    let enc = Encryptor::new(k.as_ref(), &opts(Suite::DEFAULT, 16, "x", None)).unwrap();
    let mut s = MessageSealer::new(enc).unwrap();
    let _giant = s.part(0xFFFF_FFFD).unwrap(); // seq 1 ..= 0xFFFF_FFFD, never sealed
    assert!(matches!(s.part(2), Err(Error::InvalidArgument(_))));
    let near = s.part(1).unwrap(); // 0xFFFF_FFFE
    assert!(
        matches!(s.part(1), Err(Error::InvalidArgument(_))),
        "0xFFFFFFFF is the marker"
    );
    let (fin, _tail) = s.last_part(0, 5).unwrap(); // final frame, seq 0xFFFF_FFFF
    let mut got = Vec::new();
    for p in [near, fin] {
        let mut buf = vec![0u8; p.sealed_len()];
        p.seal(&mut buf).unwrap();
        got.extend(buf);
    }
    let frames = parse_frames(&got, 16).unwrap();
    let seqs: Vec<u32> = frames.iter().map(|f| f.seq).collect();
    assert_eq!(seqs, [0xFFFF_FFFE, 0xFFFF_FFFF]);
    assert!(frames[1].is_final);

    // The last part may not run past the limit either.
    let enc = Encryptor::new(k.as_ref(), &opts(Suite::DEFAULT, 16, "x", None)).unwrap();
    let mut s = MessageSealer::new(enc).unwrap();
    let _giant = s.part(0xFFFF_FFFE).unwrap();
    assert!(matches!(s.last_part(1, 0), Err(Error::InvalidArgument(_))));
}

/// A data-key cache serves one data key for many messages (that is its purpose): the message ids
/// must keep their message keys apart, across every context and suite it serves.
#[test]
fn a_cached_data_key_never_repeats_a_message_key() {
    #[derive(Debug)]
    struct Spy(Arc<dyn Keyring>, Mutex<Vec<[u8; 32]>>);
    impl Keyring for Spy {
        fn on_encrypt(&self, m: &mut EncryptionMaterials) -> s3crypt_core::Result<()> {
            self.0.on_encrypt(m)?;
            self.1
                .lock()
                .unwrap()
                .push(*m.data_key().unwrap().as_bytes());
            Ok(())
        }
        fn on_decrypt(
            &self,
            m: &mut DecryptionMaterials,
            e: &[EncryptedDataKey],
        ) -> s3crypt_core::Result<()> {
            self.0.on_decrypt(m, e)
        }
    }
    let inner = keyring(vec![raw("ns", "a", 1)]);
    let cache: Arc<dyn Keyring> = Arc::new(
        CachingKeyring::new(
            inner.clone(),
            CacheLimits::new(Duration::from_secs(600))
                .with_max_messages(1000)
                .with_max_bytes(1 << 30)
                .with_capacity(4),
        )
        .unwrap(),
    );
    let spy = Spy(cache, Mutex::default());
    let mut ids = HashSet::new();
    let mut messages = Vec::new();
    for i in 0..200 {
        let pt = pattern(97);
        let o = opts(
            Suite::DEFAULT,
            32,
            if i % 2 == 0 { "a" } else { "b" },
            Some(97),
        );
        let mut enc = Encryptor::new(&spy, &o).unwrap();
        let mut out = Vec::new();
        enc.update(&pt, &mut out).unwrap();
        enc.finish(&mut out).unwrap();
        let w = written(out, &pt);
        assert!(ids.insert(w.id), "a message id repeated");
        messages.push(w);
    }
    let keys: HashSet<[u8; 32]> = spy.1.lock().unwrap().iter().copied().collect();
    assert!(
        keys.len() <= 2,
        "the cache served one key per context ({})",
        keys.len()
    );
    for pair in messages.chunks(2).take(10) {
        let chosen = vec![b'!'; 97];
        assert!(forge_message(
            &pair[0].message,
            &pair[1].message,
            &pair[0].plaintext,
            &chosen
        )
        .is_empty());
        decrypts_to(inner.clone(), &pair[0].message, &pair[0].plaintext);
    }
}

/// The same wrapped key twice, and a keyring that replaces the data key: accepted as written (the
/// keyring is trusted), and still never a repeated message key. 64 copies are the most a header
/// may hold.
#[test]
fn a_keyring_returning_one_wrapped_key_twice() {
    let twice: Arc<dyn Keyring> = Arc::new(PlantedKey { twice: true });
    let o = opts(Suite::DEFAULT, 32, "x", None);
    let mut enc = Encryptor::new(twice.as_ref(), &o).unwrap();
    assert_eq!(enc.header().encrypted_data_keys.len(), 2);
    let mut out = Vec::new();
    enc.update(b"hello", &mut out).unwrap();
    enc.finish(&mut out).unwrap();
    decrypts_to(twice, &out, b"hello");
    #[derive(Debug)]
    struct Many(usize);
    impl Keyring for Many {
        fn on_encrypt(&self, m: &mut EncryptionMaterials) -> s3crypt_core::Result<()> {
            for _ in 0..self.0 {
                PlantedKey { twice: false }.on_encrypt(m)?;
            }
            Ok(())
        }
        fn on_decrypt(
            &self,
            m: &mut DecryptionMaterials,
            e: &[EncryptedDataKey],
        ) -> s3crypt_core::Result<()> {
            PlantedKey { twice: false }.on_decrypt(m, e)
        }
    }
    assert!(Encryptor::new(&Many(64), &o).is_ok());
    assert!(matches!(
        Encryptor::new(&Many(65), &o),
        Err(Error::InvalidArgument(_))
    ));
}

/// A message bound to one location (`s3crypt:bucket`, `s3crypt:key`) read with
/// `required_if_present` naming another: refused on every core read path, before any plaintext;
/// the right location, and a message without the pairs, read.
#[test]
fn required_if_present_holds_on_every_core_read_path() {
    let k = keyring(vec![raw("ns", "a", 1)]);
    let pt = pattern(1000);
    let mut ctx = EncryptionContext::new();
    ctx.insert("s3crypt:bucket", "b").unwrap();
    ctx.insert("s3crypt:key", "k").unwrap();
    ctx.insert("other", "v").unwrap();
    let make = |context: EncryptionContext, suite: Suite| {
        let o = EncryptOptions {
            suite,
            frame_length: 64,
            context,
            plaintext_length: None,
        };
        let mut enc = Encryptor::new(k.as_ref(), &o).unwrap();
        let mut out = Vec::new();
        enc.update(&pt, &mut out).unwrap();
        enc.finish(&mut out).unwrap();
        out
    };
    let mut key_only = EncryptionContext::new();
    key_only.insert("s3crypt:key", "k").unwrap();
    let cases = |bucket: &str, key: &str| {
        let mut o = DecryptOptions::default();
        o.required_if_present
            .insert("s3crypt:bucket", bucket)
            .unwrap();
        o.required_if_present.insert("s3crypt:key", key).unwrap();
        o
    };
    let read_all =
        |msg: &[u8], o: &DecryptOptions| -> Vec<(&'static str, Result<Vec<u8>, String>)> {
            let mut r = Vec::new();
            let (out, res) = crate::util::decrypt_push(k.clone(), o, msg, 100);
            r.push(("push", res.map(|()| out).map_err(|e| e.class().to_owned())));
            let mut reader = DecryptReader::new(k.clone(), o.clone(), msg);
            let mut out = Vec::new();
            r.push((
                "reader",
                reader.read_to_end(&mut out).map(|_| out).map_err(|e| {
                    s3crypt_core::error_of(&e)
                        .map_or("io", |x| x.class())
                        .to_owned()
                }),
            ));
            let (out, res) = crate::util::decrypt_pipeline(k.as_ref(), o, msg, &Default::default());
            r.push((
                "pipeline",
                res.map(|()| out).map_err(|e| e.class().to_owned()),
            ));
            let (out, res) = crate::util::decrypt_file(k.as_ref(), o, msg, &Default::default());
            r.push(("file", res.map(|()| out).map_err(|e| e.class().to_owned())));
            let header = pipeline::read_header(&mut &msg[..], k.as_ref(), o);
            r.push((
                "read_header",
                header.map(|_| Vec::new()).map_err(|e| e.class().to_owned()),
            ));
            let range = s3crypt_core::range::decrypt_range(msg, k.as_ref(), o, 10..900);
            r.push(("range", range.map_err(|e| e.class().to_owned())));
            r
        };
    for suite in Suite::ALL {
        let bound = make(ctx.clone(), suite);
        let only_key = make(key_only.clone(), suite);
        let unbound = make(EncryptionContext::new(), suite);
        for (what, res) in read_all(&bound, &cases("b", "elsewhere"))
            .into_iter()
            .chain(read_all(&bound, &cases("other-bucket", "k")))
            .chain(read_all(&only_key, &cases("b", "elsewhere")))
        {
            // (Ranges of signed messages are refused before anything else.)
            let want = if suite.is_signed() && what == "range" {
                "unsupported"
            } else {
                "context"
            };
            assert_eq!(res.err().as_deref(), Some(want), "{suite} {what}");
        }
        for (what, res) in read_all(&bound, &cases("b", "k"))
            .into_iter()
            .chain(read_all(&unbound, &cases("b", "elsewhere")))
            .chain(read_all(&only_key, &cases("elsewhere", "k")))
        {
            match (what, res) {
                ("range", Err(e)) if suite.is_signed() => assert_eq!(e, "unsupported"),
                ("read_header", r) => assert!(r.is_ok(), "{suite} {what}"),
                ("range", r) => assert!(r.unwrap() == pt[10..900], "{suite} {what}"),
                (_, r) => assert!(r.unwrap() == pt, "{suite} {what}"),
            }
        }
    }
}

/// `DecryptReader` on a message cut short: the error is reported once, and then reading again
/// must not look like a clean end of a complete message (`Ok(0)`). The S3 layer's stream guards
/// this ("the download already failed"); a consumer that retries a failed read (many `Read`
/// wrappers treat errors as transient) would otherwise take the truncated plaintext as whole.
#[test]
fn a_truncated_message_never_reads_as_complete_after_its_error() {
    let k = keyring(vec![raw("ns", "a", 1)]);
    let pt = pattern(300);
    let o = opts(Suite::DEFAULT, 64, "x", None);
    let msg = crate::util::encrypt_push(k.as_ref(), &o, &pt, 1000);
    // Drop the final frame (44 plaintext bytes + overhead): every regular frame still verifies.
    let cut = &msg[..msg.len() - (300 % 64 + s3crypt_core::key::FINAL_OVERHEAD)];
    let mut r = DecryptReader::new(k, DecryptOptions::default(), cut);
    let mut out = Vec::new();
    let e = r.read_to_end(&mut out).unwrap_err();
    assert_eq!(
        s3crypt_core::error_of(&e).map(Error::class),
        Some("truncated")
    );
    assert_eq!(out.len(), 256, "the verified regular frames were released");
    let mut more = [0u8; 16];
    let again = r.read(&mut more);
    assert!(
        again.is_err(),
        "after a truncation error, read() returned {again:?}: a retrying consumer sees a clean \
         end of a {}-byte plaintext that is really {} bytes",
        out.len(),
        pt.len()
    );
}
