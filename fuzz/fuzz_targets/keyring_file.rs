#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| s3crypt_core::fuzzing::keyring_file(data));
