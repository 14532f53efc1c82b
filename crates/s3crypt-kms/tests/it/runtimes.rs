//! The synchronous keyring called from every kind of thread and runtime, and `from_env`.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
use s3crypt_core::{DecryptOptions, Keyring};
use s3crypt_kms::KmsKeyring;

use crate::fault::FaultProxy;
use crate::kms::*;

/// Encrypts and decrypts once with `k` (blocking the calling thread).
fn round_trip(k: &Arc<dyn Keyring>, n: usize) {
    let pt = pattern(n);
    let ct = encrypt(
        k.as_ref(),
        &opts_with_context(&[("n", &n.to_string())]),
        &pt,
    );
    assert_eq!(
        decrypt(k.clone(), &DecryptOptions::default(), &ct).unwrap(),
        pt
    );
}

/// Runs `f` on a thread and fails instead of hanging if it takes more than a minute.
fn within_a_minute(f: impl FnOnce() + Send + 'static) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        f();
        let _ = tx.send(());
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the keyring call deadlocked or panicked");
}

#[test]
fn from_spawn_blocking_on_current_thread_and_multi_thread_runtimes() {
    let Some(kms) = Kms::start() else { return };
    let a = kms.create_key(HOME);
    let k: Arc<dyn Keyring> = Arc::new(kms.strict(&a));
    for multi_thread in [false, true] {
        let k = k.clone();
        within_a_minute(move || {
            let rt = if multi_thread {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .unwrap()
            } else {
                rt()
            };
            rt.block_on(async {
                let tasks: Vec<_> = (0..4)
                    .map(|i| {
                        let k = k.clone();
                        tokio::task::spawn_blocking(move || round_trip(&k, 100 * i))
                    })
                    .collect();
                for t in tasks {
                    t.await.unwrap();
                }
            });
        });
    }
}

#[test]
fn directly_inside_an_async_task_on_a_current_thread_runtime() {
    // Blocking an async task is a misuse, but it must complete, not deadlock: the KMS requests run
    // on the keyring's own runtime, over its own connections. The client here was used on the
    // caller's runtime first, through a server that keeps connections alive, so its pool holds a
    // connection driven by that runtime (blocked while the keyring waits), and it has no timeouts
    // that would eventually give up on such a connection.
    let Some(kms) = Kms::start() else { return };
    let a = kms.create_key(HOME);
    let proxy = FaultProxy::start(&kms.server.endpoint, Vec::new());
    let endpoint = proxy.endpoint.clone();
    within_a_minute(move || {
        let rt = rt();
        rt.block_on(async move {
            let client = aws_sdk_kms::Client::from_conf(
                aws_sdk_kms::Config::builder()
                    .behavior_version(BehaviorVersion::latest())
                    .endpoint_url(&endpoint)
                    .region(Region::new(HOME))
                    .credentials_provider(Credentials::new("testing", "testing", None, None, "t"))
                    .build(),
            );
            client.list_keys().send().await.unwrap();
            let k: Arc<dyn Keyring> = Arc::new(KmsKeyring::new(client, &a).unwrap());
            round_trip(&k, 10);
        });
    });
    assert_eq!(proxy.count("ListKeys"), (1, 0));
    assert_eq!(proxy.count("GenerateDataKey"), (1, 0));
}

#[test]
fn from_many_plain_threads_at_once() {
    let Some(kms) = Kms::start() else { return };
    let (a, b) = (kms.create_key(HOME), kms.create_key("eu-west-1"));
    let k = multi(vec![Box::new(kms.strict(&a)), Box::new(kms.strict(&b))]);
    within_a_minute(move || {
        std::thread::scope(|s| {
            for i in 0..8 {
                let k = k.clone();
                s.spawn(move || round_trip(&k, i * 1000));
            }
        });
    });
}

/// Child side of [`from_env_reads_the_standard_aws_environment`], which runs it in a process of
/// its own with the environment set (does nothing without it).
#[test]
#[ignore = "run by from_env_reads_the_standard_aws_environment in a child process"]
fn from_env_child() {
    let Ok(arn) = std::env::var("S3CRYPT_KMS_TEST_CHILD_ARN") else {
        return;
    };
    // Synchronous callers.
    let client = s3crypt_kms::client_from_env_blocking().unwrap();
    let k: Arc<dyn Keyring> = Arc::new(KmsKeyring::new(client, &arn).unwrap());
    round_trip(&k, 1000);
    // Async callers, strict and discovery.
    rt().block_on(async {
        let strict = Arc::new(KmsKeyring::from_env(&arn).await.unwrap());
        let discovery: Arc<dyn Keyring> =
            Arc::new(KmsKeyring::discovery_from_env(None).await.unwrap());
        let ct = tokio::task::spawn_blocking(move || {
            encrypt(strict.as_ref(), &Default::default(), b"from env")
        })
        .await
        .unwrap();
        let pt = tokio::task::spawn_blocking(move || {
            decrypt(discovery, &DecryptOptions::default(), &ct).unwrap()
        })
        .await
        .unwrap();
        assert_eq!(pt, b"from env");
    });
    println!("from_env child: ok");
}

#[test]
fn from_env_reads_the_standard_aws_environment() {
    let Some(kms) = Kms::start() else { return };
    let a = kms.create_key(HOME);
    let dir = tempfile::tempdir().unwrap();
    let none = dir.path().join("none");
    kms.record();
    // A child process, so that the environment is set before anything reads it.
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "runtimes::from_env_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("S3CRYPT_KMS_TEST_CHILD_ARN", &a)
        // The service-specific endpoint variable (AWS_ENDPOINT_URL would do too).
        .env("AWS_ENDPOINT_URL_KMS", &kms.server.endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", HOME)
        .env("AWS_CONFIG_FILE", &none)
        .env("AWS_SHARED_CREDENTIALS_FILE", &none)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("from_env child: ok"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The child really talked to this moto.
    assert_eq!(kms.calls_to("GenerateDataKey").len(), 2);
    assert_eq!(kms.calls_to("Decrypt").len(), 2);
}
