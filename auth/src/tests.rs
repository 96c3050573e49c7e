use super::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

const SECRET: &[u8] = b"unit-test-secret";
const RSA_PRIVATE: &[u8] = include_bytes!("../testdata/rsa-private.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("../testdata/rsa-public.pem");
const RSA_OTHER_PRIVATE: &[u8] = include_bytes!("../testdata/rsa-other-private.pem");

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn claims(sub: &str, roles: &[&str], exp: u64) -> Claims {
    Claims {
        sub: sub.into(),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        permissions: Vec::new(),
        exp: Some(exp),
        iat: None,
    }
}

fn bearer_of(t: &str) -> String {
    format!("Bearer {t}")
}

#[test]
fn hs256_token_names_the_caller() {
    let auth = Authenticator::hs256(SECRET);
    let t = mint_hs256(SECRET, &claims("alice", &["admin"], now() + 60)).expect("mint");
    let c = auth.authenticate(Some(&bearer_of(&t))).expect("valid");
    assert_eq!(c.user_id, "alice");
    assert!(c.is_admin());
    assert!(!c.is_service());
}

#[test]
fn every_kind_of_bad_token_is_refused_with_its_reason() {
    let auth = Authenticator::hs256(SECRET);
    let good = mint_hs256(SECRET, &claims("alice", &[], now() + 60)).expect("mint");
    let other = mint_hs256(b"another secret", &claims("alice", &[], now() + 60)).expect("mint");
    let expired = mint_hs256(SECRET, &claims("alice", &[], now() - 600)).expect("mint");
    let rs = mint_rs256(RSA_PRIVATE, &claims("alice", &[], now() + 60)).expect("mint");
    assert_eq!(auth.authenticate(None), Err(AuthError::Missing));
    assert_eq!(auth.authenticate(Some(&good)), Err(AuthError::Malformed));
    assert_eq!(
        auth.authenticate(Some("Bearer not.a.jwt")),
        Err(AuthError::Malformed)
    );
    assert_eq!(
        auth.authenticate(Some(&bearer_of(&other))),
        Err(AuthError::BadSignature)
    );
    assert_eq!(
        auth.authenticate(Some(&bearer_of(&expired))),
        Err(AuthError::Expired)
    );
    assert_eq!(
        auth.authenticate(Some(&bearer_of(&rs))),
        Err(AuthError::Invalid("unexpected signing algorithm".into()))
    );
    #[derive(Serialize)]
    struct NoExp {
        sub: String,
    }
    let no_exp = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &NoExp { sub: "a".into() },
        &EncodingKey::from_secret(SECRET),
    )
    .expect("mint");
    assert_eq!(
        auth.authenticate(Some(&bearer_of(&no_exp))),
        Err(AuthError::Invalid("missing claim exp".into()))
    );
}

#[test]
fn rs256_verifies_with_the_public_key_only() {
    let auth = Authenticator::rs256(RSA_PUBLIC).expect("key");
    let t = mint_rs256(RSA_PRIVATE, &claims("svc", &["service"], now() + 60)).expect("mint");
    let c = auth.authenticate(Some(&bearer_of(&t))).expect("valid");
    assert!(c.may_act_for("anyone"));
    let forged =
        mint_rs256(RSA_OTHER_PRIVATE, &claims("svc", &["service"], now() + 60)).expect("mint");
    assert_eq!(
        auth.authenticate(Some(&bearer_of(&forged))),
        Err(AuthError::BadSignature)
    );
    assert!(matches!(
        Authenticator::rs256(b"-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n"),
        Err(AuthError::Key(_))
    ));
}

#[test]
fn no_key_refuses_unless_open_mode_is_asked_for() {
    assert!(matches!(
        Authenticator::from_args(&AuthArgs::default()),
        Err(AuthError::NotConfigured)
    ));
    let open = Authenticator::from_args(&AuthArgs {
        auth_disabled: true,
        ..AuthArgs::default()
    })
    .expect("open");
    assert_eq!(open.authenticate(None), Ok(Caller::anonymous()));
    // Open mode still reads a token's claims, unsigned or not.
    let t = mint_hs256(b"whatever", &claims("bob", &[], now() + 60)).expect("mint");
    let c = open.authenticate(Some(&bearer_of(&t))).expect("read");
    assert_eq!(c.user_id, "bob");
    assert!(!c.sees_all_presence());
}

