//! Who is calling sessionfold, and what they may see.
//!
//! The producer and the projections both take `Authorization: Bearer <JWT>`.
//! This crate verifies the token (an HMAC secret, an RSA, EC or Ed25519
//! public key, or a JWKS chosen by `kid`), turns its claims into a [`Caller`] (read where the identity
//! provider puts them, see [`claims`]), and holds the scoping rules
//! of the contract (docs/contract.md §5) in one place, so the ingest and the views cannot
//! disagree about who is an admin. A service started without a key refuses to
//! start unless open mode is asked for explicitly.

use std::path::Path;
use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

pub mod claims;
mod keys;
pub use claims::{ClaimMap, Preset};

/// Role of an administrator: sees and manages everything.
pub const ROLE_ADMIN: &str = "admin";
/// Role of a backend service: may emit events for any user.
pub const ROLE_SERVICE: &str = "service";
/// Permission to list everyone's presence.
pub const PERM_VIEW_ACTIVE_SESSIONS: &str = "USER_VIEW_ACTIVE_SESSIONS";
/// Permission to manage every import (see all, transfer).
pub const PERM_IMPORT_ADMIN: &str = "IMPORT_ADMIN";

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
    /// A required claim is absent or invalid, or the algorithm is not the configured one.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// The configured key could not be read or parsed.
    #[error("JWT key: {0}")]
    Key(String),
    /// Neither a secret nor a public key is configured, and open mode was not asked for.
    #[error(
        "no JWT secret or public key configured; set --jwt-secret or --jwt-public-key, or pass --auth-disabled to run open (unauthenticated)"
    )]
    NotConfigured,
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let mut r = (
            StatusCode::UNAUTHORIZED,
            axum::Json(serde_json::json!({ "error": self.to_string() })),
        )
            .into_response();
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        r
    }
}

/// The claims sessionfold reads from a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// Roles, such as `admin` or `service`.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Permissions, such as `USER_VIEW_ACTIVE_SESSIONS` or `IMPORT_ADMIN`.
    #[serde(default)]
    pub permissions: Vec<String>,
    /// Expiry, seconds since the epoch; required when verifying.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
    /// Issued at, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
}

impl Claims {
    /// Claims for `sub` that expire `ttl` from now.
    pub fn expiring_in(
        sub: impl Into<String>,
        roles: Vec<String>,
        permissions: Vec<String>,
        ttl: std::time::Duration,
    ) -> Claims {
        Claims {
            sub: sub.into(),
            roles,
            permissions,
            exp: Some(now_seconds().saturating_add(ttl.as_secs())),
            iat: Some(now_seconds()),
        }
    }
}

/// The identity behind a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller {
    /// The token's `sub`.
    pub user_id: String,
    /// The token's roles.
    pub roles: Vec<String>,
    /// The token's permissions.
    pub permissions: Vec<String>,
    /// When the token expires (seconds since the epoch); a stream opened
    /// with it closes then.
    pub expires_at: Option<u64>,
}

impl Caller {
    /// The caller of open mode when no token is sent: may do everything.
    pub fn anonymous() -> Caller {
        Caller {
            user_id: "anonymous".into(),
            roles: vec![ROLE_ADMIN.into(), ROLE_SERVICE.into()],
            permissions: Vec::new(),
            expires_at: None,
        }
    }

    fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    fn has_permission(&self, p: &str) -> bool {
        self.permissions.iter().any(|x| x == p)
    }

    /// Has the `admin` role.
    pub fn is_admin(&self) -> bool {
        self.has_role(ROLE_ADMIN)
    }

    /// Has the `service` role.
    pub fn is_service(&self) -> bool {
        self.has_role(ROLE_SERVICE)
    }

    /// May emit events in the name of `user_id`: only for itself, unless a service.
    pub fn may_act_for(&self, user_id: &str) -> bool {
        self.is_service() || self.user_id == user_id
    }

