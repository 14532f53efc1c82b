//! `s3crypt rm`: delete one object.

use crate::args::RmArgs;
use crate::exit::Failure;
use crate::resolve::metadata_client;
use crate::s3url::object_url;

pub(crate) async fn run(a: RmArgs) -> Result<(), Failure> {
    let (bucket, key) = object_url(&a.url)?;
    // Nothing is decrypted: no keyring needed.
    metadata_client(&a.s3)
        .await?
        .delete_object()
        .bucket(&bucket)
        .key(&key)
        .send()
        .await?;
    Ok(())
}
