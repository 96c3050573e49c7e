//! Tokens shaped as an identity provider issues them (here Supabase Auth:
//! `role` = `service_role` or `authenticated`, permissions in `app_metadata`)
//! accepted by services started with that provider's claim layout
//! (`--jwt-claims supabase`), against the real broker.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use sessionfold_e2e::{
    Service, TEST_SECRET, eventually, get_json_as, post_json_as, scratch, unique_prefix,
};

fn supabase_token(sub: &str, role: &str, app_metadata: Value) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let claims = json!({
        "aud": "authenticated", "iss": "https://project.supabase.co/auth/v1", "sub": sub,
        "email": format!("{sub}@example.com"), "role": role, "aal": "aal1",
        "app_metadata": app_metadata, "user_metadata": {}, "iat": now, "exp": now + 3600,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(TEST_SECRET.as_bytes()),
    )
    .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn supabase_tokens_are_read_with_the_supabase_layout() -> anyhow::Result<()> {
    let prefix = unique_prefix("idp");
    let dir = scratch()?;
    let state = dir.path().join("state").to_string_lossy().into_owned();
    let layout = ["--jwt-claims", "supabase"];
    let producer = Service::start("sessionfold-producer", &prefix, &layout, dir.path()).await?;
    let _processor = Service::start(
        "sessionfold-processor",
        &prefix,
        &["--state-dir", &state, "--group-id", &prefix],
        dir.path(),
    )
    .await?;
    let mut projections =
        Service::start("sessionfold-projections", &prefix, &layout, dir.path()).await?;
    projections
        .wait_http("/readyz", Duration::from_secs(60))
        .await?;

    let service = supabase_token("importer", "service_role", json!({"provider": "email"}));
    let bob = supabase_token("bob", "authenticated", json!({"provider": "email"}));
    let viewer = supabase_token(
        "carol",
        "authenticated",
        json!({"provider": "email", "permissions": ["USER_VIEW_ACTIVE_SESSIONS"]}),
    );
    let activity = format!("{}/v1/activity", producer.url);
    let start = |user: &str| {
        json!({"kind": "session_started", "user_id": user, "session_id": format!("{user}-s"),
               "email": format!("{user}@example.com")})
    };
    // The service_role key acts for anyone; a user only for itself.
    assert_eq!(
        post_json_as(&activity, &start("ada"), Some(&service))
            .await?
            .0,
        202
    );
    assert_eq!(
        post_json_as(&activity, &start("bob"), Some(&bob)).await?.0,
        202
    );
    let (status, body) = post_json_as(&activity, &start("ada"), Some(&bob)).await?;
    assert_eq!(status, 403, "{body}");

    // The permission in app_metadata opens the list of everyone; a plain
    // user sees only itself.
    let active = format!("{}/v1/presence/active", projections.url);
    let page = eventually(Duration::from_secs(60), "both users active", || async {
        let (status, page) = get_json_as(&active, Some(&viewer)).await?;
        Ok((status == 200 && page["total"] == 2).then_some(page))
    })
    .await?;
    let mut ids: Vec<&str> = page["users"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|u| u["user_id"].as_str())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, ["ada", "bob"]);
    assert_eq!(get_json_as(&active, Some(&bob)).await?.0, 403);
    let (status, me) = get_json_as(
        &format!("{}/v1/presence/users/bob", projections.url),
        Some(&bob),
    )
    .await?;
    assert_eq!((status, me["user_id"].as_str()), (200, Some("bob")));
    Ok(())
}

fn signed(claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(TEST_SECRET.as_bytes()),
    )
    .unwrap_or_default()
}

fn exp() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() + 3600)
        .unwrap_or(0)
}

/// What a token is, its claims, and the status `/v1/presence/active` answers.
type Case = (&'static str, Value, u16);

/// Auth0, Keycloak and Cognito tokens, each read with its preset: the
/// audience a provider puts in its tokens must be this service's, and a
/// provider's roles or groups count only where `--jwt-role-map` maps them
/// (a realm role that happens to be called `admin` is not sessionfold's).
#[tokio::test(flavor = "multi_thread")]
async fn auth0_keycloak_and_cognito_tokens_with_their_presets_and_role_maps() -> anyhow::Result<()>
{
    let prefix = unique_prefix("idp3");
    let dir = scratch()?;
    let exp = exp();
    let cases: [(&[&str], Vec<Case>); 3] = [
        (
            &[
                "--jwt-claims",
                "auth0",
                "--jwt-audience",
                "https://api.sessionfold.test",
            ],
            vec![
                (
                    "admin by its namespaced role",
                    json!({"sub": "auth0|1", "aud": "https://api.sessionfold.test",
                    "https://sessionfold/roles": ["admin"], "exp": exp}),
                    200,
                ),
                (
                    "a viewer by RBAC permission",
                    json!({"sub": "auth0|2", "aud": ["https://api.sessionfold.test", "https://tenant.auth0.com/userinfo"],
                    "permissions": ["USER_VIEW_ACTIVE_SESSIONS"], "exp": exp}),
                    200,
                ),
                (
                    "a plain user",
                    json!({"sub": "auth0|3", "aud": "https://api.sessionfold.test", "exp": exp}),
                    403,
                ),
                (
                    "a token for another API",
                    json!({"sub": "auth0|1", "aud": "https://billing.test",
                    "https://sessionfold/roles": ["admin"], "exp": exp}),
                    401,
                ),
            ],
        ),
        (
            &[
                "--jwt-claims",
                "keycloak",
                "--jwt-audience",
                "account",
                "--jwt-role-map",
                "sf-admin=admin",
            ],
            vec![
                (
                    "the mapped realm role",
                    json!({"sub": "kc-1", "aud": "account", "typ": "Bearer",
                    "realm_access": {"roles": ["offline_access", "sf-admin"]}, "exp": exp}),
                    200,
                ),
                (
                    "a realm role merely named admin",
                    json!({"sub": "kc-2", "aud": "account",
                    "realm_access": {"roles": ["admin"]}, "exp": exp}),
                    403,
                ),
                (
                    "no audience at all",
                    json!({"sub": "kc-1", "realm_access": {"roles": ["sf-admin"]}, "exp": exp}),
                    401,
                ),
            ],
        ),
        (
            &[
                "--jwt-claims",
                "cognito",
                "--jwt-role-map",
                "ops=admin,viewers=USER_VIEW_ACTIVE_SESSIONS",
            ],
            vec![
                (
                    "the mapped group",
                    json!({"sub": "cg-1", "cognito:groups": ["ops"], "token_use": "access", "exp": exp}),
                    200,
                ),
                (
                    "a group mapped to a permission",
                    json!({"sub": "cg-2", "cognito:groups": ["viewers"], "exp": exp}),
                    200,
                ),
                (
                    "a group merely named admin",
                    json!({"sub": "cg-3", "cognito:groups": ["admin"], "exp": exp}),
                    403,
                ),
            ],
        ),
    ];
    for (args, tokens) in cases {
        let projections =
            Service::start("sessionfold-projections", &prefix, args, dir.path()).await?;
        let active = format!("{}/v1/presence/active", projections.url);
        for (what, claims, want) in tokens {
            let r = reqwest::Client::new()
                .get(&active)
                .bearer_auth(signed(claims))
                .send()
                .await?;
            assert_eq!(r.status().as_u16(), want, "{args:?}: {what}");
        }
    }
    Ok(())
}
