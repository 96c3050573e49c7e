//! Token verification: a bearer token's signature, algorithm, dates,
//! issuer and audience, then its identity read where the claim map says.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, EncodingKey, Header, Validation};
use serde_json::Value;

use crate::keys::{self, Key};
use crate::{AuthError, Caller, ClaimMap, Claims, END_TICKET_AUDIENCE, END_TICKET_TYPE};

/// Clock difference tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECONDS: u64 = 5;

/// The shortest time between two reads of a JWKS.
pub const JWKS_MIN_GAP: Duration = Duration::from_secs(10);

pub(crate) use crate::now_seconds;

/// A NumericDate claim (RFC 7519 §2: seconds, possibly with a fraction),
/// rounded up with `ceil` and down without: a decimal `exp` must not slip
/// past the checks an integer one meets.
fn numeric_date(v: Option<&Value>, ceil: bool) -> Option<u64> {
    let v = v?;
    if let Some(n) = v.as_u64() {
        return Some(n);
    }
    let f = v.as_f64().filter(|f| f.is_finite() && *f >= 0.0)?;
    // Seconds since the epoch fit a u64 long after any token expires.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Some(if ceil { f.ceil() } else { f.floor() } as u64)
}

enum Mode {
    Verify {
        keys: Arc<RwLock<Vec<Key>>>,
        refresh: Arc<Refresh>,
        validation: Box<Validation>,
    },
    Open,
}

/// When a JWKS was last read and whether a token asked for a new read.
#[derive(Debug, Default)]
struct Refresh {
    wanted: AtomicBool,
    loaded_at: Mutex<Option<Instant>>,
}

impl Refresh {
    fn loaded_at(&self) -> Option<Instant> {
        *self
            .loaded_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Seconds until the key set may be read again (at least 1).
    fn retry_after(&self) -> u64 {
        let since = self.loaded_at().map_or(JWKS_MIN_GAP, |t| t.elapsed());
        JWKS_MIN_GAP.saturating_sub(since).as_secs().max(1)
    }
}

/// Replaces the key set of a JWKS-backed verifier (see `edge::jwks`).
#[derive(Clone)]
pub struct KeysHandle {
    keys: Arc<RwLock<Vec<Key>>>,
    refresh: Arc<Refresh>,
    allowed: Arc<[Algorithm]>,
}

impl KeysHandle {
    /// Puts the usable keys of a JWKS document in place of the current ones;
    /// keys left out (encryption keys, unknown types) are logged in one line.
    pub fn replace(&self, jwks: &str) -> Result<usize, AuthError> {
        let (fresh, left_out) = keys::jwks(jwks, &self.allowed)?;
        if !left_out.is_empty() {
            tracing::info!(left_out = %left_out.join("; "), "JWKS keys that cannot verify signatures left out");
        }
        let n = fresh.len();
        *self
            .keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
        *self
            .refresh
            .loaded_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now());
        Ok(n)
    }

    /// Notes a read of the key set that failed, so the next one waits its turn.
    pub fn read_failed(&self) {
        *self
            .refresh
            .loaded_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now());
    }

    /// True (once) when a token named a key id the set does not hold and
    /// the set may be read again now; a request made too early stays
    /// pending until it may.
    pub fn take_refresh_request(&self) -> bool {
        self.take_refresh_request_at(Instant::now())
    }

    /// [`KeysHandle::take_refresh_request`] as seen at `now`.
    pub fn take_refresh_request_at(&self, now: Instant) -> bool {
        let due = self
            .refresh
            .loaded_at()
            .is_none_or(|t| now.saturating_duration_since(t) >= JWKS_MIN_GAP);
        due && self.refresh.wanted.swap(false, Ordering::SeqCst)
    }
}

/// What a token must satisfy beyond its signature and expiry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// `iss` must be one of these, when any is given.
    pub issuers: Vec<String>,
    /// `aud` must contain one of these, when any is given.
    pub audiences: Vec<String>,
    /// An `aud` may name one of these, but need not be present (a provider's
    /// usual audience, such as Supabase's `authenticated`).
    pub usual_audiences: Vec<String>,
    /// `exp` may lie at most this far after `iat` (or after now, without `iat`).
    pub max_lifetime: Option<Duration>,
}

