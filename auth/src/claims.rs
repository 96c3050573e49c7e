//! Where a token's identity is read from.
//!
//! Identity providers put the user id, roles and permissions in different
//! places: Supabase has `role` (`authenticated`, `service_role`) and
//! `app_metadata`, Auth0 namespaced custom claims next to a top-level
//! `permissions`, Keycloak `realm_access.roles`, Cognito `cognito:groups`.
//! A [`ClaimMap`] names the claims by path and maps the provider's role names
//! to sessionfold's roles (`admin`, `service`) and permissions.

use serde_json::Value;

use crate::{ROLE_ADMIN, ROLE_SERVICE};

/// The layouts of the identity providers sessionfold knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "service", derive(clap::ValueEnum))]
pub enum Preset {
    /// `sub`, `roles` and `permissions` at the top level.
    #[default]
    Sessionfold,
    /// Supabase Auth: `role` (`service_role` is a service) and
    /// `app_metadata.roles` / `app_metadata.permissions`.
    Supabase,
    /// Auth0: roles in the namespaced claim `https://sessionfold/roles` (set
    /// by an Action), permissions in `permissions` (RBAC).
    Auth0,
    /// Keycloak: `realm_access.roles`.
    Keycloak,
    /// Amazon Cognito: `cognito:groups`.
    Cognito,
}

/// Where the user id, roles and permissions are read from, and how the
/// provider's role names map to sessionfold's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimMap {
    /// Path of the user id.
    pub user: String,
    /// Paths whose values are roles.
    pub roles: Vec<String>,
    /// Paths whose values are permissions.
    pub permissions: Vec<String>,
    /// A role value as the provider names it → a sessionfold role (`admin`,
    /// `service`) or permission (anything else).
    pub names: Vec<(String, String)>,
    /// What becomes of a role value `names` does not map.
    pub unmapped: Unmapped,
    /// With rooms limited by a claim: its path (an array of room names or
    /// prefixes ending in `*`); `None`: every room is open.
    pub rooms: Option<String>,
}

/// What becomes of a provider's role value that the role map does not name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "service", derive(clap::ValueEnum))]
pub enum Unmapped {
    /// Kept as it is: a value `admin` makes an admin. Right for claims made
    /// for sessionfold alone.
    #[default]
    Keep,
    /// Dropped: only mapped values count. Right for a provider's general
    /// roles or groups, which other applications name too.
    Drop,
}

impl Default for ClaimMap {
    fn default() -> Self {
        ClaimMap::preset(Preset::Sessionfold)
    }
}

fn paths(p: &[&str]) -> Vec<String> {
    p.iter().map(|s| (*s).to_owned()).collect()
}

impl ClaimMap {
    /// The layout of one provider.
    pub fn preset(p: Preset) -> ClaimMap {
        // A provider's roles and groups serve every application of the
        // realm, so its presets count only the values they map: a Keycloak
        // realm role that happens to be called `admin` is not sessionfold's.
        let own: &[(&str, &str)] = &[(ROLE_ADMIN, ROLE_ADMIN), (ROLE_SERVICE, ROLE_SERVICE)];
        let (roles, permissions, names): (&[&str], &[&str], &[(&str, &str)]) = match p {
            Preset::Sessionfold => (&["roles"], &["permissions"], &[]),
            // `app_metadata` is written by the project's service role only.
            Preset::Supabase => (
                &["role", "app_metadata.roles"],
                &["app_metadata.permissions"],
                &[("service_role", ROLE_SERVICE), (ROLE_ADMIN, ROLE_ADMIN)],
            ),
            // The namespaced claim is set for sessionfold by the team's Action.
            Preset::Auth0 => (&["https://sessionfold/roles"], &["permissions"], own),
            Preset::Keycloak => (&["realm_access.roles"], &[], &[]),
            Preset::Cognito => (&["cognito:groups"], &[], &[]),
        };
        ClaimMap {
            user: "sub".into(),
            roles: paths(roles),
            permissions: paths(permissions),
            names: names
                .iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect(),
            unmapped: match p {
                Preset::Sessionfold => Unmapped::Keep,
                _ => Unmapped::Drop,
            },
            rooms: None,
        }
    }

    /// The audience a provider's user tokens carry, accepted where present.
    pub fn usual_audiences(p: Preset) -> &'static [&'static str] {
        match p {
            Preset::Supabase => &["authenticated"],
            _ => &[],
        }
    }

    /// The user id, roles and permissions of `claims`; `None` without a
    /// user id.
    pub fn read(&self, claims: &Value) -> Option<(String, Vec<String>, Vec<String>)> {
        let user = match at(claims, &self.user)? {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => return None,
        };
        let mut roles = Vec::new();
        let mut permissions: Vec<String> = self
            .permissions
            .iter()
            .flat_map(|p| strings(claims, p))
            .collect();
        for value in self.roles.iter().flat_map(|p| strings(claims, p)) {
            match self.names.iter().find(|(from, _)| *from == value) {
                Some((_, to)) if to == ROLE_ADMIN || to == ROLE_SERVICE => roles.push(to.clone()),
                Some((_, to)) => permissions.push(to.clone()),
                None if self.unmapped == Unmapped::Keep => roles.push(value),
                None => {}
            }
        }
        roles.dedup();
        permissions.dedup();
        Some((user, roles, permissions))
    }
}