#[test]
fn scoping_rules() {
    let user = Caller {
        user_id: "u1".into(),
        roles: vec![],
        permissions: vec![],
        ..Caller::default()
    };
    assert!(user.may_act_for("u1"));
    assert!(!user.may_act_for("u2"));
    assert!(!user.may_transfer_imports());
    assert!(user.sees_presence_of("u1"));
    assert!(!user.sees_presence_of("u2"));
    assert!(user.sees_import_of(Some("u1")));
    assert!(!user.sees_import_of(Some("u2")));
    assert!(!user.sees_import_of(None));
    let viewer = Caller {
        permissions: vec![PERM_VIEW_ACTIVE_SESSIONS.into()],
        ..user.clone()
    };
    assert!(viewer.sees_all_presence());
    assert!(!viewer.sees_all_imports());
    let importer = Caller {
        permissions: vec![PERM_IMPORT_ADMIN.into()],
        ..user.clone()
    };
    assert!(importer.may_transfer_imports());
    assert!(importer.sees_import_of(None));
    assert!(!importer.may_act_for("u2"));
    let admin = Caller {
        roles: vec![ROLE_ADMIN.into()],
        ..user
    };
    assert!(admin.sees_all_presence() && admin.sees_all_imports() && admin.may_transfer_imports());
    assert!(!admin.may_act_for("u2"));
}

#[test]
fn import_role_names_the_strongest_authority() {
    let c = |roles: &[&str], perms: &[&str]| Caller {
        user_id: "u".into(),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        permissions: perms.iter().map(|p| (*p).to_owned()).collect(),
        ..Caller::default()
    };
    assert_eq!(c(&["admin", "service"], &[]).import_role(), "admin");
    assert_eq!(c(&["service"], &[]).import_role(), "service");
    assert_eq!(c(&[], &["IMPORT_ADMIN"]).import_role(), "import_admin");
    assert_eq!(
        c(&[], &["USER_VIEW_ACTIVE_SESSIONS"]).import_role(),
        "owner"
    );
    assert!(c(&[], &["IMPORT_ADMIN"]).acts_on_any_import());
    assert!(!c(&[], &[]).acts_on_any_import());
}

fn raw_token(claims: serde_json::Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap_or_default()
}

#[test]
fn nbf_iss_aud_and_lifetime_are_held_to_the_policy() {
    let auth = Authenticator::hs256(SECRET).with_policy(&Policy {
        issuers: vec!["https://id.example.com".into()],
        audiences: vec!["sessionfold".into()],
        usual_audiences: vec![],
        max_lifetime: Some(std::time::Duration::from_secs(3600)),
    });
    let n = now();
    let good = serde_json::json!({"sub": "u", "exp": n + 600, "iat": n,
        "iss": "https://id.example.com", "aud": ["other", "sessionfold"]});
    assert_eq!(
        auth.verify(&raw_token(good.clone())).map(|c| c.expires_at),
        Ok(Some(n + 600))
    );
    let with = |k: &str, v: serde_json::Value| {
        let mut c = good.clone();
        c[k] = v;
        auth.verify(&raw_token(c))
    };
    assert_eq!(
        with("nbf", serde_json::json!(n + 86_400)),
        Err(AuthError::Invalid("token not valid yet (nbf)".into()))
    );
    assert!(with("nbf", serde_json::json!(n - 10)).is_ok());
    assert_eq!(
        with("iss", serde_json::json!("https://evil.example.com")),
        Err(AuthError::Invalid("issuer not accepted".into()))
    );
    assert!(matches!(
        with("aud", serde_json::json!("billing")),
        Err(AuthError::Invalid(m)) if m.starts_with("audience not accepted")
    ));
    assert_eq!(
        with("exp", serde_json::json!(n + 86_400)),
        Err(AuthError::Invalid(
            "token lifetime over the accepted 3600 s".into()
        ))
    );
    let mut no_iss = good.clone();
    no_iss.as_object_mut().map(|o| o.remove("iss"));
    assert_eq!(
        auth.verify(&raw_token(no_iss)),
        Err(AuthError::Invalid("missing claim iss".into()))
    );
    // A decimal exp is held to the lifetime like an integer one.
    assert_eq!(
        with("exp", serde_json::json!((n + 10 * 86_400) as f64 + 0.5)),
        Err(AuthError::Invalid(
            "token lifetime over the accepted 3600 s".into()
        ))
    );
    assert_eq!(
        with("exp", serde_json::json!((n + 600) as f64 + 0.5)).map(|c| c.expires_at),
        Ok(Some(n + 601))
    );
    // Without a policy, nbf still holds and iss is not required; an aud
    // names another recipient, so it is refused (RFC 7519 §4.1.3).
    let plain = Authenticator::hs256(SECRET);
    let mut future = good.clone();
    future["nbf"] = serde_json::json!(n + 86_400);
    assert!(plain.verify(&raw_token(future)).is_err());
    assert!(matches!(
        plain.verify(&raw_token(good.clone())),
        Err(AuthError::Invalid(m)) if m.starts_with("audience not accepted")
    ));
    let mut no_aud = good;
    no_aud.as_object_mut().map(|o| o.remove("aud"));
    assert!(plain.verify(&raw_token(no_aud.clone())).is_ok());
    // A provider's usual audience is accepted where present, not required.
    let usual = Authenticator::hs256(SECRET).with_policy(&Policy {
        usual_audiences: vec!["authenticated".into()],
        ..Policy::default()
    });
    assert!(usual.verify(&raw_token(no_aud.clone())).is_ok());
    no_aud["aud"] = serde_json::json!("authenticated");
    assert!(usual.verify(&raw_token(no_aud.clone())).is_ok());
    no_aud["aud"] = serde_json::json!("billing");
    assert!(usual.verify(&raw_token(no_aud)).is_err());
}