    /// May transfer an import to another owner.
    pub fn may_transfer_imports(&self) -> bool {
        self.is_admin() || self.is_service() || self.has_permission(PERM_IMPORT_ADMIN)
    }

    /// May act on any import, whoever owns it: admin, service or `IMPORT_ADMIN`.
    pub fn acts_on_any_import(&self) -> bool {
        self.may_transfer_imports()
    }

    /// The authority the ingest vouches for when this caller emits an import
    /// event: `admin`, `service`, `import_admin`, or `owner` (only its own imports).
    pub fn import_role(&self) -> &'static str {
        if self.is_admin() {
            "admin"
        } else if self.is_service() {
            "service"
        } else if self.has_permission(PERM_IMPORT_ADMIN) {
            "import_admin"
        } else {
            "owner"
        }
    }

    /// May see every user's presence (the active list and the summary).
    pub fn sees_all_presence(&self) -> bool {
        self.is_admin() || self.is_service() || self.has_permission(PERM_VIEW_ACTIVE_SESSIONS)
    }

    /// May see one user's presence.
    pub fn sees_presence_of(&self, user_id: &str) -> bool {
        self.sees_all_presence() || self.user_id == user_id
    }

    /// May see every import, legacy ones included, and the import monitor.
    pub fn sees_all_imports(&self) -> bool {
        self.is_admin() || self.is_service() || self.has_permission(PERM_IMPORT_ADMIN)
    }

    /// May see an import owned by `owner` (`None`: a legacy import).
    pub fn sees_import_of(&self, owner: Option<&str>) -> bool {
        self.sees_all_imports() || owner == Some(self.user_id.as_str())
    }
}

enum Mode {
    Verify {
        keys: Arc<std::sync::RwLock<Vec<keys::Key>>>,
        /// Asked for when a token names a key id not in the set.
        want_refresh: Arc<std::sync::atomic::AtomicBool>,
        validation: Box<Validation>,
    },
    Open,
}

/// Replaces the key set of a JWKS-backed verifier (see `edge::jwks`).
#[derive(Clone)]
pub struct KeysHandle {
    keys: Arc<std::sync::RwLock<Vec<keys::Key>>>,
    want_refresh: Arc<std::sync::atomic::AtomicBool>,
}

impl KeysHandle {
    /// Puts the keys of a JWKS document in place of the current ones.
    pub fn replace(&self, jwks: &str) -> Result<usize, AuthError> {
        let fresh = keys::jwks(jwks)?;
        let n = fresh.len();
        *self
            .keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
        Ok(n)
    }

    /// True (once) when a token named a key id the set does not hold.
    pub fn take_refresh_request(&self) -> bool {
        self.want_refresh
            .swap(false, std::sync::atomic::Ordering::SeqCst)
    }
}

/// What a token must satisfy beyond its signature and expiry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// `iss` must be one of these, when any is given.
    pub issuers: Vec<String>,
    /// `aud` must contain one of these, when any is given.
    pub audiences: Vec<String>,
    /// `exp` may lie at most this far after `iat` (or after now, without `iat`).
    pub max_lifetime: Option<std::time::Duration>,
}

/// Turns the `Authorization` header into a [`Caller`].
#[derive(Clone)]
pub struct Authenticator {
    mode: Arc<Mode>,
    max_lifetime: Option<u64>,
    claims: Arc<ClaimMap>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match *self.mode {
            Mode::Verify { .. } => "verify",
            Mode::Open => "open",
        };
        f.debug_struct("Authenticator")
            .field("mode", &mode)
            .finish()
    }
}

/// Clock difference tolerated on `exp`.
const LEEWAY_SECONDS: u64 = 5;

fn now_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn validation(alg: Algorithm) -> Validation {
    let mut v = Validation::new(alg);
    // `sub` and `exp` are what scoping stands on; a token without them is refused.
    v.set_required_spec_claims(&["exp", "sub"]);
    v.leeway = LEEWAY_SECONDS;
    // A token is not valid before its `nbf`, when it has one.
    v.validate_nbf = true;
    // An `aud` is only checked against configured audiences: identity
    // providers put one in every token (Supabase: "authenticated").
    v.validate_aud = false;
    v
}

