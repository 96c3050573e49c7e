//! The token options of the HTTP services and the verifier they build.

use std::path::Path;

use jsonwebtoken::Algorithm;

use crate::claims::{self, ClaimMap, Preset, Unmapped};
use crate::verify::{Authenticator, Policy};
use crate::{AuthError, END_TICKET_AUDIENCE};

/// Shortest HMAC secret accepted: RFC 7518 §3.2 asks for a key of at least
/// the hash's size, 256 bits for HS256.
pub const MIN_SECRET_BYTES: usize = 32;

/// Refuses a secret shorter than [`MIN_SECRET_BYTES`], naming the option.
pub fn check_secret(option: &str, secret: &[u8]) -> Result<(), AuthError> {
    if secret.len() < MIN_SECRET_BYTES {
        return Err(AuthError::Key(format!(
            "{option} is {} bytes; use at least {MIN_SECRET_BYTES} random bytes (e.g. `openssl rand -hex 32`)",
            secret.len()
        )));
    }
    Ok(())
}

/// Token options of the HTTP services.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AuthArgs {
    /// HS256 secret that signs the tokens (at least 32 bytes).
    #[arg(long, env = "SESSIONFOLD_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Public key (RSA, EC or Ed25519), as PEM text or the path of a PEM file.
    #[arg(long, env = "SESSIONFOLD_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<String>,
    /// A JWKS (the identity provider's signing keys, chosen by `kid`), as a
    /// file or an https URL; read again every `--jwt-jwks-refresh` and when
    /// a token names an unknown key (at most every 10 s).
    #[arg(long, env = "SESSIONFOLD_JWT_JWKS")]
    pub jwt_jwks: Option<String>,
    /// How often the JWKS is read again.
    #[arg(long, env = "SESSIONFOLD_JWT_JWKS_REFRESH", default_value = "10m", value_parser = humantime::parse_duration)]
    pub jwt_jwks_refresh: std::time::Duration,
    /// Let `--jwt-jwks` be a plain http URL (a provider on a private network);
    /// by default only https is fetched.
    #[arg(long, env = "SESSIONFOLD_JWT_JWKS_ALLOW_HTTP")]
    pub jwt_jwks_allow_http: bool,
    /// Algorithms a token may use beyond each key's default (HS256 for a
    /// secret, RS256 for an RSA key, the JWK's own `alg`); only those of the
    /// key's family count. Repeat or separate with commas, e.g. `PS256,RS512`.
    #[arg(long, env = "SESSIONFOLD_JWT_ALGORITHMS", value_delimiter = ',', value_parser = crate::keys::parse_algorithm)]
    pub jwt_algorithms: Vec<Algorithm>,
    /// Run without authentication: requests without a token may do everything. For local experiments only.
    #[arg(long, env = "SESSIONFOLD_AUTH_DISABLED")]
    pub auth_disabled: bool,
    /// Accepted token issuer (`iss`); repeat for several. Unset: not checked.
    #[arg(long, env = "SESSIONFOLD_JWT_ISSUER", value_delimiter = ',')]
    pub jwt_issuer: Vec<String>,
    /// This service's audience: a token must name one in `aud`; repeat for
    /// several. Unset: a token with an `aud` is refused, unless the preset
    /// knows its provider's usual one (Supabase: `authenticated`).
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
    /// What becomes of role values `--jwt-role-map` does not name: kept as
    /// they are, or dropped. Default: kept with the `sessionfold` layout,
    /// dropped with a provider's.
    #[arg(long, env = "SESSIONFOLD_JWT_UNMAPPED_ROLES", value_enum)]
    pub jwt_unmapped_roles: Option<Unmapped>,
    /// Who may enter a room (post a page naming it) and read it: `open`, any
    /// room; `claim`, only the rooms the token's `--room-claim` names (admins
    /// and services: any).
    #[arg(long, env = "SESSIONFOLD_ROOM_ACCESS", value_enum, default_value_t = RoomRule::Open)]
    pub room_access: RoomRule,
    /// Path of the claim holding the rooms a token may enter, as an array of
    /// room names or prefixes ending in `*` (e.g. `["team-7", "/docs/*"]`).
    #[arg(long, env = "SESSIONFOLD_ROOM_CLAIM", default_value = "rooms")]
    pub room_claim: String,
}

/// The `--room-access` choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum RoomRule {
    /// Any room.
    #[default]
    Open,
    /// The rooms a token's claim names.
    Claim,
}

impl Authenticator {
    /// Builds the verifier the options ask for.
    pub fn from_args(args: &AuthArgs) -> Result<Authenticator, AuthError> {
        if args.jwt_audience.iter().any(|a| a == END_TICKET_AUDIENCE) {
            return Err(AuthError::Key(format!(
                "--jwt-audience {END_TICKET_AUDIENCE} would take end tickets as bearer tokens"
            )));
        }
        let policy = Policy {
            issuers: args.jwt_issuer.clone(),
            audiences: args.jwt_audience.clone(),
            usual_audiences: if args.jwt_audience.is_empty() {
                ClaimMap::usual_audiences(args.jwt_claims)
                    .iter()
                    .map(|a| (*a).to_owned())
                    .collect()
            } else {
                Vec::new()
            },
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
        if let Some(u) = args.jwt_unmapped_roles {
            map.unmapped = u;
        }
        if args.room_access == RoomRule::Claim {
            map.rooms = Some(args.room_claim.clone());
        }
        Ok(Authenticator::from_key_args(args)?
            .with_policy(&policy)
            .with_claims(map))
    }

    fn from_key_args(args: &AuthArgs) -> Result<Authenticator, AuthError> {
        let allowed = &args.jwt_algorithms;
        if let Some(source) = &args.jwt_jwks {
            if args.jwt_secret.is_some() || args.jwt_public_key.is_some() {
                return Err(AuthError::Key(
                    "set one of --jwt-secret, --jwt-public-key and --jwt-jwks".into(),
                ));
            }
            if is_url(source) {
                if source.starts_with("http://") && !args.jwt_jwks_allow_http {
                    return Err(AuthError::Key(format!(
                        "--jwt-jwks {source} is plain http: anyone on the path could swap the keys; use https, or --jwt-jwks-allow-http on a trusted network"
                    )));
                }
                return Ok(Authenticator::jwks_pending(allowed));
            }
            let text = std::fs::read_to_string(source)
                .map_err(|e| AuthError::Key(format!("reading JWKS file {source}: {e}")))?;
            return Authenticator::jwks_allowing(&text, allowed);
        }
        match (&args.jwt_secret, &args.jwt_public_key, args.auth_disabled) {
            (Some(_), Some(_), _) => Err(AuthError::Key(
                "set either --jwt-secret or --jwt-public-key, not both".into(),
            )),
            (Some(secret), None, _) => {
                check_secret("--jwt-secret", secret.as_bytes())?;
                Ok(Authenticator::secret(secret.as_bytes(), allowed))
            }
            (None, Some(key), _) => Authenticator::public_key(&read_pem(key)?, allowed),
            (None, None, true) => {
                tracing::warn!(
                    "AUTHENTICATION IS DISABLED (--auth-disabled): every request without a token acts as an admin and token signatures are not checked; never expose this service"
                );
                Ok(Authenticator::open())
            }
            (None, None, false) => Err(AuthError::NotConfigured),
        }
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