#[test]
fn an_end_ticket_is_never_a_bearer_token() {
    let n = now();
    let auth = Authenticator::hs256(SECRET).with_policy(&Policy {
        usual_audiences: vec![END_TICKET_AUDIENCE.into()],
        ..Policy::default()
    });
    let ticket =
        serde_json::json!({"sub": "u", "sid": "s", "aud": END_TICKET_AUDIENCE, "exp": n + 600});
    assert_eq!(
        auth.verify(&raw_token(ticket)),
        Err(AuthError::Invalid(
            "an end ticket is not a bearer token".into()
        ))
    );
    let mut header = Header::new(Algorithm::HS256);
    header.typ = Some(END_TICKET_TYPE.into());
    let typed = jsonwebtoken::encode(
        &header,
        &serde_json::json!({"sub": "u", "exp": n + 600}),
        &EncodingKey::from_secret(SECRET),
    )
    .expect("mint");
    assert_eq!(
        auth.verify(&typed),
        Err(AuthError::Invalid(
            "an end ticket is not a bearer token".into()
        ))
    );
    assert!(matches!(
        Authenticator::from_args(&AuthArgs {
            jwt_secret: Some("x".repeat(40)),
            jwt_audience: vec![END_TICKET_AUDIENCE.into()],
            ..AuthArgs::default()
        }),
        Err(AuthError::Key(_))
    ));
}

#[test]
fn short_secrets_and_plain_http_key_sets_are_refused_at_start() {
    let with_secret = |s: &str| {
        Authenticator::from_args(&AuthArgs {
            jwt_secret: Some(s.into()),
            ..AuthArgs::default()
        })
    };
    assert!(matches!(with_secret(""), Err(AuthError::Key(_))));
    assert!(matches!(
        with_secret(&"k".repeat(31)),
        Err(AuthError::Key(_))
    ));
    assert!(with_secret(&"k".repeat(32)).is_ok());
    let jwks = |url: &str, allow_http: bool| {
        Authenticator::from_args(&AuthArgs {
            jwt_jwks: Some(url.into()),
            jwt_jwks_allow_http: allow_http,
            ..AuthArgs::default()
        })
    };
    assert!(matches!(
        jwks("http://idp.example/jwks.json", false),
        Err(AuthError::Key(_))
    ));
    assert!(jwks("http://idp.example/jwks.json", true).is_ok());
    assert!(jwks("https://idp.example/jwks.json", false).is_ok());
}

