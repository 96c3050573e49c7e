//! The keys tokens are verified with: a shared secret (HS256/384/512), a
//! public key in PEM form (RSA: RS/PS 256/384/512; EC: ES256/384; Ed25519:
//! EdDSA), or a JWKS of several keys named by `kid`, as identity providers
//! publish them and rotate them.
//!
//! Each key accepts only the algorithms of its own family, so a token cannot
//! pick an algorithm its key was not made for (an RSA public key used as an
//! HMAC secret, `alg: none`).

use std::str::FromStr;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
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

/// A shared secret: the HMAC algorithms.
pub(crate) fn secret(secret: &[u8]) -> Key {
    Key {
        kid: None,
        key: DecodingKey::from_secret(secret),
        algorithms: HMAC.to_vec(),
    }
}

/// A public key in PEM form, of whichever family it is.
pub(crate) fn public_pem(pem: &[u8]) -> Result<Key, AuthError> {
    let (key, algorithms) = if let Ok(k) = DecodingKey::from_rsa_pem(pem) {
        (k, RSA.to_vec())
    } else if let Ok(k) = DecodingKey::from_ec_pem(pem) {
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

/// The keys of a JWKS document. Keys this verifier cannot use (encryption
/// keys, unknown curves) are left out; a document with none is refused.
pub(crate) fn jwks(json: &str) -> Result<Vec<Key>, AuthError> {
    let set: JwkSet =
        serde_json::from_str(json).map_err(|e| AuthError::Key(format!("not a JWKS ({e})")))?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        let Ok(key) = DecodingKey::from_jwk(jwk) else {
            continue;
        };
        let named = jwk
            .common
            .key_algorithm
            .and_then(|a| Algorithm::from_str(&format!("{a:?}")).ok());
        let algorithms = match (named, &jwk.algorithm) {
            (Some(a), _) => vec![a],
            (None, AlgorithmParameters::RSA(_)) => RSA.to_vec(),
            (None, AlgorithmParameters::EllipticCurve(p)) => match p.curve {
                EllipticCurve::P256 => vec![Algorithm::ES256],
                EllipticCurve::P384 => vec![Algorithm::ES384],
                _ => continue,
            },
            (None, AlgorithmParameters::OctetKeyPair(_)) => vec![Algorithm::EdDSA],
            (None, AlgorithmParameters::OctetKey(_)) => HMAC.to_vec(),
        };
        keys.push(Key {
            kid: jwk.common.key_id.clone(),
            key,
            algorithms,
        });
    }
    if keys.is_empty() {
        return Err(AuthError::Key(
            "the JWKS holds no usable signing key".into(),
        ));
    }
    Ok(keys)
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
