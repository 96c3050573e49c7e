use super::*;

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