/// Tokens laid out as each identity provider issues them, through the
/// verifier with that provider's preset.
#[test]
fn provider_tokens_name_the_caller_with_their_preset() {
    let exp = now() + 600;
    let verify = |preset: Preset, claims: serde_json::Value| {
        Authenticator::hs256(SECRET)
            .with_claims(ClaimMap::preset(preset))
            .verify(&raw_token(claims))
    };
    // Supabase: a service_role key is a service; a user is `authenticated`.
    let svc = verify(
        Preset::Supabase,
        serde_json::json!({"iss": "supabase", "ref": "abc", "role": "service_role", "sub": "svc", "exp": exp, "iat": exp - 600}),
    )
    .expect("service_role token");
    assert!(svc.is_service());
    let user = verify(
        Preset::Supabase,
        serde_json::json!({"sub": "9f1c", "email": "a@b.c", "role": "authenticated",
            "app_metadata": {"provider": "email", "providers": ["email"], "permissions": ["IMPORT_ADMIN"]},
            "user_metadata": {}, "exp": exp}),
    )
    .expect("user token");
    assert_eq!(user.user_id, "9f1c");
    assert!(!user.is_service() && !user.is_admin());
    assert!(user.may_transfer_imports());
    // Keycloak: realm roles.
    let kc = verify(
        Preset::Keycloak,
        serde_json::json!({"sub": "kc-7", "typ": "Bearer", "azp": "web", "exp": exp,
            "realm_access": {"roles": ["default-roles-demo", "admin"]},
            "resource_access": {"account": {"roles": ["view-profile"]}}}),
    )
    .expect("keycloak token");
    // A realm role named admin is the realm's, not sessionfold's, until mapped.
    assert!(!kc.is_admin());
    let mut mapped = ClaimMap::preset(Preset::Keycloak);
    mapped.names.push(("admin".into(), "admin".into()));
    let kc = Authenticator::hs256(SECRET)
        .with_claims(mapped)
        .verify(&raw_token(serde_json::json!({"sub": "kc-7", "exp": exp,
            "realm_access": {"roles": ["admin"]}})))
        .expect("keycloak token");
    assert!(kc.is_admin());
    // Cognito: groups; Auth0: namespaced roles and RBAC permissions.
    let cg = verify(
        Preset::Cognito,
        serde_json::json!({"sub": "cg-1", "cognito:groups": ["service"], "token_use": "access", "exp": exp}),
    )
    .expect("cognito token");
    assert!(!cg.is_service());
    let a0 = verify(
        Preset::Auth0,
        serde_json::json!({"sub": "auth0|1", "https://sessionfold/roles": [], "permissions": ["USER_VIEW_ACTIVE_SESSIONS"], "exp": exp}),
    )
    .expect("auth0 token");
    assert!(a0.sees_all_presence() && !a0.is_admin());
    // The same Supabase service token read with the default layout is a plain user.
    let plain = verify(
        Preset::Sessionfold,
        serde_json::json!({"role": "service_role", "sub": "svc", "exp": exp}),
    )
    .expect("plain token");
    assert!(!plain.is_service());
}

#[test]
fn a_user_claim_elsewhere_is_required_there() {
    let exp = now() + 600;
    let map = ClaimMap {
        user: "user.id".into(),
        ..ClaimMap::default()
    };
    let auth = Authenticator::hs256(SECRET).with_claims(map);
    let c = auth
        .verify(&raw_token(
            serde_json::json!({"user": {"id": "u-9"}, "exp": exp}),
        ))
        .expect("user id in a nested claim");
    assert_eq!(c.user_id, "u-9");
    assert_eq!(
        auth.verify(&raw_token(serde_json::json!({"sub": "u-9", "exp": exp}))),
        Err(AuthError::Invalid("missing claim user.id".into()))
    );
}

const JWKS: &str = include_str!("../testdata/jwks.json");

fn signed(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, sub: &str) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    let claims = serde_json::json!({"sub": sub, "exp": now() + 600});
    jsonwebtoken::encode(&header, &claims, key).unwrap_or_default()
}

fn pem_key(alg: Algorithm, pem: &[u8]) -> EncodingKey {
    let key = match alg {
        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(pem),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(pem),
        _ => EncodingKey::from_rsa_pem(pem),
    };
    key.unwrap_or_else(|_| EncodingKey::from_secret(b"unusable"))
}