impl Authenticator {
    fn with_keys(keys: Vec<keys::Key>) -> Authenticator {
        Authenticator {
            mode: Arc::new(Mode::Verify {
                keys: Arc::new(std::sync::RwLock::new(keys)),
                want_refresh: Arc::default(),
                validation: Box::new(validation(Algorithm::HS256)),
            }),
            max_lifetime: None,
            claims: Arc::default(),
        }
    }

    /// Verifies HMAC tokens (HS256, HS384, HS512) signed with `secret`.
    pub fn hs256(secret: &[u8]) -> Authenticator {
        Authenticator::with_keys(vec![keys::secret(secret)])
    }

    /// Verifies tokens with a PEM public key: RSA (RS256/384/512,
    /// PS256/384/512), EC (ES256, ES384) or Ed25519 (EdDSA).
    pub fn rs256(public_key_pem: &[u8]) -> Result<Authenticator, AuthError> {
        Ok(Authenticator::with_keys(vec![keys::public_pem(
            public_key_pem,
        )?]))
    }

    /// Verifies tokens with the keys of a JWKS document, chosen by `kid`.
    pub fn jwks(document: &str) -> Result<Authenticator, AuthError> {
        Ok(Authenticator::with_keys(keys::jwks(document)?))
    }

    /// A verifier whose keys arrive later through [`Authenticator::keys_handle`]
    /// (a JWKS fetched from a URL); tokens are refused until then.
    pub fn jwks_pending() -> Authenticator {
        Authenticator::with_keys(Vec::new())
    }

    /// The handle that replaces this verifier's keys; `None` in open mode.
    pub fn keys_handle(&self) -> Option<KeysHandle> {
        match &*self.mode {
            Mode::Verify {
                keys, want_refresh, ..
            } => Some(KeysHandle {
                keys: keys.clone(),
                want_refresh: want_refresh.clone(),
            }),
            Mode::Open => None,
        }
    }

    /// Open mode: no token means full access; a token's claims are read
    /// without checking its signature, so scoping can still be tried out.
    pub fn open() -> Authenticator {
        Authenticator {
            mode: Arc::new(Mode::Open),
            max_lifetime: None,
            claims: Arc::default(),
        }
    }

    /// The same verifier, also holding tokens to `policy`.
    pub fn with_policy(self, policy: &Policy) -> Authenticator {
        let mode = self.validating(|v| {
            if !policy.issuers.is_empty() {
                v.set_issuer(&policy.issuers);
                v.required_spec_claims.insert("iss".into());
            }
            if !policy.audiences.is_empty() {
                v.validate_aud = true;
                v.set_audience(&policy.audiences);
                v.required_spec_claims.insert("aud".into());
            }
        });
        Authenticator {
            mode: Arc::new(mode),
            max_lifetime: policy.max_lifetime.map(|d| d.as_secs()),
            claims: self.claims,
        }
    }

    /// The verifying mode with its validation changed by `change`.
    fn validating(&self, change: impl FnOnce(&mut Validation)) -> Mode {
        match &*self.mode {
            Mode::Verify {
                keys,
                want_refresh,
                validation,
            } => {
                let mut v = (**validation).clone();
                change(&mut v);
                Mode::Verify {
                    keys: keys.clone(),
                    want_refresh: want_refresh.clone(),
                    validation: Box::new(v),
                }
            }
            Mode::Open => Mode::Open,
        }
    }

    /// The same verifier, reading the identity where `map` says.
    pub fn with_claims(self, map: ClaimMap) -> Authenticator {
        let mode = self.validating(|v| {
            // The user id is checked where the map reads it.
            if map.user != "sub" {
                v.required_spec_claims.remove("sub");
            }
        });
        Authenticator {
            mode: Arc::new(mode),
            max_lifetime: self.max_lifetime,
            claims: Arc::new(map),
        }
    }

