//! One test per error class: the variant, whose fault it is, `is_retryable()`/`is_throttling()`,
//! the SDK error kept as the source, and a `Display` that neither repeats the source nor shows
//! key material. Faults come from the fault proxies in front of real local servers.

use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::config::retry::RetryConfig;
use s3crypt::{Client, Error, Fault as Whose};
use s3crypt_core::keyring::raw_aes::{RawAesKeyring, WrappingKey};

use crate::proxy::{Fault, Proxy};
use crate::servers::{start, Kind, Server};

/// The wrapping key's bytes: no error message may show them, in any common encoding.
const WRAPPING: [u8; 32] = [0x5c; 32];

fn keyring(bytes: [u8; 32]) -> Arc<RawAesKeyring> {
    Arc::new(RawAesKeyring::new("s3crypt-test", "key-1", WrappingKey::from_bytes(bytes)).unwrap())
}

fn sdk(endpoint: &str) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "testing", "testing", None, None, "tests",
        ))
        .force_path_style(true)
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(2)
                .with_initial_backoff(Duration::from_millis(10)),
        )
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

fn client(endpoint: &str, keyring: Arc<RawAesKeyring>) -> Client {
    Client::builder()
        .s3_client(sdk(endpoint))
        .keyring(keyring)
        .build()
        .unwrap()
}

/// `Display` shows no key material and does not repeat its source.
fn check_display(e: &Error) {
    use base64::Engine as _;
    let shown = e.to_string();
    let hex: String = WRAPPING.iter().map(|b| format!("{b:02x}")).collect();
    let b64 = base64::engine::general_purpose::STANDARD.encode(WRAPPING);
    for secret in [&hex[..16], &b64[..16]] {
        assert!(
            !shown
                .to_ascii_lowercase()
                .contains(&secret.to_ascii_lowercase()),
            "{shown}"
        );
    }
    // No link of the source chain is repeated (short generic texts like "service error" aside,
    // which could only match by accident).
    let mut cur = e.source();
    while let Some(src) = cur {
        let s = src.to_string();
        assert!(
            s.len() < 16 || !shown.contains(&s),
            "{shown:?} repeats {s:?}"
        );
        cur = src.source();
    }
}

