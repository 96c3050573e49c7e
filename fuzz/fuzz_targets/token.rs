//! Any `Authorization` header: verification never panics, and only a token
//! signed with the secret is accepted.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sessionfold_auth::Authenticator;

fuzz_target!(|data: &[u8]| {
    let Ok(header) = std::str::from_utf8(data) else {
        return;
    };
    let strict = Authenticator::hs256(b"fuzz-secret");
    if let Ok(caller) = strict.authenticate(Some(header)) {
        // Accepting a token the fuzzer made up means forging a signature.
        panic!("a made-up token was accepted: {caller:?}");
    }
    let _ = Authenticator::open().authenticate(Some(header));
});