    /// Builds the verifier the options ask for.
    pub fn from_args(args: &AuthArgs) -> Result<Authenticator, AuthError> {
        let policy = Policy {
            issuers: args.jwt_issuer.clone(),
            audiences: args.jwt_audience.clone(),
            max_lifetime: args.jwt_max_lifetime,
        };
        let mut map = ClaimMap::preset(args.jwt_claims);
        if let Some(user) = &args.jwt_user_claim {
            map.user.clone_from(user);
        }
        if !args.jwt_roles_claim.is_empty() {
            map.roles.clone_from(&args.jwt_roles_claim);
        }
        if !args.jwt_permissions_claim.is_empty() {
            map.permissions.clone_from(&args.jwt_permissions_claim);
        }
        map.names.extend(args.jwt_role_map.iter().cloned());
        Ok(Authenticator::from_key_args(args)?
            .with_policy(&policy)
            .with_claims(map))
    }

    fn from_key_args(args: &AuthArgs) -> Result<Authenticator, AuthError> {
        if let Some(source) = &args.jwt_jwks {
            if args.jwt_secret.is_some() || args.jwt_public_key.is_some() {
                return Err(AuthError::Key(
                    "set one of --jwt-secret, --jwt-public-key and --jwt-jwks".into(),
                ));
            }
            if is_url(source) {
                return Ok(Authenticator::jwks_pending());
            }
            let text = std::fs::read_to_string(source)
                .map_err(|e| AuthError::Key(format!("reading JWKS file {source}: {e}")))?;
            return Authenticator::jwks(&text);
        }
        match (&args.jwt_secret, &args.jwt_public_key, args.auth_disabled) {
            (Some(_), Some(_), _) => Err(AuthError::Key(
                "set either --jwt-secret or --jwt-public-key, not both".into(),
            )),
            (Some(secret), None, _) if secret.is_empty() => {
                Err(AuthError::Key("the JWT secret is empty".into()))
            }
            (Some(secret), None, _) => Ok(Authenticator::hs256(secret.as_bytes())),
            (None, Some(key), _) => Authenticator::rs256(&read_pem(key)?),
            (None, None, true) => {
                tracing::warn!(
                    "AUTHENTICATION IS DISABLED (--auth-disabled): every request without a token acts as an admin and token signatures are not checked; never expose this service"
                );
                Ok(Authenticator::open())
            }
            (None, None, false) => Err(AuthError::NotConfigured),
        }
    }

    /// True in open mode.
    pub fn is_open(&self) -> bool {
        matches!(*self.mode, Mode::Open)
    }

    /// The caller named by an `Authorization` header value (or its absence).
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Caller, AuthError> {
        let token = match authorization {
            None if self.is_open() => return Ok(Caller::anonymous()),
            None => return Err(AuthError::Missing),
            Some(h) => bearer(h)?,
        };
        self.verify(token)
    }

