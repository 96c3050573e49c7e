//! The keys tokens are verified with: a shared secret, a public key in PEM
//! form, or a JWKS of several keys named by `kid`, as identity providers
//! publish them and rotate them.
//!
//! Each key accepts an allow-list of algorithms (RFC 8725 §3.1): by default
//! the one its JWK declares, HS256 for a bare secret, RS256 for a bare RSA
//! key, the curve's own for EC and EdDSA for Ed25519. `--jwt-algorithms`
//! widens the list, but only within the key's family, so a token can never
//! pick an algorithm its key was not made for (an RSA public key used as an
//! HMAC secret, `alg: none`).

use std::str::FromStr;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

use crate::AuthError;

/// One verification key.
#[derive(Clone)]
pub(crate) struct Key {
    /// The key id a token's header names, when the key has one.
    pub kid: Option<String>,
    pub key: DecodingKey,
    /// The algorithms a token verified with this key may use.
    pub algorithms: Vec<Algorithm>,
}

const HMAC: [Algorithm; 3] = [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
const RSA: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// `default` and the algorithms of `family` that `allowed` names.
fn allow(default: &[Algorithm], family: &[Algorithm], allowed: &[Algorithm]) -> Vec<Algorithm> {
    let mut out = default.to_vec();
    out.extend(
        allowed
            .iter()
            .filter(|a| family.contains(a) && !default.contains(a)),
    );
    out
}

/// Parses an algorithm name as JOSE spells it (`RS256`, `EdDSA`).
pub fn parse_algorithm(s: &str) -> Result<Algorithm, String> {
    Algorithm::from_str(s.trim())
        .map_err(|_| format!("{s:?} is not a JWS algorithm (HS256, RS256, PS256, ES256, EdDSA, …)"))
}

/// A shared secret: HS256, and the HMAC algorithms `allowed` names.
pub(crate) fn secret(secret: &[u8], allowed: &[Algorithm]) -> Key {
    Key {
        kid: None,
        key: DecodingKey::from_secret(secret),
        algorithms: allow(&[Algorithm::HS256], &HMAC, allowed),
    }
}

/// A public key in PEM form, of whichever family it is.
pub(crate) fn public_pem(pem: &[u8], allowed: &[Algorithm]) -> Result<Key, AuthError> {
    let (key, algorithms) = if let Ok(k) = DecodingKey::from_rsa_pem(pem) {
        (k, allow(&[Algorithm::RS256], &RSA, allowed))
    } else if let Ok(k) = DecodingKey::from_ec_pem(pem) {
        // The curve fixes the algorithm: a P-256 key verifies ES256 only.
        (k, vec![Algorithm::ES256, Algorithm::ES384])
    } else if let Ok(k) = DecodingKey::from_ed_pem(pem) {
        (k, vec![Algorithm::EdDSA])
    } else {
        return Err(AuthError::Key(
            "not an RSA, EC or Ed25519 public key in PEM form".into(),
        ));
    };
    Ok(Key {
        kid: None,
        key,
        algorithms,
    })
}

/// Why one JWK of a set cannot verify signatures, if it cannot.
fn unusable(jwk: &Jwk) -> Option<&'static str> {
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return Some("an encryption key (use: enc)");
    }
    if let Some(ops) = &jwk.common.key_operations
        && !ops.contains(&KeyOperations::Verify)
    {
        return Some("key_ops without verify");
    }
    None
}

/// The usable keys of a JWKS document, and a note on each key left out
/// (encryption keys, keys of a type or curve this verifier cannot use). A
/// document with no usable key is refused.
pub(crate) fn jwks(
    json: &str,
    allowed: &[Algorithm],
) -> Result<(Vec<Key>, Vec<String>), AuthError> {
    let doc: serde_json::Value =
        serde_json::from_str(json).map_err(|e| AuthError::Key(format!("not a JWKS ({e})")))?;
    let entries = doc
        .get("keys")
        .and_then(serde_json::Value::as_array)
        .ok_or_else(|| AuthError::Key("not a JWKS (no \"keys\" array)".into()))?;
    let mut keys = Vec::new();
    let mut left_out = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let name = entry
            .get("kid")
            .and_then(serde_json::Value::as_str)
            .map_or_else(|| format!("key {i}"), |k| format!("kid {k:?}"));
        let jwk = match serde_json::from_value::<Jwk>(entry.clone()) {
            Ok(j) => j,
            Err(e) => {
                left_out.push(format!(
                    "{name}: not a signing key this verifier knows ({e})"
                ));
                continue;
            }
        };
        if let Some(why) = unusable(&jwk) {
            left_out.push(format!("{name}: {why}"));
            continue;
        }
        let Ok(key) = DecodingKey::from_jwk(&jwk) else {
            left_out.push(format!("{name}: its parameters do not make a key"));
            continue;
        };
        let named = jwk
            .common
            .key_algorithm
            .and_then(|a| Algorithm::from_str(&format!("{a:?}")).ok());
        let algorithms = match (named, &jwk.algorithm) {
            (Some(a), _) => vec![a],
            (None, AlgorithmParameters::RSA(_)) => allow(&[Algorithm::RS256], &RSA, allowed),
            (None, AlgorithmParameters::EllipticCurve(p)) => match p.curve {
                EllipticCurve::P256 => vec![Algorithm::ES256],
                EllipticCurve::P384 => vec![Algorithm::ES384],
                _ => {
                    left_out.push(format!("{name}: a curve no JWS algorithm here uses"));
                    continue;
                }
            },
            (None, AlgorithmParameters::OctetKeyPair(_)) => vec![Algorithm::EdDSA],
            (None, AlgorithmParameters::OctetKey(_)) => allow(&[Algorithm::HS256], &HMAC, allowed),
        };
        keys.push(Key {
            kid: jwk.common.key_id.clone(),
            key,
            algorithms,
        });
    }
    if keys.is_empty() {
        return Err(AuthError::Key(format!(
            "the JWKS holds no usable signing key{}",
            if left_out.is_empty() {
                String::new()
            } else {
                format!(" ({})", left_out.join("; "))
            }
        )));
    }
    Ok((keys, left_out))
}

/// The keys that may verify a token with header `kid` and `alg`: the one
/// of that id, or, for a token without `kid`, every key of that algorithm.
pub(crate) fn candidates<'a>(
    keys: &'a [Key],
    kid: Option<&str>,
    alg: Algorithm,
) -> impl Iterator<Item = &'a Key> {
    keys.iter().filter(move |k| {
        k.algorithms.contains(&alg)
            && match (kid, k.kid.as_deref()) {
                (Some(wanted), Some(id)) => wanted == id,
                // A key without an id (a secret, a PEM key) takes any token
                // of its algorithms; a token without `kid` tries them all.
                _ => true,
            }
    })
}