/// Turns the `Authorization` header into a [`Caller`].
#[derive(Clone)]
pub struct Authenticator {
    mode: Arc<Mode>,
    max_lifetime: Option<u64>,
    claims: Arc<ClaimMap>,
    allowed: Arc<[Algorithm]>,
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

fn validation() -> Validation {
    let mut v = Validation::new(Algorithm::HS256);
    // `sub` and `exp` are what scoping stands on; a token without them is refused.
    v.set_required_spec_claims(&["exp", "sub"]);
    v.leeway = LEEWAY_SECONDS;
    // A token is not valid before its `nbf`, when it has one.
    v.validate_nbf = true;
    // RFC 7519 §4.1.3: a token whose `aud` does not name this service is
    // refused, so without a configured audience any `aud` is.
    v.validate_aud = true;
    v
}

impl Authenticator {
    fn with_keys(keys: Vec<Key>, allowed: &[Algorithm]) -> Authenticator {
        Authenticator {
            mode: Arc::new(Mode::Verify {
                keys: Arc::new(RwLock::new(keys)),
                refresh: Arc::default(),
                validation: Box::new(validation()),
            }),
            max_lifetime: None,
            claims: Arc::default(),
            allowed: allowed.into(),
        }
    }

    /// Verifies HS256 tokens signed with `secret`.
    pub fn hs256(secret: &[u8]) -> Authenticator {
        Authenticator::with_keys(vec![keys::secret(secret, &[])], &[])
    }

    /// Verifies tokens with a PEM public key: RS256 for RSA, ES256/ES384 for
    /// EC, EdDSA for Ed25519.
    pub fn rs256(public_key_pem: &[u8]) -> Result<Authenticator, AuthError> {
        Authenticator::public_key(public_key_pem, &[])
    }

    /// Verifies tokens with a secret, also accepting the other HMAC
    /// algorithms named in `allowed`.
    pub fn secret(secret: &[u8], allowed: &[Algorithm]) -> Authenticator {
        Authenticator::with_keys(vec![keys::secret(secret, allowed)], allowed)
    }

    /// Verifies tokens with a PEM public key, also accepting the algorithms
    /// of its family named in `allowed`.
    pub fn public_key(pem: &[u8], allowed: &[Algorithm]) -> Result<Authenticator, AuthError> {
        Ok(Authenticator::with_keys(
            vec![keys::public_pem(pem, allowed)?],
            allowed,
        ))
    }

    /// Verifies tokens with the keys of a JWKS document, chosen by `kid`.
    pub fn jwks(document: &str) -> Result<Authenticator, AuthError> {
        Authenticator::jwks_allowing(document, &[])
    }

    /// Like [`Authenticator::jwks`], also accepting the algorithms named in
    /// `allowed` for keys that declare none.
    pub fn jwks_allowing(
        document: &str,
        allowed: &[Algorithm],
    ) -> Result<Authenticator, AuthError> {
        let auth = Authenticator::jwks_pending(allowed);
        if let Some(h) = auth.keys_handle() {
            h.replace(document)?;
        }
        Ok(auth)
    }

    /// A verifier whose keys arrive later through [`Authenticator::keys_handle`]
    /// (a JWKS fetched from a URL); tokens are refused until then.
    pub fn jwks_pending(allowed: &[Algorithm]) -> Authenticator {
        Authenticator::with_keys(Vec::new(), allowed)
    }