async fn setup(kind: Kind) -> Option<(Server, Proxy)> {
    let server = start(kind)?;
    server
        .s3()
        .create_bucket()
        .bucket("errs")
        .send()
        .await
        .unwrap();
    let proxy = Proxy::start(&server.endpoint).await;
    Some((server, proxy))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_throttling_is_a_retryable_service_error_with_its_code() {
    let Some((_server, proxy)) = setup(Kind::S3sFs).await else {
        return;
    };
    let c = client(&proxy.endpoint, keyring(WRAPPING));
    let hits = proxy.inject(usize::MAX, Fault::Status(503, "SlowDown"), |r| {
        r.method == "PUT"
    });
    let e = c
        .put_object()
        .bucket("errs")
        .key("slow")
        .body(vec![7u8; 1000])
        .send()
        .await
        .unwrap_err();
    assert!(
        hits.load(std::sync::atomic::Ordering::SeqCst) >= 2,
        "the SDK retried"
    );
    assert!(
        matches!(
            &e,
            Error::Service {
                operation: "PutObject",
                status: Some(503),
                code: Some(c),
                ..
            } if c == "SlowDown"
        ),
        "{e:?}"
    );
    assert_eq!(e.fault(), Whose::Service);
    assert!(e.is_retryable() && e.is_throttling(), "{e}");
    assert_eq!(
        (e.status(), e.service_code()),
        (Some(503), Some("SlowDown"))
    );
    // The SDK's own error is the source, for callers that inspect it.
    let src = e.source().expect("the SDK error is kept");
    assert!(
        src.downcast_ref::<aws_sdk_s3::error::SdkError<
            aws_sdk_s3::operation::put_object::PutObjectError,
            aws_sdk_s3::config::http::HttpResponse,
        >>()
        .is_some(),
        "{src:?}"
    );
    check_display(&e);
    assert!(e.to_string().contains("SlowDown"), "{e}");
    // S3's message is kept, outside Display.
    assert_eq!(e.service_message(), Some("injected by the test proxy"));
    assert!(!e.to_string().contains("injected by the test proxy"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_denied_is_a_final_service_error() {
    let Some((_server, proxy)) = setup(Kind::S3sFs).await else {
        return;
    };
    let c = client(&proxy.endpoint, keyring(WRAPPING));
    proxy.inject(usize::MAX, Fault::Status(403, "AccessDenied"), |_| true);
    let e = c
        .put_object()
        .bucket("errs")
        .key("no")
        .body("x")
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Service { status: Some(403), code: Some(c), .. } if c == "AccessDenied"),
        "{e:?}"
    );
    assert_eq!(e.fault(), Whose::Service);
    assert!(!e.is_retryable() && !e.is_throttling(), "{e}");
    check_display(&e);
    // A HEAD has no body, so no code: the status still says what happened.
    let e = c
        .head_object()
        .bucket("errs")
        .key("no")
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(
            &e,
            Error::Service {
                status: Some(403),
                ..
            }
        ),
        "{e:?}"
    );
    assert!(!e.is_retryable());
    check_display(&e);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_response_is_a_retryable_transport_error() {
    let Some((_server, proxy)) = setup(Kind::S3sFs).await else {
        return;
    };
    let c = client(&proxy.endpoint, keyring(WRAPPING));
    proxy.inject(usize::MAX, Fault::ResetRequest { after: 0 }, |r| {
        r.method == "PUT"
    });
    let e = c
        .put_object()
        .bucket("errs")
        .key("reset")
        .body(vec![1u8; 100])
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(
            &e,
            Error::Transport {
                operation: "PutObject",
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(e.fault(), Whose::Transport);
    assert!(e.is_retryable() && !e.is_throttling(), "{e}");
    assert!(e.source().is_some());
    check_display(&e);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_objects_and_wrong_keys_are_the_objects_and_the_keys_fault() {
    let Some(server) = start(Kind::S3sFs) else {
        return;
    };
    let s3 = server.s3();
    s3.create_bucket().bucket("errs").send().await.unwrap();
    let c = client(&server.endpoint, keyring(WRAPPING));
    c.put_object()
        .bucket("errs")
        .key("t")
        .body(vec![3u8; 5000])
        .send()
        .await
        .unwrap();

    // Wrong key.
    let other = client(&server.endpoint, keyring([0x11; 32]));
    let e = match other.get_object().bucket("errs").key("t").send().await {
        Ok(out) => out.body.collect().await.unwrap_err(),
        Err(e) => e,
    };
    assert!(
        matches!(&e, Error::Crypto(s3crypt_core::Error::NoDecryptableKey(_))),
        "{e:?}"
    );
    assert_eq!(e.fault(), Whose::Key);
    assert!(!e.is_retryable());
    check_display(&e);

    // Tampered: one ciphertext bit flipped, metadata kept.
    let got = s3
        .get_object()
        .bucket("errs")
        .key("t")
        .send()
        .await
        .unwrap();
    let meta = got.metadata().cloned();
    let mut bytes = got.body.collect().await.unwrap().into_bytes().to_vec();
    let n = bytes.len();
    bytes[n - 40] ^= 1;
    s3.put_object()
        .bucket("errs")
        .key("t")
        .set_metadata(meta)
        .body(bytes.into())
        .send()
        .await
        .unwrap();
    let e = match c.get_object().bucket("errs").key("t").send().await {
        Ok(out) => out.body.collect().await.unwrap_err(),
        Err(e) => e,
    };
    assert!(
        matches!(&e, Error::Crypto(s3crypt_core::Error::Authentication)),
        "{e:?}"
    );
    assert_eq!(e.fault(), Whose::Object);
    assert!(!e.is_retryable());
    check_display(&e);

    // Caller misuse, and a missing object.
    let e = c.put_object().key("k").body("x").send().await.unwrap_err();
    assert_eq!((e.fault(), e.class()), (Whose::Caller, "invalid-argument"));
    let e = c
        .head_object()
        .bucket("errs")
        .key("missing")
        .send()
        .await
        .unwrap_err();
    assert!(matches!(&e, Error::NotFound { .. }), "{e:?}");
    assert_eq!(e.fault(), Whose::Caller);
    assert!(!e.is_retryable());
}

#[cfg(feature = "kms")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_throttling_is_a_retryable_key_error_with_kms_code() {
    use s3crypt_test_support::kms_proxy::{FaultProxy, Rule};
    let Some(server) = start(Kind::Moto) else {
        return;
    };
    server
        .s3()
        .create_bucket()
        .bucket("errs")
        .send()
        .await
        .unwrap();
    let arn = server
        .kms()
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .arn
        .unwrap();
    let rules = |op, code: &'static str| {
        vec![Rule {
            op,
            needle: String::new(),
            code,
            message: "injected by the test proxy".into(),
            times: None,
        }]
    };
    let kms_client = |endpoint: &str| {
        aws_sdk_kms::Client::from_conf(
            aws_sdk_kms::Config::builder()
                .behavior_version(aws_sdk_kms::config::BehaviorVersion::latest())
                .endpoint_url(endpoint)
                .region(aws_sdk_kms::config::Region::new("us-east-1"))
                .credentials_provider(aws_sdk_kms::config::Credentials::new(
                    "testing", "testing", None, None, "tests",
                ))
                .retry_config(
                    s3crypt_kms::recommended_retry_config()
                        .with_max_attempts(2)
                        .with_initial_backoff(Duration::from_millis(10)),
                )
                .build(),
        )
    };

    let throttled = FaultProxy::start(
        &server.endpoint,
        rules("GenerateDataKey", "ThrottlingException"),
    );
    let kms = s3crypt::KmsKeyring::new(kms_client(&throttled.endpoint), arn.clone()).unwrap();
    let c = Client::builder()
        .s3_client(server.s3())
        .keyring(kms)
        .build()
        .unwrap();
    let e = c
        .put_object()
        .bucket("errs")
        .key("k")
        .body("x")
        .send()
        .await
        .unwrap_err();
    let Error::Crypto(s3crypt_core::Error::Keyring(k)) = &e else {
        panic!("{e:?}")
    };
    assert_eq!(k.service_code(), Some("ThrottlingException"));
    assert_eq!(k.key(), Some(arn.as_str()));
    assert!(k.is_retryable() && k.is_throttling());
    assert!(k.source().is_some(), "the SDK error is kept");
    assert_eq!(e.fault(), Whose::Key);
    assert!(e.is_retryable() && e.is_throttling(), "{e}");
    assert_eq!(e.service_code(), Some("ThrottlingException"));
    assert!(throttled.count("GenerateDataKey").1 >= 2, "the SDK retried");
    assert_eq!(e.service_message(), Some("injected by the test proxy"));
    check_display(&e);

    // AccessDenied from KMS: the key's fault, final.
    let denied = FaultProxy::start(
        &server.endpoint,
        rules("GenerateDataKey", "AccessDeniedException"),
    );
    let kms = s3crypt::KmsKeyring::new(kms_client(&denied.endpoint), arn.clone()).unwrap();
    let c = Client::builder()
        .s3_client(server.s3())
        .keyring(kms)
        .build()
        .unwrap();
    let e = c
        .put_object()
        .bucket("errs")
        .key("k")
        .body("x")
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.service_code(), Some("AccessDeniedException"), "{e:?}");
    assert_eq!(e.fault(), Whose::Key);
    assert!(!e.is_retryable() && !e.is_throttling(), "{e}");
    check_display(&e);
}

/// No credentials: the request cannot be made, and trying again will not help. A refused
/// connection: retryable.
#[tokio::test]
async fn missing_credentials_are_final_a_refused_connection_is_not() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    drop(listener); // nothing listens there now
    #[derive(Debug)]
    struct NoCredentials;
    impl aws_sdk_s3::config::ProvideCredentials for NoCredentials {
        fn provide_credentials<'a>(
            &'a self,
        ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            aws_credential_types::provider::future::ProvideCredentials::ready(Err(
                aws_credential_types::provider::error::CredentialsError::not_loaded(
                    "no credentials in this environment",
                ),
            ))
        }
    }
    let no_creds = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .endpoint_url(&endpoint)
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .credentials_provider(NoCredentials)
            .force_path_style(true)
            .build(),
    );
    let c = Client::builder()
        .s3_client(no_creds)
        .keyring(keyring(WRAPPING))
        .build()
        .unwrap();
    let e = c
        .head_object()
        .bucket("b")
        .key("k")
        .send()
        .await
        .unwrap_err();
    assert!(!e.is_retryable(), "{e:?}");
    assert!(
        matches!(
            &e,
            Error::Transport {
                retryable: false,
                ..
            }
        ),
        "{e:?}"
    );
    check_display(&e);

    let refused = client(&endpoint, keyring(WRAPPING));
    let e = refused
        .head_object()
        .bucket("b")
        .key("k")
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(
            &e,
            Error::Transport {
                retryable: true,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.is_retryable());
    check_display(&e);
}