#[test]
fn each_key_takes_its_default_algorithm_and_only_widens_within_its_family() {
    let unexpected = Err(AuthError::Invalid("unexpected signing algorithm".into()));
    let secret = EncodingKey::from_secret(SECRET);
    let hs256 = signed(Algorithm::HS256, None, &secret, "h");
    assert_eq!(
        Authenticator::hs256(SECRET)
            .verify(&hs256)
            .map(|c| c.user_id),
        Ok("h".into())
    );
    // RFC 8725 §3.1: HS512 is not HS256, even with the same secret.
    for alg in [Algorithm::HS384, Algorithm::HS512] {
        let t = signed(alg, None, &secret, "h");
        assert_eq!(
            Authenticator::hs256(SECRET).verify(&t).map(|c| c.user_id),
            unexpected.clone(),
            "{alg:?}"
        );
        assert_eq!(
            Authenticator::secret(SECRET, &[alg])
                .verify(&t)
                .map(|c| c.user_id),
            Ok("h".into()),
            "{alg:?} widened"
        );
    }
    // An RSA key: RS256 by default; PS256 and RS512 only when widened.
    let rsa = pem_key(Algorithm::RS256, RSA_PRIVATE);
    let rsa_auth = Authenticator::rs256(RSA_PUBLIC).expect("key");
    assert!(
        rsa_auth
            .verify(&signed(Algorithm::RS256, None, &rsa, "p"))
            .is_ok()
    );
    for alg in [Algorithm::PS256, Algorithm::RS512] {
        let t = signed(alg, None, &rsa, "p");
        assert_eq!(
            rsa_auth.verify(&t).map(|c| c.user_id),
            unexpected.clone(),
            "{alg:?}"
        );
        let wide = Authenticator::public_key(
            RSA_PUBLIC,
            &[Algorithm::PS256, Algorithm::RS512, Algorithm::HS256],
        )
        .expect("key");
        assert_eq!(
            wide.verify(&t).map(|c| c.user_id),
            Ok("p".into()),
            "{alg:?} widened"
        );
        // Widening never crosses families: the public key as an HMAC secret stays refused.
        let h = signed(
            Algorithm::HS256,
            None,
            &EncodingKey::from_secret(RSA_PUBLIC),
            "p",
        );
        assert_eq!(wide.verify(&h).map(|c| c.user_id), unexpected.clone());
    }
    let cases: [(Algorithm, &[u8], &[u8]); 3] = [
        (
            Algorithm::ES256,
            include_bytes!("../testdata/ec256-private.pem"),
            include_bytes!("../testdata/ec256-public.pem"),
        ),
        (
            Algorithm::ES384,
            include_bytes!("../testdata/ec384-private.pem"),
            include_bytes!("../testdata/ec384-public.pem"),
        ),
        (
            Algorithm::EdDSA,
            include_bytes!("../testdata/ed25519-private.pem"),
            include_bytes!("../testdata/ed25519-public.pem"),
        ),
    ];
    for (alg, private, public) in cases {
        let t = signed(alg, None, &pem_key(alg, private), "p");
        let auth = Authenticator::rs256(public).expect("public key");
        assert_eq!(
            auth.verify(&t).map(|c| c.user_id),
            Ok("p".into()),
            "{alg:?}"
        );
        // The key's family only: an HMAC token is refused.
        let h = signed(
            Algorithm::HS256,
            None,
            &EncodingKey::from_secret(public),
            "p",
        );
        assert_eq!(
            auth.verify(&h).map(|c| c.user_id),
            unexpected.clone(),
            "{alg:?}"
        );
    }
}