    /// The handle that replaces this verifier's keys; `None` in open mode.
    pub fn keys_handle(&self) -> Option<KeysHandle> {
        match &*self.mode {
            Mode::Verify { keys, refresh, .. } => Some(KeysHandle {
                keys: keys.clone(),
                refresh: refresh.clone(),
                allowed: self.allowed.clone(),
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
            allowed: Arc::new([]),
        }
    }

    /// The same verifier, also holding tokens to `policy`.
    pub fn with_policy(self, policy: &Policy) -> Authenticator {
        let mode = self.validating(|v| {
            if !policy.issuers.is_empty() {
                v.set_issuer(&policy.issuers);
                v.required_spec_claims.insert("iss".into());
            }
            let accepted: Vec<&String> = policy
                .audiences
                .iter()
                .chain(&policy.usual_audiences)
                .collect();
            if !accepted.is_empty() {
                v.set_audience(&accepted);
            }
            if !policy.audiences.is_empty() {
                v.required_spec_claims.insert("aud".into());
            }
        });
        Authenticator {
            mode: Arc::new(mode),
            max_lifetime: policy.max_lifetime.map(|d| d.as_secs()),
            ..self
        }
    }

    /// The verifying mode with its validation changed by `change`.
    fn validating(&self, change: impl FnOnce(&mut Validation)) -> Mode {
        match &*self.mode {
            Mode::Verify {
                keys,
                refresh,
                validation,
            } => {
                let mut v = (**validation).clone();
                change(&mut v);
                Mode::Verify {
                    keys: keys.clone(),
                    refresh: refresh.clone(),
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
            claims: Arc::new(map),
            ..self
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

    /// The claims of a token whose signature, algorithm and dates verify.
    fn decode(&self, token: &str) -> Result<(Header, Value), AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(classify)?;
        let Mode::Verify {
            keys,
            refresh,
            validation,
        } = &*self.mode
        else {
            let claims = jsonwebtoken::dangerous::insecure_decode::<Value>(token)
                .map_err(classify)?
                .claims;
            return Ok((header, claims));
        };
        let keys = keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut v = (**validation).clone();
        v.algorithms = vec![header.alg];
        let mut outcome = None;
        for k in keys::candidates(&keys, header.kid.as_deref(), header.alg) {
            let r = jsonwebtoken::decode::<Value>(token, &k.key, &v);
            let done = r.is_ok();
            outcome = Some(r);
            if done {
                break;
            }
        }
        let known_kid = |kid: &str| keys.iter().any(|k| k.kid.as_deref() == Some(kid));
        match outcome {
            Some(r) => Ok((header, r.map_err(classify)?.claims)),
            None if keys.is_empty() => {
                refresh.wanted.store(true, Ordering::SeqCst);
                Err(AuthError::KeysPending {
                    retry_after: refresh.retry_after(),
                })
            }
            // A key id the set does not hold: the provider may have rotated
            // its keys since they were read.
            None if header.kid.as_deref().is_some_and(|k| !known_kid(k)) => {
                refresh.wanted.store(true, Ordering::SeqCst);
                Err(AuthError::UnknownKey {
                    retry_after: refresh.retry_after(),
                })
            }
            None => Err(AuthError::Invalid("unexpected signing algorithm".into())),
        }
    }

    /// The caller named by a bare token.
    pub fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        let (header, claims) = self.decode(token)?;
        // An end ticket opens one door, ending one session; it is never a
        // bearer token, whatever key signed it.
        let names_ticket = match claims.get("aud") {
            Some(Value::String(a)) => a == END_TICKET_AUDIENCE,
            Some(Value::Array(a)) => a.iter().any(|x| x == END_TICKET_AUDIENCE),
            _ => false,
        };
        if names_ticket || header.typ.as_deref() == Some(END_TICKET_TYPE) {
            return Err(AuthError::Invalid(
                "an end ticket is not a bearer token".into(),
            ));
        }
        let exp = numeric_date(claims.get("exp"), true);
        let iat = numeric_date(claims.get("iat"), false);
        if self.is_open()
            && let Some(exp) = exp
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
            rooms: self.claims.room_access(&claims),
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
        ErrorKind::InvalidClaimFormat(c) => AuthError::Invalid(format!("claim {c} is not valid")),
        ErrorKind::InvalidAlgorithm => AuthError::Invalid("unexpected signing algorithm".into()),
        ErrorKind::ImmatureSignature => AuthError::Invalid("token not valid yet (nbf)".into()),
        ErrorKind::InvalidIssuer => AuthError::Invalid("issuer not accepted".into()),
        ErrorKind::InvalidAudience => AuthError::Invalid(
            "audience not accepted: the token's aud does not name this service (see --jwt-audience)"
                .into(),
        ),
        other => AuthError::Invalid(format!("{other:?}")),
    }
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