    /// The caller named by a bare token.
    pub fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        let decoded = match &*self.mode {
            Mode::Verify {
                keys,
                want_refresh,
                validation,
            } => {
                let header = jsonwebtoken::decode_header(token).map_err(classify)?;
                let keys = keys
                    .read()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let mut v = (**validation).clone();
                v.algorithms = vec![header.alg];
                let mut outcome = None;
                for k in keys::candidates(&keys, header.kid.as_deref(), header.alg) {
                    let r = jsonwebtoken::decode::<serde_json::Value>(token, &k.key, &v);
                    let done = r.is_ok();
                    outcome = Some(r);
                    if done {
                        break;
                    }
                }
                let known_kid = |kid: &str| keys.iter().any(|k| k.kid.as_deref() == Some(kid));
                match outcome {
                    Some(r) => r,
                    None if keys.is_empty() => {
                        want_refresh.store(true, std::sync::atomic::Ordering::SeqCst);
                        return Err(AuthError::Invalid("no signing keys loaded yet".into()));
                    }
                    // A key id the set does not hold: the provider may have
                    // rotated its keys since they were read.
                    None if header.kid.as_deref().is_some_and(|k| !known_kid(k)) => {
                        want_refresh.store(true, std::sync::atomic::Ordering::SeqCst);
                        return Err(AuthError::Invalid("unknown key id (kid)".into()));
                    }
                    None => {
                        return Err(AuthError::Invalid("unexpected signing algorithm".into()));
                    }
                }
            }
            Mode::Open => jsonwebtoken::dangerous::insecure_decode::<serde_json::Value>(token),
        };
        let claims = decoded.map_err(classify)?.claims;
        let exp = claims.get("exp").and_then(serde_json::Value::as_u64);
        let iat = claims.get("iat").and_then(serde_json::Value::as_u64);
        if let Some(exp) = exp
            && self.is_open()
            && exp + LEEWAY_SECONDS < now_seconds()
        {
            return Err(AuthError::Expired);
        }
        let (user_id, roles, permissions) = self
            .claims
            .read(&claims)
            .ok_or_else(|| AuthError::Invalid(format!("missing claim {}", self.claims.user)))?;
        if user_id.trim().is_empty() {
            return Err(AuthError::Invalid("empty sub".into()));
        }
        if let (Some(max), Some(exp)) = (self.max_lifetime, exp) {
            let from = iat.unwrap_or_else(now_seconds);
            if exp.saturating_sub(from) > max.saturating_add(LEEWAY_SECONDS) {
                return Err(AuthError::Invalid(format!(
                    "token lifetime over the accepted {max} s"
                )));
            }
        }
        Ok(Caller {
            user_id,
            roles,
            permissions,
            expires_at: exp,
        })
    }
}

fn bearer(header_value: &str) -> Result<&str, AuthError> {
    let (scheme, token) = header_value
        .trim()
        .split_once(' ')
        .ok_or(AuthError::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(AuthError::Malformed);
    }
    Ok(token.trim())
}

fn classify(e: jsonwebtoken::errors::Error) -> AuthError {
    match e.kind() {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::InvalidSignature => AuthError::BadSignature,
        ErrorKind::InvalidToken
        | ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_) => AuthError::Malformed,
        ErrorKind::MissingRequiredClaim(c) => AuthError::Invalid(format!("missing claim {c}")),
        ErrorKind::InvalidAlgorithm => AuthError::Invalid("unexpected signing algorithm".into()),
        ErrorKind::ImmatureSignature => AuthError::Invalid("token not valid yet (nbf)".into()),
        ErrorKind::InvalidIssuer => AuthError::Invalid("issuer not accepted".into()),
        ErrorKind::InvalidAudience => AuthError::Invalid("audience not accepted".into()),
        other => AuthError::Invalid(format!("{other:?}")),
    }
}

/// True when a JWKS source is fetched over HTTP rather than read from a file.
pub fn is_url(source: &str) -> bool {
    source.starts_with("http://") || source.starts_with("https://")
}

/// Reads a PEM key given inline or as a file path.
fn read_pem(value: &str) -> Result<Vec<u8>, AuthError> {
    if value.trim_start().starts_with("-----BEGIN") {
        return Ok(value.as_bytes().to_vec());
    }
    std::fs::read(Path::new(value))
        .map_err(|e| AuthError::Key(format!("reading public key file {value}: {e}")))
}

