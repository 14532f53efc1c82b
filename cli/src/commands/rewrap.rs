//! `s3crypt rewrap`: add or remove wrapping keys of objects in place (a new header, the same
//! frames; see SECURITY.md for why the message id changes).

use std::sync::Arc;

use crate::args::RewrapArgs;
use crate::batch::{cancel_signal, finish, list_keys};
use crate::commands::cp::{copy_json, send_copy};
use crate::config;
use crate::exit::Failure;
use crate::resolve::S3Setup;
use crate::s3url::{parse_url, prefix_of};

pub(crate) async fn run(a: RewrapArgs) -> Result<(), Failure> {
    if a.add_keys.is_empty() && a.add_kms_keys.is_empty() && a.remove_keys.is_empty() && !a.force {
        return Err(Failure::Usage(
            "nothing to do: give --add-key, --add-kms-key or --remove-key (or --force, to \
             re-encrypt under the same keys)"
                .into(),
        ));
    }
    let add = config::Keys {
        paths: a.add_keys.clone(),
        kms: a.add_kms_keys.clone(),
        discovery: None,
    };
    let setup = S3Setup::resolve(&a.s3, &a.keys, &a.sse_c, Some(&add)).await?;
    let c = setup.decrypting_client()?;
    let wrap: Option<Arc<dyn s3crypt::Keyring>> = if add.paths.is_empty() && add.kms.is_empty() {
        None
    } else {
        Some(Arc::new(setup.keyring_of(&add)?))
    };
    let required = config::parse_context(&a.context)?;
    let (bucket, key) = parse_url(&a.url)?;
    let keys = if a.recursive {
        list_keys(&c, &bucket, &prefix_of(&key)).await?
    } else {
        if key.is_empty() {
            return Err(Failure::Usage(format!(
                "{:?} names no object key (use -r for a prefix)",
                a.url
            )));
        }
        vec![key]
    };
    let keep = if a.remove_keys.is_empty() {
        s3crypt::KeepKeys::All
    } else {
        s3crypt::KeepKeys::AllBut(a.remove_keys.clone())
    };
    let (cancel, cancelled) = tokio::sync::watch::channel(false);
    let overall = crate::streams::Overall::new(
        "rewrapped",
        keys.len() as u64,
        a.quiet || a.json || !a.recursive,
    );
    let items = keys
        .into_iter()
        .map(|k| {
            let overall = overall.clone();
            let stop = cancel_signal(&cancelled);
            let (c, bucket, required, wrap, keep) = (
                c.clone(),
                bucket.clone(),
                required.clone(),
                wrap.clone(),
                keep.clone(),
            );
            let (sse_c, json, force, quiet) = (a.sse_c.on(), a.json, a.force, a.quiet);
            (format!("s3://{bucket}/{k}"), async move {
                let mut req = c
                    .copy_object()
                    .source(&bucket, &k)
                    .required_context(required)
                    .keep(keep)
                    .sse_c(sse_c, sse_c)
                    .skip_if_unchanged(!force)
                    .always_reencrypt(force)
                    .cancel_on(stop);
                if let Some(w) = wrap {
                    req = req.wrap_with(w);
                }
                let o = send_copy(&c, req, &overall).await?;
                if o.mode == s3crypt::CopyMode::Unchanged && !json && !quiet {
                    eprintln!(
                        "s3crypt: s3://{bucket}/{}: unchanged: its keys would stay the same \
                         (--force re-encrypts it anyway)",
                        s3crypt_core::text::printable(&k, usize::MAX)
                    );
                }
                if json {
                    crate::json_out::emit(copy_json("rewrap", (&bucket, &k), (&bucket, &k), &o));
                }
                Ok(())
            })
        })
        .collect();
    let r = finish(a.jobs, items, a.recursive, cancel).await;
    overall.finish(match &r {
        Err(Failure::Partial(n)) => *n,
        _ => 0,
    });
    r
}