/// The value at `path`: the claim of that exact name first (namespaced
/// claims are URLs with dots), else the path's dot-separated steps into
/// nested objects.
fn at<'a>(claims: &'a Value, path: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    path.split('.').try_fold(claims, |v, step| v.get(step))
}

/// The strings at `path`: an array of strings, or a string of
/// space-separated names (OAuth's `scope` form).
fn strings(claims: &Value, path: &str) -> Vec<String> {
    match at(claims, path) {
        Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

impl ClaimMap {
    /// The rooms a token may enter: all of them without a room claim, else
    /// those its claim names (none when it has no such claim).
    pub fn room_access(&self, claims: &Value) -> crate::caller::RoomAccess {
        match &self.rooms {
            None => crate::caller::RoomAccess::Open,
            Some(path) => crate::caller::RoomAccess::Only(strings(claims, path)),
        }
    }
}

/// Parses `VALUE=ROLE` of `--jwt-role-map`.
pub fn parse_role_map(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((from, to)) if !from.is_empty() && !to.is_empty() => {
            Ok((from.to_owned(), to.to_owned()))
        }
        _ => Err(format!(
            "{s:?} is not VALUE=ROLE (e.g. service_role=service)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn read(p: Preset, claims: Value) -> Option<(String, Vec<String>, Vec<String>)> {
        ClaimMap::preset(p).read(&claims)
    }

    #[test]
    fn supabase_service_role_is_a_service_and_app_metadata_is_read() {
        let service = json!({"sub": "svc-uuid", "role": "service_role", "aud": "authenticated"});
        assert_eq!(
            read(Preset::Supabase, service),
            Some(("svc-uuid".into(), vec!["service".into()], vec![]))
        );
        let user = json!({"sub": "u-1", "role": "authenticated",
            "app_metadata": {"provider": "email", "roles": ["admin"], "permissions": ["IMPORT_ADMIN"]}});
        assert_eq!(
            read(Preset::Supabase, user),
            Some((
                "u-1".into(),
                vec!["admin".into()],
                vec!["IMPORT_ADMIN".into()]
            ))
        );
        // Supabase's own role names mean nothing here and are dropped.
        let anon = json!({"sub": "u-2", "role": "anon", "app_metadata": {"roles": ["editor"]}});
        assert_eq!(
            read(Preset::Supabase, anon),
            Some(("u-2".into(), vec![], vec![]))
        );
    }

    #[test]
    fn auth0_namespaced_roles_and_rbac_permissions() {
        let t = json!({"sub": "auth0|abc", "https://sessionfold/roles": ["admin"],
            "permissions": ["USER_VIEW_ACTIVE_SESSIONS"], "scope": "openid profile"});
        assert_eq!(
            read(Preset::Auth0, t),
            Some((
                "auth0|abc".into(),
                vec!["admin".into()],
                vec!["USER_VIEW_ACTIVE_SESSIONS".into()]
            ))
        );
    }

    #[test]
    fn keycloak_realm_roles_and_cognito_groups_count_only_when_mapped() {
        let k = json!({"sub": "kc-1", "realm_access": {"roles": ["offline_access", "admin", "sf-service"]}});
        assert_eq!(read(Preset::Keycloak, k.clone()).map(|r| r.1), Some(vec![]));
        let mut mapped = ClaimMap::preset(Preset::Keycloak);
        mapped.names.push(("sf-service".into(), "service".into()));
        assert_eq!(mapped.read(&k).map(|r| r.1), Some(vec!["service".into()]));
        mapped.unmapped = Unmapped::Keep;
        assert_eq!(
            mapped.read(&k).map(|r| r.1),
            Some(vec![
                "offline_access".into(),
                "admin".into(),
                "service".into()
            ])
        );
        let c = json!({"sub": "cg-1", "cognito:groups": ["admin"], "token_use": "access"});
        assert_eq!(read(Preset::Cognito, c).map(|r| r.1), Some(vec![]));
    }

    #[test]
    fn mapped_names_become_roles_or_permissions_and_strings_split_on_spaces() {
        let map = ClaimMap {
            user: "user.id".into(),
            roles: vec!["scope".into()],
            permissions: vec![],
            names: vec![
                ("presence:all".into(), "USER_VIEW_ACTIVE_SESSIONS".into()),
                ("ops".into(), "admin".into()),
            ],
            unmapped: Unmapped::Keep,
            rooms: None,
        };
        let t = json!({"user": {"id": 42}, "scope": "openid presence:all ops"});
        assert_eq!(
            map.read(&t),
            Some((
                "42".into(),
                vec!["openid".into(), "admin".into()],
                vec!["USER_VIEW_ACTIVE_SESSIONS".into()]
            ))
        );
        assert_eq!(map.read(&json!({"sub": "x"})), None);
        assert!(parse_role_map("service_role=service").is_ok());
        assert!(parse_role_map("=service").is_err());
    }
}