/// Token options of the HTTP services.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AuthArgs {
    /// HS256 secret that signs the tokens.
    #[arg(long, env = "SESSIONFOLD_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Public key (RSA, EC or Ed25519), as PEM text or the path of a PEM file.
    #[arg(long, env = "SESSIONFOLD_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<String>,
    /// A JWKS (the identity provider's signing keys, chosen by `kid`), as a
    /// file or an http(s) URL; read again every `--jwt-jwks-refresh` and when
    /// a token names an unknown key (at most every 10 s).
    #[arg(long, env = "SESSIONFOLD_JWT_JWKS")]
    pub jwt_jwks: Option<String>,
    /// How often the JWKS is read again.
    #[arg(long, env = "SESSIONFOLD_JWT_JWKS_REFRESH", default_value = "10m", value_parser = humantime::parse_duration)]
    pub jwt_jwks_refresh: std::time::Duration,
    /// Run without authentication: requests without a token may do everything. For local experiments only.
    #[arg(long, env = "SESSIONFOLD_AUTH_DISABLED")]
    pub auth_disabled: bool,
    /// Accepted token issuer (`iss`); repeat for several. Unset: not checked.
    #[arg(long, env = "SESSIONFOLD_JWT_ISSUER", value_delimiter = ',')]
    pub jwt_issuer: Vec<String>,
    /// Accepted token audience (`aud`); repeat for several. Unset: not checked.
    #[arg(long, env = "SESSIONFOLD_JWT_AUDIENCE", value_delimiter = ',')]
    pub jwt_audience: Vec<String>,
    /// Longest accepted token lifetime (`exp` minus `iat`, or minus now
    /// without `iat`), e.g. `24h`. Unset: any.
    #[arg(long, env = "SESSIONFOLD_JWT_MAX_LIFETIME", value_parser = humantime::parse_duration)]
    pub jwt_max_lifetime: Option<std::time::Duration>,
    /// Where the identity provider puts the user id, roles and permissions
    /// (see the README); the options below change single paths of it.
    #[arg(long, env = "SESSIONFOLD_JWT_CLAIMS", value_enum, default_value_t = Preset::Sessionfold)]
    pub jwt_claims: Preset,
    /// Path of the user id claim, dot-separated into nested objects (a claim
    /// whose own name has dots is found first).
    #[arg(long, env = "SESSIONFOLD_JWT_USER_CLAIM")]
    pub jwt_user_claim: Option<String>,
    /// Path of a roles claim (an array, or names separated by spaces); repeat
    /// for several. Replaces the preset's.
    #[arg(long, env = "SESSIONFOLD_JWT_ROLES_CLAIM", value_delimiter = ',')]
    pub jwt_roles_claim: Vec<String>,
    /// Path of a permissions claim; repeat for several. Replaces the preset's.
    #[arg(long, env = "SESSIONFOLD_JWT_PERMISSIONS_CLAIM", value_delimiter = ',')]
    pub jwt_permissions_claim: Vec<String>,
    /// `VALUE=ROLE`: a role value of the token that means sessionfold's
    /// `admin` or `service`, or a permission (e.g. `ops=admin`,
    /// `presence-viewer=USER_VIEW_ACTIVE_SESSIONS`); repeat for several.
    #[arg(long, env = "SESSIONFOLD_JWT_ROLE_MAP", value_delimiter = ',', value_parser = claims::parse_role_map)]
    pub jwt_role_map: Vec<(String, String)>,
}

/// Signs an HS256 token; for tools, tests and local runs.
pub fn mint_hs256(secret: &[u8], claims: &Claims) -> Result<String, AuthError> {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .map_err(|e| AuthError::Key(e.to_string()))
}

/// Signs an RS256 token with a PEM-encoded RSA private key; for tools and tests.
pub fn mint_rs256(private_key_pem: &[u8], claims: &Claims) -> Result<String, AuthError> {
    let key = EncodingKey::from_rsa_pem(private_key_pem)
        .map_err(|e| AuthError::Key(format!("not an RSA private key in PEM form ({e})")))?;
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), claims, &key)
        .map_err(|e| AuthError::Key(e.to_string()))
}

impl<S> FromRequestParts<S> for Caller
where
    Authenticator: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Caller, AuthError> {
        let auth = Authenticator::from_ref(state);
        let header = match parts.headers.get(header::AUTHORIZATION) {
            None => None,
            Some(v) => Some(v.to_str().map_err(|_| AuthError::Malformed)?),
        };
        auth.authenticate(header)
    }
}

#[cfg(test)]
mod tests;