#[test]
fn a_jwks_leaves_out_keys_that_cannot_verify_and_keeps_the_rest() {
    let mut doc: serde_json::Value = serde_json::from_str(JWKS).expect("json");
    let keys = doc["keys"].as_array_mut().expect("keys");
    let rsa = keys
        .iter()
        .find(|k| k["kid"] == "rsa")
        .cloned()
        .expect("rsa key");
    let mut enc = rsa.clone();
    enc["kid"] = serde_json::json!("rsa-enc");
    enc["use"] = serde_json::json!("enc");
    let mut wrap = rsa.clone();
    wrap["kid"] = serde_json::json!("rsa-wrap");
    wrap.as_object_mut().map(|o| o.remove("use"));
    wrap["key_ops"] = serde_json::json!(["wrapKey"]);
    keys.push(
        serde_json::json!({"kty": "OKP", "crv": "X25519", "kid": "x",
        "x": "hSDwCYkwp1R0i33ctD73Wg2_Og0mOBr066SpjqqbTmo"}),
    );
    keys.push(enc);
    keys.push(wrap);
    let auth = Authenticator::jwks(&doc.to_string()).expect("the usable keys load");
    let key = pem_key(Algorithm::RS256, RSA_PRIVATE);
    assert_eq!(
        auth.verify(&signed(Algorithm::RS256, Some("rsa"), &key, "k"))
            .map(|c| c.user_id),
        Ok("k".into())
    );
    for kid in ["rsa-enc", "rsa-wrap"] {
        assert!(
            matches!(
                auth.verify(&signed(Algorithm::RS256, Some(kid), &key, "k")),
                Err(AuthError::UnknownKey { .. })
            ),
            "{kid} must not verify signatures"
        );
    }
    // The declared alg is the only one: RS512 with the rsa key is refused.
    assert_eq!(
        auth.verify(&signed(Algorithm::RS512, Some("rsa"), &key, "k")),
        Err(AuthError::Invalid("unexpected signing algorithm".into()))
    );
    let only_bad = serde_json::json!({"keys": [{"kty": "OKP", "crv": "X25519", "x": "hSDwCYkwp1R0i33ctD73Wg2_Og0mOBr066SpjqqbTmo"}]});
    assert!(matches!(
        Authenticator::jwks(&only_bad.to_string()),
        Err(AuthError::Key(_))
    ));
}

#[test]
fn a_jwks_picks_the_key_by_kid_and_rotates() {
    let auth = Authenticator::jwks(JWKS).expect("jwks");
    let ec = pem_key(
        Algorithm::ES256,
        include_bytes!("../testdata/ec256-private.pem"),
    );
    let ed = pem_key(
        Algorithm::EdDSA,
        include_bytes!("../testdata/ed25519-private.pem"),
    );
    let rsa = pem_key(Algorithm::RS256, RSA_PRIVATE);
    for (alg, kid, key) in [
        (Algorithm::ES256, "ec256", &ec),
        (Algorithm::EdDSA, "ed", &ed),
        (Algorithm::RS256, "rsa", &rsa),
    ] {
        assert_eq!(
            auth.verify(&signed(alg, Some(kid), key, "k"))
                .map(|c| c.user_id),
            Ok("k".into()),
            "{kid}"
        );
    }
    // Signed by the RSA key but naming the other RSA key's id: bad signature.
    assert_eq!(
        auth.verify(&signed(Algorithm::RS256, Some("rsa-other"), &rsa, "k")),
        Err(AuthError::BadSignature)
    );
    // A key id the set does not hold asks for a refresh.
    let handle = auth.keys_handle().expect("verifying mode");
    let new = signed(Algorithm::RS256, Some("rsa-new"), &rsa, "k");
    assert!(
        matches!(auth.verify(&new), Err(AuthError::UnknownKey { retry_after }) if (1..=10).contains(&retry_after))
    );
    // The set was read a moment ago: the request waits for its turn and is
    // not lost; it is taken once the gap has passed, and only once.
    assert!(!handle.take_refresh_request());
    let later = std::time::Instant::now() + verify::JWKS_MIN_GAP;
    assert!(handle.take_refresh_request_at(later));
    assert!(!handle.take_refresh_request_at(later));
    // The provider rotates: the new id appears, the old ones are gone.
    let mut doc: serde_json::Value = serde_json::from_str(JWKS).expect("json");
    let mut rsa_jwk = doc["keys"]
        .as_array()
        .and_then(|ks| ks.iter().find(|k| k["kid"] == "rsa"))
        .cloned()
        .expect("rsa key");
    rsa_jwk["kid"] = serde_json::json!("rsa-new");
    doc["keys"] = serde_json::json!([rsa_jwk]);
    handle.read_failed();
    assert!(!handle.take_refresh_request());
    assert_eq!(handle.replace(&doc.to_string()), Ok(1));
    assert_eq!(auth.verify(&new).map(|c| c.user_id), Ok("k".into()));
    // The removed key's id is unknown now.
    assert!(matches!(
        auth.verify(&signed(Algorithm::ES256, Some("ec256"), &ec, "k")),
        Err(AuthError::UnknownKey { .. })
    ));
    assert!(handle.replace("{\"keys\": []}").is_err());
}
