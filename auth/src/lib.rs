//! Who is calling sessionfold, and what they may see.
//!
//! The producer and the projections both take `Authorization: Bearer <JWT>`.
//! This crate verifies the token ([`verify`]: an HMAC secret, an RSA, EC or
//! Ed25519 public key, or a JWKS chosen by `kid`, each with an allow-list of
//! algorithms), turns its claims into a [`Caller`] (read where the identity
//! provider puts them, see [`claims`]), and holds the scoping rules of who
//! may do what in one place ([`caller`]), so the ingest and the views cannot
//! disagree about who is an admin. [`args`] holds the command-line options;
//! a service started without a key refuses to start unless open mode is
//! asked for explicitly.

#[cfg(feature = "service")]
use axum::http::{StatusCode, header};
#[cfg(feature = "service")]
use axum::response::{IntoResponse, Response};

#[cfg(feature = "service")]
pub mod args;
pub mod caller;
pub mod claims;
#[cfg(feature = "service")]
mod extract;
#[cfg(feature = "service")]
mod keys;
#[cfg(feature = "service")]
pub mod verify;

#[cfg(feature = "service")]
pub use args::{AuthArgs, MIN_SECRET_BYTES, RoomRule, check_secret, is_url};
pub use caller::{Caller, Claims, RoomAccess};
pub use claims::{ClaimMap, Preset, Unmapped};
#[cfg(feature = "service")]
pub use keys::parse_algorithm;
#[cfg(feature = "service")]
pub use verify::{Authenticator, KeysHandle, LEEWAY_SECONDS, Policy, mint_hs256, mint_rs256};

/// Seconds since the Unix epoch, as JWT dates count them.
pub(crate) fn now_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Role of an administrator: sees and manages everything.
pub const ROLE_ADMIN: &str = "admin";
/// Role of a backend service: may emit events for any user.
pub const ROLE_SERVICE: &str = "service";
/// Permission to list everyone's presence.
pub const PERM_VIEW_ACTIVE_SESSIONS: &str = "USER_VIEW_ACTIVE_SESSIONS";
/// Permission to manage every import (see all, transfer).
pub const PERM_IMPORT_ADMIN: &str = "IMPORT_ADMIN";
/// The `aud` of a browser tab's end ticket; a bearer token never carries it.
pub const END_TICKET_AUDIENCE: &str = "sessionfold-end-ticket";
/// The `typ` header of an end ticket; a bearer token never carries it.
pub const END_TICKET_TYPE: &str = "sessionfold-end-ticket+jwt";

/// Why a request carries no acceptable identity (answered with 401), or why
/// the verifier could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header.
    #[error("missing bearer token")]
    Missing,
    /// The header is not `Bearer <token>`, or the token is not a JWT.
    #[error("malformed bearer token")]
    Malformed,
    /// The token's `exp` has passed.
    #[error("token expired")]
    Expired,
    /// The signature does not verify with the configured key.
    #[error("bad token signature")]
    BadSignature,
    /// A required claim is absent or invalid, or the algorithm is not allowed.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// The token names a key id the JWKS does not hold (yet): it is read
    /// again within `retry_after` seconds.
    #[error(
        "unknown key id (kid): the identity provider's keys are read again within {retry_after} s; retry then"
    )]
    UnknownKey {
        /// Seconds until the key set is read again.
        retry_after: u64,
    },
    /// The JWKS has not been read yet.
    #[error("no signing keys loaded yet; retry in {retry_after} s")]
    KeysPending {
        /// Seconds until the key set is read again.
        retry_after: u64,
    },
    /// The configured key could not be read or parsed.
    #[error("JWT key: {0}")]
    Key(String),
    /// Neither a secret nor a public key is configured, and open mode was not asked for.
    #[error(
        "no JWT secret or public key configured; set --jwt-secret or --jwt-public-key, or pass --auth-disabled to run open (unauthenticated)"
    )]
    NotConfigured,
}

#[cfg(feature = "service")]
impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let retry = match &self {
            AuthError::UnknownKey { retry_after } | AuthError::KeysPending { retry_after } => {
                Some(*retry_after)
            }
            _ => None,
        };
        let mut r = (
            StatusCode::UNAUTHORIZED,
            axum::Json(serde_json::json!({ "error": self.to_string() })),
        )
            .into_response();
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        if let Some(s) = retry {
            r.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(s));
        }
        r
    }
}

#[cfg(all(test, feature = "service"))]
mod tests;
