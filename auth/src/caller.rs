//! The caller behind a request and the scoping rules of what it may do and
//! see: one place, so the ingest and the views cannot disagree about who is
//! an admin.

use serde::{Deserialize, Serialize};

use crate::{PERM_IMPORT_ADMIN, PERM_VIEW_ACTIVE_SESSIONS, ROLE_ADMIN, ROLE_SERVICE};

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
            exp: Some(crate::now_seconds().saturating_add(ttl.as_secs())),
            iat: Some(crate::now_seconds()),
        }
    }
}

/// Which rooms a caller may enter and read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum RoomAccess {
    /// Any room: a page names the room it joins (the default).
    #[default]
    Open,
    /// Only the rooms the token's room claim names: exact names, or a
    /// prefix ending in `*`.
    Only(Vec<String>),
}

impl RoomAccess {
    /// Whether `room` is one of those allowed.
    pub fn allows(&self, room: &str) -> bool {
        match self {
            RoomAccess::Open => true,
            RoomAccess::Only(patterns) => patterns.iter().any(|p| match p.strip_suffix('*') {
                Some(prefix) => room.starts_with(prefix),
                None => p == room,
            }),
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
    /// The rooms it may enter and read.
    pub rooms: RoomAccess,
}

impl Caller {
    /// The caller of open mode when no token is sent: may do everything.
    pub fn anonymous() -> Caller {
        Caller {
            user_id: "anonymous".into(),
            roles: vec![ROLE_ADMIN.into(), ROLE_SERVICE.into()],
            permissions: Vec::new(),
            expires_at: None,
            rooms: RoomAccess::Open,
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

    /// May enter `room` (post a page naming it) and read it: any room for
    /// an admin or a service, else what the room rule allows.
    pub fn may_enter_room(&self, room: &str) -> bool {
        self.is_admin() || self.is_service() || self.rooms.allows(room)
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
